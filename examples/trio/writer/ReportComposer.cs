using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Examples.Trio.Writer;

/// <summary>
/// Composes the report offline: extractive summarisation (sentences quoted verbatim from the
/// sources the Researcher returned, ranked by how much of the question they cover, near-duplicates
/// dropped) and a fixed template, with a numbered citation after every sentence taken from a
/// source. Weather parts are answered from the figures (<see cref="WeatherAnswers"/>), labelled as
/// synthetic sample data where they are; what the data does not have is said plainly, uncited.
/// Deterministic: the same findings give the same report.
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

        // One section per part of the question; every section says something, if only what is missing.
        var sections = new List<(PlanTask Task, List<(string Text, string? SourceId)> Lines, string? Notice)>();
        foreach (var task in plan.Tasks)
        {
            var finding = findings.FirstOrDefault(f => f.TaskId == task.Id);
            var terms = Terms(task.Text).Union(questionTerms).ToHashSet(StringComparer.Ordinal);
            if (finding is null)
            {
                sections.Add((task, [], "No finding arrived for this question before the deadline."));
            }
            else if (finding.Error is { Length: > 0 } error)
            {
                sections.Add((task, [], $"The research failed: {error}"));
            }
            else if (IsWeather(task, finding))
            {
                sections.Add((task, WeatherLines(task, finding, terms), null));
            }
            else
            {
                var chosen = Choose(finding, terms).Select(c => (c.Text, (string?)c.SourceId)).ToList();
                if (chosen.Count == 0)
                {
                    chosen = finding.NoData is { Count: > 0 } noData
                        ? noData.Select(n => (Sentence(n), (string?)null)).ToList()
                        : [("Nothing in the sources found answers this.", null)];
                }

                sections.Add((task, chosen, null));
            }
        }

        // Number only the sources the report cites, in the order it first cites them.
        var all = NumberSources(findings);
        var sources = new List<CitedSource>();
        foreach (var (_, lines, _) in sections)
        {
            foreach (var (_, sourceId) in lines)
            {
                if (sourceId is not null && sources.All(s => s.Id != sourceId) && all.FirstOrDefault(s => s.Id == sourceId) is { } source)
                {
                    sources.Add(source with { Number = sources.Count + 1 });
                }
            }
        }

        var number = sources.ToDictionary(s => s.Id, s => s.Number, StringComparer.Ordinal);
        markdown.Append("## Summary\n\n");
        var summary = sections.Select(s => s.Lines.Count > 0 ? Cite(s.Lines[0], number) : s.Notice!).ToList();
        markdown.Append(summary.Count > 0 ? string.Join(' ', summary) : "The research returned nothing to summarise.").Append("\n\n");

        foreach (var (task, lines, notice) in sections)
        {
            markdown.Append(CultureInfo.InvariantCulture, $"## {task.Text.Trim()}\n\n");
            if (notice is not null)
            {
                markdown.Append(CultureInfo.InvariantCulture, $"_{notice}_\n\n");
                continue;
            }

            foreach (var line in lines)
            {
                markdown.Append(CultureInfo.InvariantCulture, $"- {Cite(line, number)}\n");
            }

            markdown.Append('\n');
        }

        markdown.Append("## Sources\n\n");
        if (sources.Count == 0)
        {
            markdown.Append("None: nothing in the data answered this question.\n");
        }

        foreach (var source in sources)
        {
            markdown.Append(CultureInfo.InvariantCulture, $"[{source.Number}] {source.Title}{(source.Url is { Length: > 0 } url ? $" — {url}" : "")} ({source.Id})\n");
        }

        var outcomes = plan.Tasks.Select(t => findings.FirstOrDefault(f => f.TaskId == t.Id) is { } f
            ? new TaskOutcome(t.Id, t.Text, t.Capability, t.Aspect, f.Calls ?? [], f.NoData ?? [])
            : new TaskOutcome(t.Id, t.Text, t.Capability, t.Aspect, [], [])).ToList();
        return new Report("report", plan.Question, markdown.ToString().TrimEnd() + "\n", sources, OfflineGenerator, missingTasks, outcomes);
    }

    private static bool IsWeather(PlanTask task, Finding finding) =>
        task.Capability == "weather.get" || finding.WeatherDays is { Count: > 0 } || finding.Weather is { ValueKind: System.Text.Json.JsonValueKind.Object };

    private static string Sentence(string text) => text.TrimEnd().EndsWith('.') ? text.Trim() : text.Trim() + ".";

    /// <summary>
    /// A weather part: the direct answers to what it asks first, then the figures (labelled as
    /// synthetic when they are), then what the data lacks, then the city's own climate context.
    /// With no data at all: says so plainly, and what the report therefore cannot answer.
    /// </summary>
    internal static List<(string Text, string? SourceId)> WeatherLines(PlanTask task, Finding finding, HashSet<string> terms)
    {
        var days = (finding.WeatherDays is { Count: > 0 } list ? list : finding.Weather is { } one ? [one] : [])
            .Select(WeatherDay.From).OfType<WeatherDay>().OrderBy(d => d.Date, StringComparer.Ordinal).ToList();
        var asks = task.Asks is { Count: > 0 } a ? a : ["weather"];
        var place = days.Count > 0 ? days[0].City : task.City ?? "the place asked";
        var lines = new List<(string Text, string? SourceId)>();
        var noData = (finding.NoData ?? []).Select(n => (Sentence(n), (string?)null)).ToList();
        if (days.Count == 0)
        {
            lines.AddRange(noData.Count > 0 ? noData : [($"No weather data for {place}.", null)]);
            lines.Add((WeatherAnswers.Unanswerable(asks, place), null));
            return lines;
        }

        var weatherId = finding.Sources.FirstOrDefault(s => s.Id.StartsWith("weather:", StringComparison.Ordinal))?.Id ?? (finding.Sources.Count > 0 ? finding.Sources[0].Id : null);
        lines.AddRange(WeatherAnswers.Answers(asks, days, place).Select(t => (t, weatherId)));
        if (task.DateNote is { Length: > 0 } note)
        {
            lines.Add((Sentence($"Note: {note} ({WeatherAnswers.Period(days)})"), null));
        }

        lines.AddRange(WeatherAnswers.Figures(days).Select(t => (t, weatherId)));
        lines.AddRange(noData);
        if (days.All(d => d.Synthetic))
        {
            lines.Add(($"These figures are {WeatherAnswers.SyntheticLabel}, generated from climate normals for this demo: not observations and not a forecast.", weatherId));
        }

        var context = finding with { Sentences = (finding.Sentences ?? []).Where(s => s.SourceId != weatherId).ToList() };
        if (context.Sentences!.Count > 0)
        {
            lines.AddRange(Choose(context, terms).Take(1).Select(c => (c.Text, (string?)c.SourceId)));
        }

        return lines;
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

    private static string Cite((string Text, string? SourceId) sentence, Dictionary<string, int> number) =>
        sentence.SourceId is not null && number.TryGetValue(sentence.SourceId, out var n) ? $"{sentence.Text} [{n}]" : sentence.Text;

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
