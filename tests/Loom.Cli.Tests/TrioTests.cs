using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// The trio end to end, as a newcomer runs it: three languages, one bridge, the default question
/// (which needs both web.search and weather.get). The report must cite sources that exist in the
/// bundled corpus and quote them: every cited sentence is found verbatim in the document it cites.
/// </summary>
public sealed partial class TrioTests : IDisposable
{
    private readonly string _reports = Directory.CreateTempSubdirectory("loom-trio-").FullName;

    public void Dispose() => Directory.Delete(_reports, recursive: true);

    [GeneratedRegex(@"^- (?<text>.+?) \[(?<n>\d+)\]$", RegexOptions.Multiline)]
    private static partial Regex CitedBullet();

    [GeneratedRegex(@"\[(\d+)\]")]
    private static partial Regex Citation();

    [Fact]
    public async Task The_trio_answers_the_default_question_with_a_report_grounded_in_the_corpus()
    {
        var env = new Dictionary<string, string> { ["TRIO_REPORT_DIR"] = _reports, ["OPENAI_API_KEY"] = "", ["ANTHROPIC_API_KEY"] = "", ["LOOM_LLM_PROVIDER"] = "" };
        var (code, output) = await CliProcess.RunAsync(CliProcess.RepoRoot, TimeSpan.FromMinutes(10), env, "run", "examples/trio");
        Assert.True(code == 0, output);
        AssertGroundedReport(output);
    }

    /// <summary>
    /// The same run with auth on, through the loom.yaml the example ships: each agent connects with
    /// the token loom run minted for it and works within its own permissions; no token is printed.
    /// </summary>
    [Fact]
    public async Task The_trio_runs_with_auth_on_each_agent_with_its_own_token_and_permissions()
    {
        var env = new Dictionary<string, string> { ["TRIO_REPORT_DIR"] = _reports, ["OPENAI_API_KEY"] = "", ["ANTHROPIC_API_KEY"] = "", ["LOOM_LLM_PROVIDER"] = "", ["LOOM_TOKEN"] = "" };
        var (code, output) = await CliProcess.RunAsync(CliProcess.RepoRoot, TimeSpan.FromMinutes(10), env, "run", "examples/trio/loom.auth.yaml");
        Assert.True(code == 0, output);
        AssertGroundedReport(output);
        Assert.DoesNotContain("PERMISSION_DENIED", output, StringComparison.Ordinal);
        Assert.DoesNotContain("UNAUTHENTICATED", output, StringComparison.Ordinal);
        Assert.DoesNotContain("eyJ", output, StringComparison.Ordinal); // no JWT printed
        var key = Path.Combine(CliProcess.RepoRoot, "examples", "trio", ".loom", "keys", "token.key");
        Assert.True(File.Exists(key), "loom run made no token key under examples/trio/.loom/keys");
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        }
    }

    private void AssertGroundedReport(string output)
    {
        Assert.Contains("report saved to", output, StringComparison.Ordinal);

        using var latest = JsonDocument.Parse(File.ReadAllText(Path.Combine(_reports, "latest.json")));
        var report = latest.RootElement;
        var markdown = report.GetProperty("markdown").GetString()!;
        Assert.True(File.Exists(report.GetProperty("path").GetString()), "the saved copy is missing");
        Assert.Contains("offline", report.GetProperty("generator").GetString(), StringComparison.Ordinal);
        Assert.Contains(markdown.Split('\n')[0].TrimStart('#', ' '), output, StringComparison.Ordinal); // printed too

        var corpus = File.ReadLines(Path.Combine(CliProcess.RepoRoot, "examples", "trio", "data", "corpus.jsonl"))
            .Select(line => JsonDocument.Parse(line).RootElement)
            .ToDictionary(d => d.GetProperty("id").GetString()!, d => d.GetProperty("text").GetString()!);
        var sources = report.GetProperty("sources").EnumerateArray().ToDictionary(s => s.GetProperty("number").GetInt32(), s => s.GetProperty("id").GetString()!);
        Assert.True(sources.Count >= 3, "expected several sources:\n" + markdown);
        Assert.Contains(sources.Values, id => id.StartsWith("weather:lisbon:2026-12-05", StringComparison.Ordinal));
        Assert.True(sources.Values.Count(id => id.StartsWith("doc-", StringComparison.Ordinal)) >= 2, markdown);
        foreach (var id in sources.Values.Where(id => !id.StartsWith("weather:", StringComparison.Ordinal)))
        {
            Assert.True(corpus.ContainsKey(id), $"source {id} is not in the corpus");
        }

        // Every citation points at a listed source, and every cited corpus sentence is a quote.
        foreach (Match m in Citation().Matches(markdown))
        {
            Assert.True(sources.ContainsKey(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)), $"citation {m.Value} has no source");
        }

        var quoted = 0;
        foreach (Match m in CitedBullet().Matches(markdown))
        {
            var id = sources[int.Parse(m.Groups["n"].Value, System.Globalization.CultureInfo.InvariantCulture)];
            if (corpus.TryGetValue(id, out var text))
            {
                Assert.Contains(m.Groups["text"].Value, text, StringComparison.Ordinal);
                quoted++;
            }
        }

        Assert.True(quoted >= 3, "expected at least three quoted sentences:\n" + markdown);
        Assert.Contains("Lisbon", markdown, StringComparison.Ordinal);
        Assert.Matches(@"2026-12-05: [a-z ]+, -?\d+(\.\d)? to -?\d+(\.\d)? °C", markdown);
    }
}
