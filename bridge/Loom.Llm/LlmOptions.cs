namespace Loom.Llm;

/// <summary>Which wire protocol a provider speaks.</summary>
public enum LlmProviderKind
{
    /// <summary>The OpenAI API (chat completions, embeddings) and the many servers compatible with it.</summary>
    OpenAI,

    /// <summary>The Anthropic Messages API (chat only: no embeddings).</summary>
    Anthropic,
}

/// <summary>One upstream service (loom.yaml <c>llm.providers[]</c>).</summary>
public sealed class LlmProviderOptions
{
    /// <summary>Name models refer to (required, unique).</summary>
    public required string Name { get; init; }

    /// <summary>Protocol. Default <see cref="LlmProviderKind.OpenAI"/>.</summary>
    public LlmProviderKind Kind { get; init; } = LlmProviderKind.OpenAI;

    /// <summary>Base address, e.g. <c>https://api.openai.com/v1</c> or <c>http://127.0.0.1:8000/v1</c>; null takes the vendor's.</summary>
    public Uri? BaseUrl { get; init; }

    /// <summary>
    /// Name of the environment variable that holds the API key (the key itself never appears in
    /// loom.yaml). Null or an unset variable: no key is sent (local servers need none).
    /// </summary>
    public string? ApiKeyEnv { get; init; }

    /// <summary>Upstream requests running at once on this provider; more wait their turn. Default 16.</summary>
    public int MaxConcurrency { get; init; } = 16;

    /// <summary>Time one upstream request may take. Default 120 s.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);
}

/// <summary>One model as callers name it (loom.yaml <c>llm.models[]</c>).</summary>
public sealed class LlmModelOptions
{
    /// <summary>Name callers use (<c>model</c> in llm.chat), e.g. <c>fast</c> or <c>gpt-4o-mini</c> (required, unique).</summary>
    public required string Name { get; init; }

    /// <summary>Provider that serves it (a <see cref="LlmProviderOptions.Name"/>).</summary>
    public required string Provider { get; init; }

    /// <summary>Model id sent upstream. Default: <see cref="Name"/>.</summary>
    public string? Id { get; init; }

    /// <summary>True for an embedding model (served by llm.embed, refused by llm.chat). Default false.</summary>
    public bool Embedding { get; init; }

    /// <summary>Price of a million input tokens, in USD (cost accounting). Default 0.</summary>
    public double InputCostPerMillion { get; init; }

    /// <summary>Price of a million output tokens, in USD. Default 0.</summary>
    public double OutputCostPerMillion { get; init; }

    /// <summary>Models tried in order when this one fails after its retries (names in <see cref="LlmOptions.Models"/>). Default: none beyond <see cref="LlmOptions.Fallback"/>.</summary>
    public IReadOnlyList<string> Fallback { get; init; } = [];

    internal string UpstreamId => string.IsNullOrEmpty(Id) ? Name : Id;
}

/// <summary>The shared response cache (loom.yaml <c>llm.cache</c>).</summary>
public sealed class LlmCacheOptions
{
    /// <summary>Whether answers are cached at all. Default true.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Most answers kept (least recently used go first). Default 1000.</summary>
    public int MaxEntries { get; init; } = 1000;

    /// <summary>Most bytes of answers kept (their JSON). Default 64 MiB.</summary>
    public long MaxBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>How long an answer is served from the cache. Default 1 h.</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromHours(1);

    /// <summary>
    /// Whether the cache is persisted in the bridge's data directory (<c>&lt;data dir&gt;/llm-cache</c>)
    /// so it survives a restart; without a data directory it is in memory only. Default true.
    /// </summary>
    public bool Persist { get; init; } = true;
}

/// <summary>Token budgets (loom.yaml <c>llm.budgets</c>). 0 means unlimited.</summary>
public sealed class LlmBudgetOptions
{
    /// <summary>Tokens (input + output) an agent may spend over the bridge's life. Default 0 (unlimited).</summary>
    public long PerAgentTokens { get; init; }

    /// <summary>Tokens one thread (thread_id of the call) may spend. Default 0 (unlimited).</summary>
    public long PerThreadTokens { get; init; }

