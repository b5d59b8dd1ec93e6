using System.Text.Json;
using Loom.LlmFake;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// The trio through the bridge's LLM gateway (examples/trio/loom.llm.yaml) against the fake
/// OpenAI-compatible server (tests/Loom.LlmFake) on 127.0.0.1, with scripted answers: the Planner
/// (Python, ctx.llm.chat with structured output) plans and the Writer (.NET, ctx.Llm.ChatAsync)
/// writes through llm.chat, and the fake records both requests. The offline trio is TrioTests.
/// </summary>
public sealed class TrioLlmTests : IDisposable
{
    private const string Key = "sk-fake-trio-key-never-printed";
    private readonly string _reports = Directory.CreateTempSubdirectory("loom-trio-llm-").FullName;

    public void Dispose() => Directory.Delete(_reports, recursive: true);

    [Fact]
    public async Task The_trio_plans_and_writes_with_a_model_through_the_gateway()
    {
        await using var fake = new FakeLlmServer();
        await fake.StartAsync();
        // The Planner's system prompt and the Writer's, as the agents send them through llm.chat.
        fake.Script("You plan research for a travel question", """
            {"parts": [
              {"text": "Which sights make Lisbon famous", "kind": "search", "city": "Lisbon", "dates": []},
              {"text": "What is the weather in Lisbon on 5 December 2026", "kind": "weather", "city": "Lisbon", "dates": ["2026-12-05"]}
            ]}
            """);
        fake.Script("You write short research reports", "# Lisbon, as the fake model wrote it\n\nLisbon is known for its hills and trams [1]. The weather on 5 December is in the figures [2].\n\n## Sources\n\n1. first\n2. second\n");

        var env = new Dictionary<string, string>
        {
            ["TRIO_REPORT_DIR"] = _reports,
            ["TRIO_TODAY"] = "2026-12-02",
            ["OPENAI_BASE_URL"] = new Uri(fake.BaseUrl, "v1").ToString(),
            ["OPENAI_API_KEY"] = Key,
            ["ANTHROPIC_API_KEY"] = "",
            ["LOOM_LLM_PROVIDER"] = "",
            ["LOOM_SEARCH_PROVIDER"] = "",
            ["LOOM_WEATHER_PROVIDER"] = "",
        };
        var (code, output) = await CliProcess.RunAsync(CliProcess.RepoRoot, TimeSpan.FromMinutes(10), env, "run", "examples/trio/loom.llm.yaml");
        Assert.True(code == 0, output);
        Assert.DoesNotContain(Key, output, StringComparison.Ordinal);

        using var latest = JsonDocument.Parse(File.ReadAllText(Path.Combine(_reports, "latest.json")));
        var report = latest.RootElement;
        var context = output + "\n" + report;

        // The plan is the model's (its texts, not the offline split), completed for the Researcher.
        Assert.StartsWith("llm.chat (planner", report.GetProperty("planning").GetString(), StringComparison.Ordinal);
        var plan = report.GetProperty("plan").EnumerateArray().ToList();
        Assert.Equal(["Which sights make Lisbon famous?", "What is the weather in Lisbon on 5 December 2026?"], plan.Select(t => t.GetProperty("text").GetString()));
        Assert.Equal(["web.search", "weather.get"], plan.Select(t => t.GetProperty("capability").GetString()));
        Assert.Equal("2026-12-05", plan[1].GetProperty("date").GetString());
        var weatherCalls = report.GetProperty("tasks").EnumerateArray().SelectMany(t => t.GetProperty("calls").EnumerateArray())
            .Where(c => c.GetProperty("capability").GetString() == "weather.get").ToList();
        Assert.True(weatherCalls.Count > 0, context);

        // The report is the model's, accepted because its citations are listed sources.
        Assert.StartsWith("llm.chat (writer", report.GetProperty("generator").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("# Lisbon, as the fake model wrote it", report.GetProperty("markdown").GetString(), StringComparison.Ordinal);
        Assert.True(report.GetProperty("sources").GetArrayLength() >= 2, context);
        Assert.Contains("as the fake model wrote it", output, StringComparison.Ordinal);

        // The fake saw one request from each agent, through the gateway (model ids from loom.llm.yaml, the key as a bearer token).
        var requests = fake.Requests.Where(r => r.Path == "/v1/chat/completions").ToList();
        var planning = Assert.Single(requests, r => r.Body.Contains("You plan research for a travel question", StringComparison.Ordinal));
        Assert.Equal("gpt-4o-mini", planning.Model);
        Assert.Contains("What is Lisbon known for", planning.Body, StringComparison.Ordinal);
        Assert.Contains("json_schema", planning.Body, StringComparison.Ordinal);
        var writing = Assert.Single(requests, r => r.Body.Contains("You write short research reports", StringComparison.Ordinal));
        Assert.Contains("Which sights make Lisbon famous?", writing.Body, StringComparison.Ordinal);
        Assert.Contains("[1] ", writing.Body, StringComparison.Ordinal);
        Assert.Equal(2, requests.Count);
    }
}
