using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Examples.Trio.Writer;

/// <summary>
/// Composes the report offline: extractive summarisation (sentences quoted verbatim from the
/// sources the Researcher returned, ranked by how much of the question they cover, near-duplicates
/// dropped) and a fixed template, with a numbered citation after every sentence. Deterministic:
/// the same findings give the same report.
/// </summary>
internal static partial class ReportComposer
{
    public const string OfflineGenerator = "offline: extractive summary and template (no LLM configured)";

    private const int SentencesPerSection = 3;

    private static readonly HashSet<string> StopWords = new(StringComparer.Ordinal)
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "in", "is", "it",
        "its", "me", "of", "on", "or", "should", "tell", "that", "the", "there", "this", "to", "was", "we", "what", "when",
        "where", "which", "who", "why", "will", "with", "would", "about", "like", "be", "known", "there", "their", "they",
    };

    [GeneratedRegex(@"(?<=[.!?])\s+(?=[A-Z0-9""'(])")]
    private static partial Regex SentenceBoundary();

    [GeneratedRegex(@"[\p{L}\p{N}]+")]
    private static partial Regex Word();

    /// <summary>Numbers the sources of all findings in order of first use.</summary>
    public static List<CitedSource> NumberSources(IEnumerable<Finding> findings)
    {
        var numbered = new List<CitedSource>();
        foreach (var source in findings.SelectMany(f => f.Sources))
        {
            if (numbered.All(s => s.Id != source.Id))
            {
                numbered.Add(new CitedSource(numbered.Count + 1, source.Id, source.Title, source.Url));
            }
        }

        return numbered;
    }

    public static Report Compose(Plan plan, IReadOnlyList<Finding> findings, IReadOnlyList<string> missingTasks)
    {
        var questionTerms = Terms(plan.Question);
        var markdown = new StringBuilder();
        markdown.Append(CultureInfo.InvariantCulture, $"# {plan.Question.Trim()}\n\n");

        // Summary: the best sentence of each section, so every sub-question is represented.
        var sections = new List<(PlanTask Task, Finding? Finding, List<(string Text, string SourceId)> Chosen)>();
        foreach (var task in plan.Tasks)
        {
            var finding = findings.FirstOrDefault(f => f.TaskId == task.Id);
            var chosen = finding is null ? [] : Choose(finding, Terms(task.Text).Union(questionTerms).ToHashSet(StringComparer.Ordinal));
            sections.Add((task, finding, chosen));
        }

        // Number only the sources the report quotes, in the order it first quotes them.
        var all = NumberSources(findings);
        var sources = new List<CitedSource>();
        foreach (var (_, _, chosen) in sections)
        {
            foreach (var (_, sourceId) in chosen)
            {
                if (sources.All(s => s.Id != sourceId) && all.FirstOrDefault(s => s.Id == sourceId) is { } source)
                {
                    sources.Add(source with { Number = sources.Count + 1 });
                }
            }
        }

        var number = sources.ToDictionary(s => s.Id, s => s.Number, StringComparer.Ordinal);
        markdown.Append("## Summary\n\n");
        var summary = sections.Where(s => s.Chosen.Count > 0).Select(s => Cite(s.Chosen[0], number)).ToList();
        markdown.Append(summary.Count > 0 ? string.Join(' ', summary) : "The research returned nothing to summarise.").Append("\n\n");

        foreach (var (task, finding, chosen) in sections)
        {
            markdown.Append(CultureInfo.InvariantCulture, $"## {task.Text.Trim()}\n\n");
            if (finding is null)
            {
                markdown.Append("_No finding arrived for this question before the deadline._\n\n");
                continue;
            }

            if (finding.Error is { Length: > 0 } error)
            {
                markdown.Append(CultureInfo.InvariantCulture, $"_The research failed: {error}_\n\n");
                continue;
            }

            if (chosen.Count == 0)
            {
                markdown.Append(CultureInfo.InvariantCulture, $"{finding.Answer.Trim()}\n\n");
                continue;
            }

            foreach (var sentence in chosen)
            {
                markdown.Append(CultureInfo.InvariantCulture, $"- {Cite(sentence, number)}\n");
            }

            if (Advice(finding) is { } advice && finding.Sources.Count > 0 && number.TryGetValue(finding.Sources[0].Id, out var weatherSource))
            {
                markdown.Append(CultureInfo.InvariantCulture, $"- {advice} [{weatherSource}]\n");
            }

            markdown.Append('\n');
        }

        markdown.Append("## Sources\n\n");
        foreach (var source in sources)
        {
            markdown.Append(CultureInfo.InvariantCulture, $"[{source.Number}] {source.Title}{(source.Url is { Length: > 0 } url ? $" — {url}" : "")} ({source.Id})\n");
        }

        return new Report("report", plan.Question, markdown.ToString().TrimEnd() + "\n", sources, OfflineGenerator, missingTasks);
    }

    /// <summary>A templated reading of a weather finding (rain and temperature), or null when it has none.</summary>
    private static string? Advice(Finding finding)
    {
        if (finding.Weather is not { ValueKind: System.Text.Json.JsonValueKind.Object } weather
            || !weather.TryGetProperty("precipMm", out var rain) || !weather.TryGetProperty("tempMaxC", out var max))
        {
            return null;
        }

        var mm = rain.GetDouble();
        var warmest = max.GetDouble();
        var umbrella = mm >= 1 ? $"Rain is expected ({mm:0.#} mm): take an umbrella." : mm > 0 ? $"Only a trace of rain is expected ({mm:0.#} mm)." : "No rain is expected: an umbrella should not be needed.";
        var clothes = warmest < 8 ? "Dress for the cold" : warmest < 16 ? "A warm layer or jacket is advisable" : warmest < 24 ? "Light layers should do" : "Dress for warm weather";
        return string.Create(CultureInfo.InvariantCulture, $"{umbrella} {clothes} (highs of {warmest:0.#} °C).");
    }

    /// <summary>The sentences of a finding worth quoting: best coverage of the terms first, near-duplicates dropped, in source order.</summary>
    private static List<(string Text, string SourceId)> Choose(Finding finding, HashSet<string> terms)
    {
        var candidates = new List<(string Text, string SourceId, int Order)>();
        if (finding.Sentences is { Count: > 0 } sentences)
        {
            candidates.AddRange(sentences.Select((s, i) => (s.Text.Trim(), s.SourceId, i)));
        }
        else if (finding.Sources.Count > 0)
        {
            var order = 0;
            foreach (var sentence in SentenceBoundary().Split(finding.Answer))
            {
                candidates.Add((sentence.Trim(), finding.Sources[0].Id, order++));
            }
        }

        var ranked = candidates
            .Where(c => c.Text.Length >= 20)
            .Select(c => (c.Text, c.SourceId, c.Order, Score: Score(c.Text, terms) - (0.05 * c.Order)))
            .OrderByDescending(c => c.Score)
            .ThenBy(c => c.Order);
        var picked = new List<(string Text, string SourceId, int Order)>();
        foreach (var candidate in ranked)
        {
            var words = Terms(candidate.Text);
            if (picked.Any(p => Jaccard(Terms(p.Text), words) > 0.6))
            {
                continue;
            }

            picked.Add((candidate.Text, candidate.SourceId, candidate.Order));
            if (picked.Count == SentencesPerSection)
            {
                break;
            }
        }

        return picked.OrderBy(p => p.Order).Select(p => (p.Text, p.SourceId)).ToList();
    }

    private static string Cite((string Text, string SourceId) sentence, Dictionary<string, int> number) =>
        number.TryGetValue(sentence.SourceId, out var n) ? $"{sentence.Text} [{n}]" : sentence.Text;

    private static double Score(string sentence, HashSet<string> terms)
    {
        var words = Terms(sentence);
        if (words.Count == 0)
        {
            return 0;
        }

        var hits = words.Count(terms.Contains);

        // Coverage of the question matters most; very long sentences are penalised slightly.
        return hits + (hits / Math.Sqrt(words.Count));
    }

    internal static HashSet<string> Terms(string text) =>
        Word().Matches(text.ToLowerInvariant())
            .Select(m => Stem(m.Value))
            .Where(w => w.Length > 1 && !StopWords.Contains(w))
            .ToHashSet(StringComparer.Ordinal);

    private static string Stem(string word) =>
        word.Length > 4 && word.EndsWith("ies", StringComparison.Ordinal) ? word[..^3] + "y"
        : word.Length > 3 && word.EndsWith('s') && !word.EndsWith("ss", StringComparison.Ordinal) ? word[..^1]
        : word;

    private static double Jaccard(HashSet<string> a, HashSet<string> b) =>
        a.Count + b.Count == 0 ? 1 : (double)a.Intersect(b).Count() / a.Union(b).Count();
}
