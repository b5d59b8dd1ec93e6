using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Loom.Bench.Soak;

/// <summary>One read of the bridge's /metrics (Prometheus text format).</summary>
internal sealed partial class MetricsSnapshot
{
    private readonly List<(string Name, Dictionary<string, string> Labels, double Value)> _samples = [];

    public static MetricsSnapshot Parse(string text)
    {
        var snapshot = new MetricsSnapshot();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var match = SampleLine().Match(line);
            if (!match.Success || !double.TryParse(match.Groups[3].Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                continue;
            }

            var labels = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Match label in LabelPair().Matches(match.Groups[2].Value))
            {
                labels[label.Groups[1].Value] = label.Groups[2].Value;
            }

            snapshot._samples.Add((match.Groups[1].Value, labels, value));
        }

        return snapshot;
    }

    /// <summary>The family's value, summed over its series; NaN when the bridge does not export it.</summary>
    public double Value(string name)
    {
        var found = false;
        var sum = 0.0;
        foreach (var s in _samples)
        {
            if (s.Name == name)
            {
                found = true;
                sum += s.Value;
            }
        }

        return found ? sum : double.NaN;
    }

    /// <summary>The family's series whose labels have the given values, summed (0 when none has).</summary>
    public double Value(string name, params (string Label, string Value)[] where)
    {
        var sum = 0.0;
        foreach (var s in _samples)
        {
            if (s.Name == name && where.All(w => s.Labels.TryGetValue(w.Label, out var v) && v == w.Value))
            {
                sum += s.Value;
            }
        }

        return sum;
    }

    /// <summary>The family summed by one label (e.g. drops by reason).</summary>
    public SortedDictionary<string, long> SumBy(string name, string label)
    {
        var result = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var s in _samples)
        {
            if (s.Name == name)
            {
                var key = s.Labels.GetValueOrDefault(label, "(none)");
                result[key] = result.GetValueOrDefault(key) + (long)s.Value;
            }
        }

        return result;
    }

    [GeneratedRegex(@"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")]
    private static partial Regex SampleLine();

    [GeneratedRegex(@"([a-zA-Z_][a-zA-Z0-9_]*)=""((?:[^""\\]|\\.)*)""")]
    private static partial Regex LabelPair();
}

/// <summary>Reads /metrics with a bound: a bridge too busy to answer within it counts as a failed scrape.</summary>
internal sealed class BridgeScraper(Uri http) : IDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(5);
    private readonly HttpClient _client = new() { Timeout = Timeout };

    public sealed record Result(MetricsSnapshot? Snapshot, double Milliseconds, string? Error);

    public async Task<Result> ScrapeAsync(CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var text = await _client.GetStringAsync(new Uri(http, "/metrics"), cancellationToken);
            return new Result(MetricsSnapshot.Parse(text), Stopwatch.GetElapsedTime(started).TotalMilliseconds, null);
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or IOException)
        {
            var error = ex is TaskCanceledException && !cancellationToken.IsCancellationRequested ? "timeout" : Outcome.Of(ex);
            return new Result(null, Stopwatch.GetElapsedTime(started).TotalMilliseconds, error);
        }
    }

    public void Dispose() => _client.Dispose();
}