    /// <summary>Per-agent overrides of <see cref="PerAgentTokens"/> by agent id.</summary>
    public IReadOnlyDictionary<string, long> Agents { get; init; } = new Dictionary<string, long>(StringComparer.Ordinal);

    /// <summary>Threads whose spending is remembered (least recently used forgotten first). Default 100 000.</summary>
    public int MaxTrackedThreads { get; init; } = 100_000;
}

/// <summary>Settings of the gateway (loom.yaml <c>llm:</c>).</summary>
public sealed class LlmOptions
{
    /// <summary>Upstream services.</summary>
    public IReadOnlyList<LlmProviderOptions> Providers { get; init; } = [];

    /// <summary>Models callers may name.</summary>
    public IReadOnlyList<LlmModelOptions> Models { get; init; } = [];

    /// <summary>Chat model of calls that name none and whose agent has no default. Default: the first chat model.</summary>
    public string? DefaultModel { get; init; }

    /// <summary>Embedding model of llm.embed calls that name none. Default: the first embedding model.</summary>
    public string? DefaultEmbeddingModel { get; init; }

    /// <summary>Default chat model per agent id.</summary>
    public IReadOnlyDictionary<string, string> AgentModels { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Models tried, in order, after a model (and its own fallbacks) failed. Default none.</summary>
    public IReadOnlyList<string> Fallback { get; init; } = [];

    /// <summary>Attempts per model before falling back (1 = no retry). Default 2.</summary>
    public int MaxAttempts { get; init; } = 2;

    /// <summary>First retry delay; doubled each attempt, with full jitter, at most 5 s. Default 200 ms.</summary>
    public TimeSpan RetryBaseDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Response cache.</summary>
    public LlmCacheOptions Cache { get; init; } = new();

    /// <summary>Token budgets.</summary>
    public LlmBudgetOptions Budgets { get; init; } = new();

    /// <summary>Most texts in one upstream embedding request (micro-batching). Default 64.</summary>
    public int EmbedMaxBatch { get; init; } = 64;

    /// <summary>How long an embedding request waits for others to join its batch. Default 5 ms.</summary>
    public TimeSpan EmbedBatchWindow { get; init; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Most embedding texts waiting for a batch; more are refused with RESOURCE_EXHAUSTED. Default 10 000.</summary>
    public int EmbedMaxQueued { get; init; } = 10_000;

    /// <summary>Most messages in one llm.chat call. Default 1000.</summary>
    public int MaxMessages { get; init; } = 1000;

    /// <summary>Most texts in one llm.embed call. Default 2048.</summary>
    public int MaxEmbedInputs { get; init; } = 2048;

    /// <summary>True when at least one model is configured (the gateway is served only then).</summary>
    public bool Enabled => Models.Count > 0;

    /// <summary>Checks the settings: names unique and known, numbers in range.</summary>
    /// <exception cref="ArgumentException">Something is wrong; the message says what to fix.</exception>
    public void Validate()
    {
        var providers = new Dictionary<string, LlmProviderOptions>(StringComparer.Ordinal);
        foreach (var p in Providers)
        {
            if (string.IsNullOrWhiteSpace(p.Name))
            {
                throw new ArgumentException("llm.providers: every provider needs a name.");
            }

            if (!providers.TryAdd(p.Name, p))
            {
                throw new ArgumentException($"llm.providers: two providers are named '{p.Name}'; give each a distinct name.");
            }

            if (p.MaxConcurrency < 1)
            {
                throw new ArgumentException($"llm.providers '{p.Name}': max_concurrency must be at least 1 (it is {p.MaxConcurrency}).");
            }

            if (p.Timeout <= TimeSpan.Zero)
            {
                throw new ArgumentException($"llm.providers '{p.Name}': timeout_ms must be positive.");
            }

            if (p.BaseUrl is { } url && (!url.IsAbsoluteUri || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)))
            {
                throw new ArgumentException($"llm.providers '{p.Name}': base_url must be an absolute http or https address (it is '{url}').");
            }

            if (p.ApiKeyEnv is { Length: > 0 } env && !IsEnvName(env))
            {
                throw new ArgumentException($"llm.providers '{p.Name}': api_key_env must name an environment variable (letters, digits and _), not hold a key.");
            }
        }

        var models = new Dictionary<string, LlmModelOptions>(StringComparer.Ordinal);
        foreach (var m in Models)
        {
            if (string.IsNullOrWhiteSpace(m.Name))
            {
                throw new ArgumentException("llm.models: every model needs a name.");
            }

            if (!models.TryAdd(m.Name, m))
            {
                throw new ArgumentException($"llm.models: two models are named '{m.Name}'; give each a distinct name.");
            }

            if (!providers.TryGetValue(m.Provider ?? "", out var provider))
            {
                throw new ArgumentException($"llm.models '{m.Name}': provider '{m.Provider}' is not in llm.providers (known: {string.Join(", ", providers.Keys)}).");
            }

            if (m.Embedding && provider.Kind == LlmProviderKind.Anthropic)
            {
                throw new ArgumentException($"llm.models '{m.Name}': Anthropic has no embeddings API; serve embedding models from an openai provider.");
            }

            if (m.InputCostPerMillion < 0 || m.OutputCostPerMillion < 0 || double.IsNaN(m.InputCostPerMillion) || double.IsNaN(m.OutputCostPerMillion))
            {
                throw new ArgumentException($"llm.models '{m.Name}': costs must be zero or more.");
            }
        }

        foreach (var m in Models)
        {
            foreach (var f in m.Fallback)
            {
                CheckModel(models, f, $"llm.models '{m.Name}' fallback", m.Embedding);
            }
        }

        foreach (var f in Fallback)
        {
            if (!models.ContainsKey(f))
            {
                throw new ArgumentException($"llm.fallback: model '{f}' is not in llm.models.");
            }
        }

        if (DefaultModel is not null)
        {
            CheckModel(models, DefaultModel, "llm.default_model", embedding: false);
        }

        if (DefaultEmbeddingModel is not null)
        {
            CheckModel(models, DefaultEmbeddingModel, "llm.default_embedding_model", embedding: true);
        }

        foreach (var (agent, model) in AgentModels)
        {
            CheckModel(models, model, $"llm.agents '{agent}'", embedding: false);
        }

        if (MaxAttempts < 1 || MaxAttempts > 10)
        {
            throw new ArgumentException($"llm.max_attempts must be 1..10 (it is {MaxAttempts}).");
        }

        if (RetryBaseDelay < TimeSpan.Zero)
        {
            throw new ArgumentException("llm.retry_base_delay_ms must be zero or more.");
        }

        if (Cache.MaxEntries < 0 || Cache.MaxBytes < 0 || Cache.Ttl <= TimeSpan.Zero)
        {
            throw new ArgumentException("llm.cache: max_entries and max_bytes must be zero or more and ttl_ms positive.");
        }

        if (Budgets.PerAgentTokens < 0 || Budgets.PerThreadTokens < 0 || Budgets.Agents.Values.Any(v => v < 0) || Budgets.MaxTrackedThreads < 1)
        {
            throw new ArgumentException("llm.budgets: token budgets must be zero (unlimited) or more.");
        }

        if (EmbedMaxBatch < 1 || EmbedMaxQueued < 1 || EmbedBatchWindow < TimeSpan.Zero || MaxMessages < 1 || MaxEmbedInputs < 1)
        {
            throw new ArgumentException("llm: embed_max_batch, embed_max_queued, max_messages and max_embed_inputs must be at least 1, embed_batch_window_ms zero or more.");
        }
    }

    private static void CheckModel(Dictionary<string, LlmModelOptions> models, string name, string field, bool embedding)
    {
        if (!models.TryGetValue(name, out var model))
        {
            throw new ArgumentException($"{field}: model '{name}' is not in llm.models.");
        }

        if (model.Embedding != embedding)
        {
            throw new ArgumentException($"{field}: model '{name}' is {(model.Embedding ? "an embedding" : "a chat")} model; a {(embedding ? "embedding" : "chat")} model is needed here.");
        }
    }

    private static bool IsEnvName(string name) =>
        name.Length <= 256 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');
}
