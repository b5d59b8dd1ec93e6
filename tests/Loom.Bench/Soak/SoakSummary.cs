using System.Globalization;

namespace Loom.Bench.Soak;

/// <summary>The soak's figures for the whole run. Figures over samples list one value per interval, so max is the worst interval.</summary>
internal static class SoakSummary
{
    private const string Scenario = "soak";

    public static List<Figure> Build(SoakSettings settings, SoakParts parts, SoakMonitor monitor, double seconds)
    {
        var samples = monitor.Samples;
        var ok = samples.Where(s => s.ScrapeOk).ToList();
        var figures = new List<Figure>();
        void Add(string measure, string unit, IReadOnlyList<double> values, string note = "") => figures.Add(Figure.Of(Scenario, measure, unit, values, note));
        void One(string measure, string unit, double value, string note = "") => Add(measure, unit, [value], note);

        var first = monitor.First!;
        var last = monitor.Last ?? first;
        var rssStart = first.Value("process_resident_memory_bytes") / (1024 * 1024);
        Add("bridge RSS per sample", "MB", ok.Select(s => s.RssMb).ToList(), string.Create(CultureInfo.InvariantCulture, $"{rssStart:N0} MB before the load; {settings.Minutes} min, a sample every {settings.Interval.TotalSeconds:N0} s"));
        One("bridge RSS at end", "MB", ok.Count > 0 ? ok[^1].RssMb : double.NaN);
        Add("bridge managed heap per sample", "MB", ok.Select(s => s.HeapMb).ToList(), "allocated, garbage included");
        if (monitor.AfterCollect is { } collected)
        {
            One("bridge RSS after a full GC at end", "MB", collected.Value("process_resident_memory_bytes") / (1024 * 1024), "offenders' data still held (memory store, queues)");
            One("bridge managed heap after a full GC at end", "MB", collected.Value("loom_gc_heap_bytes") / (1024 * 1024));
        }

        Add("bridge CPU per sample", "%", ok.Where(s => !double.IsNaN(s.CpuPercent)).Select(s => s.CpuPercent).ToList(), "100% = one core");

        var oneWay = parts.OneWay.Total;
        var sent = parts.Publisher.Sent;
        One("one-way latency p99, whole run", "µs", oneWay.PercentileUs(0.99), $"{oneWay.Count:N0} deliveries to 2 subscribers, publish -> handler");
        One("one-way latency p99.9, whole run", "µs", oneWay.PercentileUs(0.999));
        One("one-way latency max", "µs", oneWay.MaxUs);
        Add("one-way latency p99 per interval", "µs", Present(samples.Select(s => s.OneWayP99Us)), "max = the worst interval");
        var calls = parts.Callers.RoundTrips.Total;
        One("call round trip p99, whole run", "µs", calls.PercentileUs(0.99), $"{calls.Count:N0} calls answered");
        One("call round trip p99.9, whole run", "µs", calls.PercentileUs(0.999));
        Add("call round trip p99 per interval", "µs", Present(samples.Select(s => s.CallP99Us)), "max = the worst interval");

        var lost = parts.Subscribers.Select(s => Math.Max(0, sent - s.Received)).ToList();
        One("healthy events sent", "events", sent, string.Create(CultureInfo.InvariantCulture, $"{sent / seconds:N0}/s achieved of {settings.Rate:N0}/s"));
        One("healthy events lost", "events", lost.Sum(), string.Join(", ", parts.Subscribers.Zip(lost, (s, l) => string.Create(CultureInfo.InvariantCulture, $"{s.Name} {l:N0} ({s.Gaps:N0} gaps in sequence)"))));
        Add("publisher held behind schedule per interval", "ms", samples.Select(s => s.PublisherLagMs).ToList(), "max = the longest hold");
        One("calls ok", "calls", parts.Callers.Ok);
        One("call errors", "calls", parts.Callers.Failed, ByPrefix(parts.Healthy, "call/"));
        One("healthy reconnects", "streams", parts.HealthyReconnects, "streams of healthy SDK agents that ended under them: " + Tally.Format(parts.ReconnectsByPart));
        One("offender envelopes received by healthy subscribers", "envelopes", parts.Subscribers.Sum(s => s.Foreign), "the oversized-headers envelopes, delivered");
        foreach (var (key, count) in parts.Healthy.Snapshot().Where(kv => !kv.Key.StartsWith("call/", StringComparison.Ordinal)))
        {
            One("healthy " + key, "count", count);
        }

        foreach (var (family, label, what) in new[]
        {
            (SoakMonitor.Drops, "reason", "events dropped"),
            ("loom_sessions_ended_total", "reason", "sessions ended"),
            ("loom_connections_refused_total", "reason", "connections refused"),
            ("loom_control_messages_dropped_total", "reason", "control messages dropped"),
        })
        {
            foreach (var (reason, count) in Tally.Delta(last.SumBy(family, label), first.SumBy(family, label)))
            {
                One($"{what}: {reason}", "count", count, family);
            }
        }

        var details = parts.Offenders.Details;
        foreach (var (key, count) in parts.Offenders.Snapshot())
        {
            One("offender " + key, "count", count, details.GetValueOrDefault(key, ""));
        }

        if (parts.Slow is { } slow)
        {
            One("slow subscriber events handled", "events", slow.Handled, $"{slow.DroppedLocally:N0} dropped by its SDK, {slow.Reconnects} reconnects");
        }

        if (settings.Has("silent"))
        {
            One("silent connection held, mean", "s", parts.Silent.MeanHeldSeconds, "from connect to the bridge closing it");
        }

        if (settings.Has("flood"))
        {
            One("registration burst, longest", "s", parts.Flood.MaxBurstSeconds, $"{settings.FloodBurst} RegisterAgent calls, 32 at a time");
        }

        if (settings.Has("oversize"))
        {
            One("oversized forward size", "bytes", parts.Forward.RequestBytes, "ForwardActionRequest, serialized");
        }

        if (settings.Has("fill"))
        {
            One("memory accepted from the filler", "MiB", parts.Filler.StoredBytes / (1024.0 * 1024));
        }

        Add("/metrics scrape time per sample", "ms", samples.Select(s => s.ScrapeMs).ToList(), $"timeout {BridgeScraper.Timeout.TotalSeconds:N0} s");
        var up = monitor.ScrapeFailures == 0 && monitor.BridgeExit is null;
        One("bridge up throughout", "1 = yes", up ? 1 : 0, $"{monitor.ScrapeFailures} of {monitor.Scrapes} scrapes failed; {monitor.BridgeExit ?? "process alive at the end"}");
        return figures;
    }

    private static List<double> Present(IEnumerable<double> values) => values.Where(v => !double.IsNaN(v)).ToList();

    private static string ByPrefix(Tally tally, string prefix) =>
        Tally.Format(tally.Snapshot().Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).Select(kv => KeyValuePair.Create(kv.Key[prefix.Length..], kv.Value)));
}
