using System.Globalization;

namespace Loom.Bench.Soak;

/// <summary>One sample interval: the bridge as /metrics saw it, and the healthy load as its clients saw it.</summary>
internal sealed record SoakSample(
    double Seconds,
    bool ScrapeOk,
    double ScrapeMs,
    double RssMb,
    double HeapMb,
    double CpuPercent,
    double SentPerSecond,
    double ReceivedPerSecond,
    long Lost,
    double OneWayP99Us,
    double OneWayMaxUs,
    double PublisherLagMs,
    double CallsPerSecond,
    long CallsFailed,
    double CallP99Us,
    long HealthyReconnects,
    SortedDictionary<string, long> Drops,
    SortedDictionary<string, long> Incidents);

/// <summary>
/// Samples the bridge and the healthy load every interval and prints one line per sample. A
/// scrape that fails or times out is counted, never fatal: the soak keeps running.
/// </summary>
internal sealed class SoakMonitor(SoakParts parts, BridgeScraper scraper, BridgeProcess? bridge, TextWriter progress)
{
    public const string Drops = "loom_events_dropped_total";
    private double _lastSeconds;
    private long _lastSent;
    private long _lastReceived;
    private long _lastCallsOk;
    private long _lastCallsFailed;
    private long _lastReconnects;
    private double _lastCpu = double.NaN;
    private SortedDictionary<string, long> _lastDrops = [];
    private SortedDictionary<string, long> _lastIncidents = [];

    public List<SoakSample> Samples { get; } = [];

    /// <summary>The first successful scrape, before any load.</summary>
    public MetricsSnapshot? First { get; private set; }

    /// <summary>The latest successful scrape.</summary>
    public MetricsSnapshot? Last { get; private set; }

    public int Scrapes { get; private set; }

    public int ScrapeFailures { get; private set; }

    /// <summary>Set when the child bridge process was found dead.</summary>
    public string? BridgeExit { get; private set; }

    /// <summary>The bridge after a full compacting GC at the end (a child bridge only): what it still holds, without garbage.</summary>
    public MetricsSnapshot? AfterCollect { get; private set; }

    public async Task CollectAtEndAsync(CancellationToken cancellationToken)
    {
        if (bridge is null || bridge.HasExited)
        {
            return;
        }

        try
        {
            await bridge.CollectAsync();
            AfterCollect = (await scraper.ScrapeAsync(cancellationToken)).Snapshot;
        }
        catch (Exception ex) when (ex is TimeoutException or IOException or InvalidOperationException)
        {
            progress.WriteLine($"soak: the full GC at the end failed: {ex.Message}");
        }
    }

    public async Task BaselineAsync(CancellationToken cancellationToken)
    {
        var result = await scraper.ScrapeAsync(cancellationToken);
        First = Last = result.Snapshot ?? throw new InvalidOperationException($"The bridge's /metrics did not answer before the soak: {result.Error}.");
        _lastDrops = First.SumBy(Drops, "reason");
        _lastCpu = First.Value("process_cpu_seconds_total");
    }

    public async Task<SoakSample> SampleAsync(double seconds, CancellationToken cancellationToken)
    {
        var result = await scraper.ScrapeAsync(cancellationToken);
        Scrapes++;
        var metrics = result.Snapshot;
        if (metrics is null)
        {
            ScrapeFailures++;
        }
        else
        {
            Last = metrics;
        }

        if (bridge is { HasExited: true } && BridgeExit is null)
        {
            BridgeExit = string.Create(CultureInfo.InvariantCulture, $"exited with code {bridge.ExitCode} before {seconds:N0} s");
        }

        var span = Math.Max(0.001, seconds - _lastSeconds);
        var sent = parts.Publisher.Sent;
        var received = parts.Received;
        var callsOk = parts.Callers.Ok;
        var callsFailed = parts.Callers.Failed;
        var reconnects = parts.HealthyReconnects;
        var oneWay = parts.OneWay.TakeInterval();
        var calls = parts.Callers.RoundTrips.TakeInterval();
        var drops = metrics?.SumBy(Drops, "reason") ?? _lastDrops;
        var cpu = metrics?.Value("process_cpu_seconds_total") ?? double.NaN;
        var incidents = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var tally in new[] { parts.Healthy, parts.Offenders })
        {
            foreach (var (key, value) in tally.Snapshot())
            {
                incidents[key] = value;
            }
        }

