using Loom.Cli.Internal;
using Loom.Llm;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>loom.yaml's llm: section (docs/llm.md): read into the bridge's LlmOptions, mistakes refused with the line.</summary>
public sealed class LlmConfigTests
{
    private static ProjectFile Parse(string yaml) => ProjectFileLoader.Parse(yaml, "loom.yaml", Path.GetTempPath(), requireAgents: false);

    [Fact]
    public void The_llm_section_becomes_the_gateways_options()
    {
        var project = Parse("""
            llm:
              providers:
                - name: openai
                  kind: openai
                  base_url: http://127.0.0.1:8000/v1
                  api_key_env: OPENAI_API_KEY
                  max_concurrency: 4
                  timeout_ms: 30000
                - { name: claude, kind: anthropic }
              models:
                - { name: fast, provider: openai, id: gpt-4o-mini, input_cost_per_mtok: 0.15, output_cost_per_mtok: 0.6, fallback: [smart] }
                - { name: smart, provider: claude, id: claude-sonnet-4 }
                - { name: embed, provider: openai, id: text-embedding-3-small, embedding: true }
              default_model: fast
              agents: { writer: smart }
              fallback: [smart]
              max_attempts: 3
              cache: { max_entries: 10, ttl_ms: 60000 }
              budgets: { per_agent_tokens: 100000, per_thread_tokens: 5000, agents: { planner: 2000 } }
              embed_batch_window_ms: 2
            """);
        var options = ProjectRunner.BridgeOptionsFor(project).Llm;
        Assert.True(options.Enabled);
        var openai = options.Providers[0];
        Assert.Equal(LlmProviderKind.OpenAI, openai.Kind);
        Assert.Equal("http://127.0.0.1:8000/v1", openai.BaseUrl!.ToString().TrimEnd('/'));
        Assert.Equal("OPENAI_API_KEY", openai.ApiKeyEnv);
        Assert.Equal(4, openai.MaxConcurrency);
        Assert.Equal(LlmProviderKind.Anthropic, options.Providers[1].Kind);
        Assert.Equal(0.6, options.Models[0].OutputCostPerMillion);
        Assert.Equal(["smart"], options.Models[0].Fallback);
        Assert.True(options.Models[2].Embedding);
        Assert.Equal("smart", options.AgentModels["writer"]);
        Assert.Equal(3, options.MaxAttempts);
        Assert.Equal(TimeSpan.FromMinutes(1), options.Cache.Ttl);
        Assert.Equal(2000, options.Budgets.Agents["planner"]);
        Assert.Equal(5000, options.Budgets.PerThreadTokens);
    }

    [Fact]
    public void No_llm_section_means_no_gateway() => Assert.False(ProjectRunner.BridgeOptionsFor(Parse("name: x\n")).Llm.Enabled);

    [Theory]
    [InlineData("llm:\n  providers:\n    - { name: p, api_key: sk-secret }\n", "api_key", 3)]
    [InlineData("llm:\n  providers:\n    - { name: p, api_key_env: sk-secret-1 }\n", "environment variable", 3)]
    [InlineData("llm:\n  providers:\n    - { name: p, kind: gemini }\n", "openai, anthropic", 3)]
    [InlineData("llm:\n  providers:\n    - { name: p }\n  models:\n    - { name: m, provider: q }\n", "is not in llm.providers", 2)]
    [InlineData("llm:\n  modles: []\n", "did you mean 'models'", 2)]
    public void Mistakes_are_refused_with_the_line(string yaml, string message, int line)
    {
        var error = Assert.Throws<ProjectFileException>(() => Parse(yaml));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.Equal(line, error.Line);
        Assert.DoesNotContain("sk-secret-1 ", error.Message, StringComparison.Ordinal);
    }

    /// <summary>base_url_env takes the base URL from a variable when it is set (else base_url, else the vendor's); a bad value is refused without echoing it.</summary>
    [Fact]
    public void Base_url_env_reads_the_address_from_the_environment_when_set()
    {
        var name = "LOOM_TEST_BASE_URL_" + Guid.NewGuid().ToString("N")[..8].ToUpperInvariant();
        const string Yaml = "llm:\n  providers:\n    - { name: p, base_url: http://127.0.0.1:9/v1, base_url_env: VAR }\n  models:\n    - { name: m, provider: p }\n";
        var yaml = Yaml.Replace("VAR", name, StringComparison.Ordinal);
        try
        {
            Assert.Equal("http://127.0.0.1:9/v1", ProjectRunner.BridgeOptionsFor(Parse(yaml)).Llm.Providers[0].BaseUrl!.ToString().TrimEnd('/'));
            Environment.SetEnvironmentVariable(name, "http://127.0.0.1:4242/v1/");
            Assert.Equal("http://127.0.0.1:4242/v1", ProjectRunner.BridgeOptionsFor(Parse(yaml)).Llm.Providers[0].BaseUrl!.ToString().TrimEnd('/'));
            Environment.SetEnvironmentVariable(name, "user:pw-secret@nowhere");
            var error = Assert.Throws<ProjectFileException>(() => Parse(yaml));
            Assert.Contains(name, error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("pw-secret", error.Message, StringComparison.Ordinal);
            Assert.Equal(3, error.Line);
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, null);
        }
    }
}
