using System.Net.Http;
using Loom.Bridge;
using Loom.LlmFake;
using Loom.Sdk;
using Microsoft.Extensions.Logging;

namespace Loom.Llm.Tests;

/// <summary>A fake LLM server (OpenAI- and Anthropic-compatible) and a real bridge whose gateway uses it.</summary>
public sealed class GatewayFixture : IAsyncLifetime
{
    public const double InputPrice = 1000;  // USD per million tokens: big, so costs are visible
    public const double OutputPrice = 2000;

    public FakeLlmServer Fake { get; } = new();

    public LoomBridge Bridge { get; private set; } = null!;

    public HttpClient Http { get; } = new() { Timeout = TimeSpan.FromSeconds(30) };

    public static LlmOptions Options(Uri fake) => new()
    {
        Providers =
        [
            new LlmProviderOptions { Name = "openai-fake", Kind = LlmProviderKind.OpenAI, BaseUrl = new Uri(fake, "/v1"), ApiKeyEnv = "LOOM_TEST_FAKE_KEY", MaxConcurrency = 8 },
            new LlmProviderOptions { Name = "anthropic-fake", Kind = LlmProviderKind.Anthropic, BaseUrl = fake, MaxConcurrency = 8 },
        ],
        Models =
        [
            new LlmModelOptions { Name = "fast", Provider = "openai-fake", Id = "fake-fast", InputCostPerMillion = InputPrice, OutputCostPerMillion = OutputPrice },
            new LlmModelOptions { Name = "claude", Provider = "anthropic-fake", Id = "claude-fake", InputCostPerMillion = InputPrice, OutputCostPerMillion = OutputPrice },
            new LlmModelOptions { Name = "broken", Provider = "openai-fake", Id = "fail-model", Fallback = ["fast"] },
            new LlmModelOptions { Name = "claude-broken", Provider = "anthropic-fake", Id = "fail-claude", Fallback = ["claude"] },
            new LlmModelOptions { Name = "rejecting", Provider = "openai-fake", Id = "badreq-model" },
            new LlmModelOptions { Name = "gated", Provider = "openai-fake", Id = "gated-model" },
            new LlmModelOptions { Name = "embed", Provider = "openai-fake", Id = "embed-model", Embedding = true, InputCostPerMillion = InputPrice },
        ],
        DefaultModel = "fast",
        AgentModels = new Dictionary<string, string> { ["claude-fan"] = "claude" },
        MaxAttempts = 2,
        RetryBaseDelay = TimeSpan.FromMilliseconds(10),
        Budgets = new LlmBudgetOptions { Agents = new Dictionary<string, long> { ["stingy"] = 5 }, PerThreadTokens = 60 },
        EmbedBatchWindow = TimeSpan.FromMilliseconds(250),
    };

    public async Task InitializeAsync()
    {
        await Fake.StartAsync();
        Bridge = new LoomBridge(
            new BridgeOptions { GrpcPort = 0, HttpPort = 0, ShutdownTimeout = TimeSpan.FromSeconds(1), Llm = Options(Fake.BaseUrl) },
            Logging);
        await Bridge.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Bridge.DisposeAsync();
        await Fake.DisposeAsync();
        Http.Dispose();
    }

    /// <summary>An agent on the bridge (its own connection).</summary>
    public Task<RunningAgent> AgentAsync(string id) =>
        LoomAgentHost.StartAsync(new Caller(), Bridge.GrpcAddress, new AgentHostOptions { AgentId = id });

    public async Task<string> MetricsAsync() => await Http.GetStringAsync(new Uri(Bridge.HttpAddress, "/metrics"));

    /// <summary>The value of one series in the exposition (0 when absent).</summary>
    public static double Series(string metrics, string name, params string[] labels)
    {
        foreach (var line in metrics.Split('\n'))
        {
            if (line.StartsWith(name + "{", StringComparison.Ordinal) && labels.All(l => line.Contains(l, StringComparison.Ordinal)))
            {
                return double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    public static void Logging(ILoggingBuilder builder)
    {
        if (Environment.GetEnvironmentVariable("LOOM_TEST_LOGS") is { Length: > 0 })
        {
            builder.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.SetMinimumLevel(LogLevel.Debug);
        }
    }
}

/// <summary>An agent that only calls.</summary>
public sealed class Caller : Agent
{
}
