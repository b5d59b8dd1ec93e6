using System.Globalization;
using Loom.Llm;
using YamlDotNet.RepresentationModel;

namespace Loom.Cli.Internal;

/// <summary>The <c>llm:</c> section of loom.yaml (the LLM gateway; docs/llm.md).</summary>
internal static partial class ProjectFileLoader
{
    private static LlmOptions ReadLlm(Reader reader, YamlNode node)
    {
        const string F = "llm";
        var top = reader.Keys(reader.Mapping(node, F), F, "providers", "models", "default_model", "default_embedding_model", "agents", "fallback",
            "max_attempts", "retry_base_delay_ms", "cache", "budgets", "embed_max_batch", "embed_batch_window_ms", "embed_max_queued", "max_messages", "max_embed_inputs");
        var providers = new List<LlmProviderOptions>();
        if (top.TryGetValue("providers", out var providersNode))
        {
            var list = reader.Sequence(providersNode, F + ".providers");
            for (var i = 0; i < list.Children.Count; i++)
            {
                var field = $"{F}.providers[{i}]";
                var map = reader.Mapping(list.Children[i], field);
                if (map.Children.Keys.OfType<YamlScalarNode>().FirstOrDefault(k => k.Value == "api_key") is { } keyNode)
                {
                    throw reader.Error(keyNode, field + ".api_key", "keys are not written in loom.yaml: put the key in an environment variable and name it with api_key_env (e.g. api_key_env: OPENAI_API_KEY)");
                }

                var p = reader.Keys(map, field, "name", "kind", "base_url", "base_url_env", "api_key_env", "max_concurrency", "timeout_ms");
                if (!p.TryGetValue("name", out var nameNode))
                {
                    throw reader.Error(list.Children[i], field + ".name", "missing: the name models refer to");
                }

                string? env = null;
                if (p.TryGetValue("api_key_env", out var envNode))
                {
                    env = reader.String(envNode, field + ".api_key_env");
                    if (!EnvNamePattern().IsMatch(env))
                    {
                        throw reader.Error(envNode, field + ".api_key_env", "must name an environment variable (letters, digits, '_'), not hold the key itself");
                    }
                }

                // base_url_env: the base URL from an environment variable when it is set (e.g.
                // OPENAI_BASE_URL, as the vendors' SDKs read it), else base_url, else the vendor's.
                var baseUrl = p.TryGetValue("base_url", out var url) ? new Uri(reader.AbsoluteUrl(url, field + ".base_url")) : null;
                if (p.TryGetValue("base_url_env", out var baseEnvNode))
                {
                    var baseEnv = reader.String(baseEnvNode, field + ".base_url_env");
                    if (!EnvNamePattern().IsMatch(baseEnv))
                    {
                        throw reader.Error(baseEnvNode, field + ".base_url_env", "must name an environment variable (letters, digits, '_')");
                    }

                    if (Environment.GetEnvironmentVariable(baseEnv) is { Length: > 0 } fromEnv)
                    {
                        baseUrl = Uri.TryCreate(fromEnv, UriKind.Absolute, out var parsed) && parsed.Scheme is "http" or "https"
                            ? new Uri(fromEnv.TrimEnd('/'))
                            : throw reader.Error(baseEnvNode, field + ".base_url_env", $"the variable {baseEnv} is set but does not hold an absolute http:// or https:// URL (its value is not shown: it may carry credentials)");
                    }
                }

                providers.Add(new LlmProviderOptions
                {
                    Name = reader.String(nameNode, field + ".name"),
                    Kind = p.TryGetValue("kind", out var kind) && reader.OneOf(kind, field + ".kind", ["openai", "anthropic"]) == "anthropic" ? LlmProviderKind.Anthropic : LlmProviderKind.OpenAI,
                    BaseUrl = baseUrl,
                    ApiKeyEnv = env,
                    MaxConcurrency = p.TryGetValue("max_concurrency", out var mc) ? reader.Int(mc, field + ".max_concurrency", 1, 10_000) : 16,
                    Timeout = TimeSpan.FromMilliseconds(p.TryGetValue("timeout_ms", out var t) ? reader.Int(t, field + ".timeout_ms", 1, 3_600_000) : 120_000),
                });
            }
        }

        var models = new List<LlmModelOptions>();
        if (top.TryGetValue("models", out var modelsNode))
        {
            var list = reader.Sequence(modelsNode, F + ".models");
            for (var i = 0; i < list.Children.Count; i++)
            {
                var field = $"{F}.models[{i}]";
                var m = reader.Keys(reader.Mapping(list.Children[i], field), field, "name", "provider", "id", "embedding", "input_cost_per_mtok", "output_cost_per_mtok", "fallback");
                if (!m.TryGetValue("name", out var nameNode) || !m.TryGetValue("provider", out var providerNode))
                {
                    throw reader.Error(list.Children[i], field, "a model needs 'name' (what callers ask for) and 'provider'");
                }

                models.Add(new LlmModelOptions
                {
                    Name = reader.String(nameNode, field + ".name"),
                    Provider = reader.String(providerNode, field + ".provider"),
                    Id = m.TryGetValue("id", out var id) ? reader.String(id, field + ".id") : null,
                    Embedding = m.TryGetValue("embedding", out var e) && reader.OneOf(e, field + ".embedding", ["true", "false"]) == "true",
                    InputCostPerMillion = m.TryGetValue("input_cost_per_mtok", out var ic) ? Number(reader, ic, field + ".input_cost_per_mtok") : 0,
                    OutputCostPerMillion = m.TryGetValue("output_cost_per_mtok", out var oc) ? Number(reader, oc, field + ".output_cost_per_mtok") : 0,
                    Fallback = m.TryGetValue("fallback", out var fb) ? reader.Strings(fb, field + ".fallback") : [],
                });
            }
        }

        var cache = new LlmCacheOptions();
        if (top.TryGetValue("cache", out var cacheNode))
        {
            var c = reader.Keys(reader.Mapping(cacheNode, F + ".cache"), F + ".cache", "enabled", "max_entries", "max_bytes", "ttl_ms", "persist");
            cache = new LlmCacheOptions
            {
                Enabled = !c.TryGetValue("enabled", out var en) || reader.OneOf(en, F + ".cache.enabled", ["true", "false"]) == "true",
                MaxEntries = c.TryGetValue("max_entries", out var me) ? reader.Int(me, F + ".cache.max_entries", 0, 10_000_000) : cache.MaxEntries,
                MaxBytes = c.TryGetValue("max_bytes", out var mb) ? Whole(reader, mb, F + ".cache.max_bytes") : cache.MaxBytes,
                Ttl = c.TryGetValue("ttl_ms", out var ttl) ? TimeSpan.FromMilliseconds(Whole(reader, ttl, F + ".cache.ttl_ms", 1)) : cache.Ttl,
                Persist = !c.TryGetValue("persist", out var persist) || reader.OneOf(persist, F + ".cache.persist", ["true", "false"]) == "true",
            };
        }

        var budgets = new LlmBudgetOptions();
        if (top.TryGetValue("budgets", out var budgetsNode))
        {
            var b = reader.Keys(reader.Mapping(budgetsNode, F + ".budgets"), F + ".budgets", "per_agent_tokens", "per_thread_tokens", "agents");
            var agents = new Dictionary<string, long>(StringComparer.Ordinal);
            if (b.TryGetValue("agents", out var agentsNode))
            {
                foreach (var (k, v) in reader.Mapping(agentsNode, F + ".budgets.agents").Children)
                {
                    var agent = reader.String(k, F + ".budgets.agents");
                    agents[agent] = Whole(reader, v, $"{F}.budgets.agents.{agent}");
                }
            }

            budgets = new LlmBudgetOptions
            {
                PerAgentTokens = b.TryGetValue("per_agent_tokens", out var pa) ? Whole(reader, pa, F + ".budgets.per_agent_tokens") : 0,
                PerThreadTokens = b.TryGetValue("per_thread_tokens", out var pt) ? Whole(reader, pt, F + ".budgets.per_thread_tokens") : 0,
                Agents = agents,
            };
        }

        var agentModels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (top.TryGetValue("agents", out var agentModelsNode))
        {
            foreach (var (k, v) in reader.Mapping(agentModelsNode, F + ".agents").Children)
            {
                var agent = reader.String(k, F + ".agents");
                agentModels[agent] = reader.String(v, $"{F}.agents.{agent}");
            }
        }

        var defaults = new LlmOptions();
        var options = new LlmOptions
        {
            Providers = providers,
            Models = models,
            DefaultModel = top.TryGetValue("default_model", out var dm) ? reader.String(dm, F + ".default_model") : null,
            DefaultEmbeddingModel = top.TryGetValue("default_embedding_model", out var dem) ? reader.String(dem, F + ".default_embedding_model") : null,
            AgentModels = agentModels,
            Fallback = top.TryGetValue("fallback", out var fallback) ? reader.Strings(fallback, F + ".fallback") : [],
            MaxAttempts = top.TryGetValue("max_attempts", out var ma) ? reader.Int(ma, F + ".max_attempts", 1, 10) : defaults.MaxAttempts,
            RetryBaseDelay = top.TryGetValue("retry_base_delay_ms", out var rd) ? TimeSpan.FromMilliseconds(reader.Int(rd, F + ".retry_base_delay_ms", 0, 60_000)) : defaults.RetryBaseDelay,
            Cache = cache,
            Budgets = budgets,
            EmbedMaxBatch = top.TryGetValue("embed_max_batch", out var emb) ? reader.Int(emb, F + ".embed_max_batch", 1, 4096) : defaults.EmbedMaxBatch,
            EmbedBatchWindow = top.TryGetValue("embed_batch_window_ms", out var ew) ? TimeSpan.FromMilliseconds(reader.Int(ew, F + ".embed_batch_window_ms", 0, 10_000)) : defaults.EmbedBatchWindow,
            EmbedMaxQueued = top.TryGetValue("embed_max_queued", out var eq) ? reader.Int(eq, F + ".embed_max_queued", 1, 10_000_000) : defaults.EmbedMaxQueued,
            MaxMessages = top.TryGetValue("max_messages", out var mm) ? reader.Int(mm, F + ".max_messages", 1, 100_000) : defaults.MaxMessages,
            MaxEmbedInputs = top.TryGetValue("max_embed_inputs", out var mei) ? reader.Int(mei, F + ".max_embed_inputs", 1, 100_000) : defaults.MaxEmbedInputs,
        };
        try
        {
            options.Validate();
        }
        catch (ArgumentException ex)
        {
            throw reader.Error(node, F, ex.Message);
        }

        return options;
    }

    private static double Number(Reader reader, YamlNode node, string field)
    {
        var text = reader.String(node, field);
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && d >= 0 && double.IsFinite(d)
            ? d
            : throw reader.Error(node, field, $"expected a number of zero or more, got '{text}'");
    }

    private static long Whole(Reader reader, YamlNode node, string field, long min = 0)
    {
        var text = reader.String(node, field);
        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min
            ? n
            : throw reader.Error(node, field, $"expected a whole number of {min} or more, got '{text}'");
    }
}
