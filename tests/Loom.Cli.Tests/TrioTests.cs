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

    /// <summary>A question of the offline set and what its report must show.</summary>
    /// <param name="Question">Asked with TRIO_TODAY=2026-12-02 (a Wednesday).</param>
    /// <param name="City">The place asked: every cited source must be about it (or about no place).</param>
    /// <param name="CityId">Its id in cities.json, or null when the bundled data has nothing on it.</param>
    /// <param name="Weather">Whether the question is about the weather (then weather.get must be called for the city).</param>
    /// <param name="Parts">One pattern per part of the question, each of which the report must match.</param>
    public sealed record TrioCase(string Question, string City, string? CityId, bool Weather, params string[] Parts);

    private static readonly TrioCase[] Cases =
    [
        new("Will it be cold in Oslo on Friday?", "Oslo", null, true,
            @"No weather data for Oslo in the bundled set", @"cannot say whether it will be cold in Oslo"),
        new("Should I bring a jacket to Lisbon next weekend?", "Lisbon", "lisbon", true,
            @"What to wear or pack: .*jacket", @"Lisbon, 2026-12-05: ", @"Lisbon, 2026-12-06: "),
        new("Should I pack an umbrella for Tokyo tomorrow?", "Tokyo", "tokyo", true,
            @"Rain\? ", @"umbrella", @"Tokyo, 2026-12-03: "),
        new("What can I see in Rome, and will it rain there on Saturday?", "Rome", "rome", true,
            @"(?m)^## What can I see in Rome\?\n\n- \S", @"Rain\? .*Rome|Rain\? Yes", @"Rome, 2026-12-05: "),
        new("What is Barcelona known for, and is it warm there this week?", "Barcelona", "barcelona", true,
            @"(?m)^## What is Barcelona known for\?\n\n- \S", @"Warm\? ", @"Barcelona, 2026-12-06: "),
        new("Is March a good time to visit Reykjavík?", "Reykjavík", "reykjavik", true,
            @"A good time to visit Reykjavík\? .*the driest and mildest week is 2027-03-"),
        new("What is there to see in Oslo?", "Oslo", null, false,
            @"no documents about Oslo"),
        new("Will it snow in Toronto on 10 January 2029?", "Toronto", "toronto", true,
            @"No weather data for Toronto on 2029-01-10 in the bundled set", @"cannot say whether it will snow in Toronto"),
    ];

    /// <summary>
    /// The offline set, one real trio session (bridge and three agents) answering every question in
    /// turn (TRIO_QUESTIONS_FILE): each report addresses every part of its question, calls
    /// weather.get for the place when the question is about the weather, cites only sources about
    /// the place asked, labels synthetic figures where it states them, and says so when it has nothing.
    /// </summary>
    [Fact]
    public async Task The_trio_answers_each_question_of_the_offline_set_honestly()
    {
        var questions = Path.Combine(_reports, "questions.txt");
        File.WriteAllLines(questions, ["# the offline set (tests/Loom.Cli.Tests/TrioTests.cs)", .. Cases.Select(c => c.Question)]);
        var env = new Dictionary<string, string>
        {
            ["TRIO_REPORT_DIR"] = _reports,
            ["TRIO_QUESTIONS_FILE"] = questions,
            ["TRIO_TODAY"] = "2026-12-02",
            ["OPENAI_API_KEY"] = "",
            ["ANTHROPIC_API_KEY"] = "",
            ["LOOM_LLM_PROVIDER"] = "",
            ["LOOM_SEARCH_PROVIDER"] = "",
            ["LOOM_WEATHER_PROVIDER"] = "",
        };
        var (code, output) = await CliProcess.RunAsync(CliProcess.RepoRoot, TimeSpan.FromMinutes(10), env, "run", "examples/trio");
        Assert.True(code == 0, output);
        Assert.Contains($"{Cases.Length} of {Cases.Length} questions answered", output, StringComparison.Ordinal);

        var topics = File.ReadLines(Path.Combine(CliProcess.RepoRoot, "examples", "trio", "data", "corpus.jsonl"))
            .Select(line => JsonDocument.Parse(line).RootElement)
            .ToDictionary(d => d.GetProperty("id").GetString()!, d => d.GetProperty("topics").EnumerateArray().Select(t => t.GetString()!).ToList());
        var reports = File.ReadAllLines(Path.Combine(_reports, "batch.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(Cases.Length, reports.Count);
        foreach (var (c, report) in Cases.Zip(reports))
        {
            var markdown = report.GetProperty("markdown").GetString()!;
            var context = $"{c.Question}\n{markdown}";
            Assert.Equal(c.Question, report.GetProperty("question").GetString());

            // Every part: a section per task with something in it, and each expected answer.
            foreach (var task in report.GetProperty("plan").EnumerateArray())
            {
                Assert.Matches(new Regex($"(?m)^## {Regex.Escape(task.GetProperty("text").GetString()!)}\n\n(- |_)\\S"), markdown);
            }

            foreach (var part in c.Parts)
            {
                Assert.True(Regex.IsMatch(markdown, part), $"part /{part}/ not addressed: {context}");
            }

            // weather.get called for the place when the question is about the weather (the Researcher's calls, reported per task).
            var calls = report.GetProperty("tasks").EnumerateArray().SelectMany(t => t.GetProperty("calls").EnumerateArray()).ToList();
            var weatherCalls = calls.Where(call => call.GetProperty("capability").GetString() == "weather.get").ToList();
            if (c.Weather)
            {
                Assert.True(weatherCalls.Count > 0, $"weather.get was not called: {context}");
                Assert.All(weatherCalls, call => Assert.Equal(c.City, call.GetProperty("args").GetProperty("city").GetString()));
            }
            else
            {
                Assert.Empty(weatherCalls);
            }

            // Only sources about the place asked (or about no place); none at all when the data has nothing on it.
            var sources = report.GetProperty("sources").EnumerateArray().Select(s => s.GetProperty("id").GetString()!).ToList();
            if (c.CityId is null || c.Parts[0].StartsWith("No weather data", StringComparison.Ordinal))
            {
                Assert.True(sources.Count == 0, $"cites sources for a place or day it has no data for: {context}");
                Assert.Contains("None: nothing in the data answered this question", markdown, StringComparison.Ordinal);
            }

            foreach (var id in sources)
            {
                if (id.StartsWith("weather:", StringComparison.Ordinal))
                {
                    Assert.StartsWith($"weather:{c.CityId}:", id, StringComparison.Ordinal);
                    continue;
                }

                Assert.True(topics.TryGetValue(id, out var docTopics), $"source {id} is not in the corpus");
                var about = docTopics.Where(t => t.StartsWith("city:", StringComparison.Ordinal)).ToList();
                Assert.True(about.Count == 0 || about.Contains($"city:{c.CityId}"), $"source {id} is about {string.Join(", ", about)}: {context}");
            }

            // Synthetic figures are labelled where they are stated (a quoted corpus sentence on the climate is no figure of the dataset).
            var byNumber = report.GetProperty("sources").EnumerateArray().ToDictionary(s => s.GetProperty("number").GetInt32(), s => s.GetProperty("id").GetString()!);
            foreach (var line in markdown.Split('\n').Where(l => l.Contains("°C", StringComparison.Ordinal)))
            {
                var cited = Citation().Matches(line).Select(m => byNumber[int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)]).ToList();
                if (cited.Count == 0 || cited.Any(id => id.StartsWith("weather:", StringComparison.Ordinal)))
                {
                    Assert.True(line.Contains("synthetic sample data", StringComparison.Ordinal), $"figures without the label: {line}\n{context}");
                }
            }
        }
    }
}