        var sample = new SoakSample(
            seconds,
            metrics is not null,
            result.Milliseconds,
            metrics?.Value("process_resident_memory_bytes") / (1024.0 * 1024) ?? double.NaN,
            metrics?.Value("loom_gc_heap_bytes") / (1024.0 * 1024) ?? double.NaN,
            (cpu - _lastCpu) / span * 100,
            (sent - _lastSent) / span,
            (received - _lastReceived) / span / Math.Max(1, parts.Subscribers.Count),
            parts.Subscribers.Sum(s => s.Gaps),
            oneWay.PercentileUs(0.99),
            oneWay.MaxUs,
            parts.Publisher.TakeMaxLagMs(),
            (callsOk - _lastCallsOk) / span,
            callsFailed - _lastCallsFailed,
            calls.PercentileUs(0.99),
            reconnects - _lastReconnects,
            Tally.Delta(drops, _lastDrops),
            Tally.Delta(incidents, _lastIncidents));
        Samples.Add(sample);
        (_lastSeconds, _lastSent, _lastReceived, _lastCallsOk, _lastCallsFailed, _lastReconnects) = (seconds, sent, received, callsOk, callsFailed, reconnects);
        _lastDrops = drops;
        _lastIncidents = incidents;
        if (!double.IsNaN(cpu))
        {
            _lastCpu = cpu;
        }

        progress.WriteLine(Line(sample, metrics, result.Error));
        return sample;
    }

    private string Line(SoakSample s, MetricsSnapshot? metrics, string? scrapeError)
    {
        var bridgePart = metrics is null
            ? $"bridge: /metrics FAILED ({scrapeError}, {s.ScrapeMs:N0} ms){(BridgeExit is null ? "" : ", " + BridgeExit)}"
            : string.Create(CultureInfo.InvariantCulture, $"bridge {s.RssMb:N0} MB (heap {s.HeapMb:N0}), cpu {s.CpuPercent:N0}%, {metrics.Value("loom_sessions"):N0} sessions, {metrics.Value("loom_connections_open"):N0} conns, scrape {s.ScrapeMs:N0} ms");
        var incidents = s.Incidents.Where(kv => !IsRoutine(kv.Key)).ToList();
        return string.Create(CultureInfo.InvariantCulture,
            $"[{s.Seconds,5:N0}s] {bridgePart} | events {s.SentPerSecond:N0}/s sent, {s.ReceivedPerSecond:N0}/s received each, lost so far {s.Lost:N0}, p99 {Ms(s.OneWayP99Us)} (max {Ms(s.OneWayMaxUs)}), publisher held {s.PublisherLagMs:N0} ms" +
            $" | calls {s.CallsPerSecond:N0}/s ok, {s.CallsFailed:N0} failed, p99 {Ms(s.CallP99Us)} | healthy reconnects {s.HealthyReconnects}" +
            $" | drops {(s.Drops.Count == 0 ? "none" : Tally.Format(s.Drops))} | incidents {(incidents.Count == 0 ? "none" : Tally.Format(incidents))}");
    }

    /// <summary>Outcomes that are the offenders working as planned, left out of the progress line (they are in the summary).</summary>
    private static bool IsRoutine(string key) =>
        key.EndsWith("/ok", StringComparison.Ordinal) || key.EndsWith("_ok", StringComparison.Ordinal) || key.EndsWith("/opened", StringComparison.Ordinal) || key.EndsWith("/stream_opened", StringComparison.Ordinal);

    public static string Ms(double us) => double.IsNaN(us) ? "-" : (us / 1000).ToString(us >= 100_000 ? "N0" : "N2", CultureInfo.InvariantCulture) + " ms";
}
