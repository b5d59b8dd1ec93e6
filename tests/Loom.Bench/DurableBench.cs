using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Loom.Bridge;
using Loom.Protocol.V1;
using Loom.Sdk;
using Loom.Streams;

namespace Loom.Bench;

/// <summary>
/// Durable streams through a bridge in this process with a data directory: acknowledged
/// publishes (each answered once its group commit is fsynced) against the ephemeral pubsub
/// figure measured on the same bridge in the same run (runs interleaved), ack latency pipelined
/// and one at a time, disk bytes per event, and how long a bridge takes to start over a log of
/// --log-events events.
/// </summary>
internal static class DurableBench
{
    private const string Stream = "bench";

    public static async Task<IReadOnlyList<Figure>> RunAsync(BenchOptions options, TextWriter progress)
    {
        var events = options.EventsOr(200_000);
        var root = Path.Combine(Path.GetTempPath(), "loom-bench-durable-" + Guid.NewGuid().ToString("N"));
        try
        {
            var figures = new List<Figure>();
            figures.AddRange(await PublishAsync(Path.Combine(root, "publish"), events, options, progress));

            // Bytes the records take (FileStreamLog.Bytes), not the files' preallocated length.
            await using (var log = FileStreamLog.Open(Path.Combine(root, "publish", "streams", Stream, "log")))
            {
                var perEvent = log.Bytes / (double)Math.Max(1, log.Count);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"durable disk: {log.Bytes:N0} bytes for {log.Count:N0} events: {perEvent:N1} bytes per event of {options.PayloadBytes} B payload"));
                figures.Add(Figure.Of($"durable 1 -> stream, {options.PayloadBytes} B", "disk per event", "bytes", [perEvent], $"{log.Count:N0} events; envelope (32-char id, topic, sender, timestamp, payload) plus the 24-byte record header"));
            }

            if (options.LogEvents > 0)
            {
                figures.AddRange(await RecoveryAsync(Path.Combine(root, "recovery"), options, progress));
            }

            return figures;
        }
        finally
        {
            try
            {
                Directory.Delete(root, recursive: true);
            }
            catch (IOException)
            {
                progress.WriteLine($"durable: could not remove {root}");
            }
        }
    }

    private static LoomBridge Bridge(string data) => new(
        new BridgeOptions
        {
            GrpcPort = 0,
            HttpPort = 0,
            DataDirectory = data,
            Streams = [new StreamConfig { Name = Stream, Subjects = ["bench.durable.>"] }],
        },
        static _ => { });

    private static async Task<IReadOnlyList<Figure>> PublishAsync(string data, int events, BenchOptions options, TextWriter progress)
    {
        await using var bridge = Bridge(data);
        await bridge.StartAsync();
        await using var subscriber = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = "bench-durable-sub" });
        await using var publisher = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = "bench-durable-pub", RequestTimeout = TimeSpan.FromSeconds(60) });
        var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);

        // Warm-up of both paths (tiered JIT).
        await PubSubBench.RunOnceAsync(subscriber, publisher, payload, Math.Min(events, 200_000), "bench.eph.warmup");
        await PipelinedAsync(publisher, payload, Math.Min(events, 100_000), options.InFlight, "bench.durable.warmup");

        var ephemeral = new List<double>();
        var durable = new List<double>();
        var ratio = new List<double>();
        var p50 = new List<double>();
        var p99 = new List<double>();
        for (var run = 0; run < options.RunsOr(5); run++)
        {
            var eph = await PubSubBench.RunOnceAsync(subscriber, publisher, payload, events, $"bench.eph.r{run}");
            var (rate, sorted, errors) = await PipelinedAsync(publisher, payload, events, options.InFlight, $"bench.durable.r{run}");
            ephemeral.Add(eph.EventsPerSecond);
            durable.Add(rate);
            ratio.Add(rate / eph.EventsPerSecond);
            p50.Add(Percentiles.Of(sorted, 0.50));
            p99.Add(Percentiles.Of(sorted, 0.99));
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"durable run {run + 1}: {rate:N0} acked events/s ({errors} errors; ack p50 {p50[^1]:N0} µs, p99 {p99[^1]:N0} µs with {options.InFlight} in flight); ephemeral pubsub {eph.EventsPerSecond:N0} events/s; ratio {ratio[^1]:N2}"));
        }

        // One at a time: each publish waits for its own fsync.
        var single = new List<double>();
        var singleP99 = new List<double>();
        for (var run = 0; run < options.RunsOr(5); run++)
        {
            var count = Math.Min(2000, events);
            var latencies = new long[count];
            for (var i = 0; i < count; i++)
            {
                var start = Stopwatch.GetTimestamp();
                await publisher.PublishDurableAsync(new Envelope { Topic = $"bench.durable.single{run}", Payload = payload });
                latencies[i] = Stopwatch.GetTimestamp() - start;
            }

            Array.Sort(latencies);
            single.Add(Percentiles.Of(latencies, 0.50));
            singleP99.Add(Percentiles.Of(latencies, 0.99));
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"durable one at a time run {run + 1}: ack p50 {single[^1]:N0} µs, p99 {singleP99[^1]:N0} µs"));
        }

        var what = $"durable 1 -> stream, {options.PayloadBytes} B";
        return
        [
            Figure.Of("durable", $"acked publishes, {options.InFlight} in flight", "events/s", durable, $"{events:N0} events per run, fsync per group commit"),
            Figure.Of("durable", "ephemeral pubsub, same bridge, interleaved", "events/s", ephemeral, $"{events:N0} events per run"),
            Figure.Of("durable", "durable / ephemeral", "ratio", ratio),
            Figure.Of(what, "ack latency p50, pipelined", "µs", p50),
            Figure.Of(what, "ack latency p99, pipelined", "µs", p99),
            Figure.Of(what, "ack latency p50, one at a time", "µs", single),
            Figure.Of(what, "ack latency p99, one at a time", "µs", singleP99),
        ];
    }

    /// <summary>Up to <paramref name="inFlight"/> acknowledged publishes outstanding; rate from the first send to the last ack, and each ack's latency.</summary>
    private static async Task<(double Rate, long[] Sorted, int Errors)> PipelinedAsync(LoomConnection publisher, ByteString payload, int count, int inFlight, string topic)
    {
        var latencies = new long[count];
        var errors = 0;
        var finished = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var slots = new SemaphoreSlim(inFlight);
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            await slots.WaitAsync(stop.Token);
            var index = i;
            var start = Stopwatch.GetTimestamp();
            _ = publisher.PublishDurableAsync(new Envelope { Topic = topic, Payload = payload }).ContinueWith(
                t =>
                {
                    latencies[index] = Stopwatch.GetTimestamp() - start;
                    if (!t.IsCompletedSuccessfully)
                    {
                        Interlocked.Increment(ref errors);
                    }

                    slots.Release();
                    if (Interlocked.Increment(ref finished) == count)
                    {
                        done.TrySetResult();
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }

        await done.Task.WaitAsync(stop.Token);
        stopwatch.Stop();
        Array.Sort(latencies);
        return (count / stopwatch.Elapsed.TotalSeconds, latencies, errors);
    }

    /// <summary>Writes a log of --log-events envelopes (stored an hour ago, outside the dedup window), then times bridge starts over it.</summary>
    private static async Task<IReadOnlyList<Figure>> RecoveryAsync(string data, BenchOptions options, TextWriter progress)
    {
        var count = options.LogEvents;
        var logDir = Path.Combine(data, "streams", Stream, "log");
        var fill = Stopwatch.StartNew();
        var at = DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds();
        await using (var log = FileStreamLog.Open(logDir, new StreamLogOptions { Fsync = false }))
        {
            var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);
            var pending = new List<Task<long>>(8192);
            for (var i = 0; i < count; i++)
            {
                var envelope = new Envelope { Id = Guid.NewGuid().ToString("N"), Topic = "bench.durable.recovery", Sender = "bench-durable-pub-0123abcd", Payload = payload, TimestampUnixMs = at };
                pending.Add(log.AppendAsync(envelope.ToByteArray(), at).AsTask());
                if (pending.Count == 8192)
                {
                    await Task.WhenAll(pending);
                    pending.Clear();
                }

                if (i % 1_000_000 == 999_999)
                {
                    progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"recovery log: {i + 1:N0} of {count:N0} events written ({fill.Elapsed.TotalSeconds:N0} s)"));
                }
            }

            await Task.WhenAll(pending);
        }

        long bytes;
        await using (var log = FileStreamLog.Open(logDir))
        {
            bytes = log.Bytes;
        }

        progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"recovery log: {count:N0} events, {bytes:N0} bytes on disk, written in {fill.Elapsed.TotalSeconds:N1} s"));

        var starts = new List<double>();
        var opens = new List<double>();
        for (var run = 0; run < Math.Max(1, Math.Min(options.RunsOr(3), 3)); run++)
        {
            var open = Stopwatch.StartNew();
            await using (var log = FileStreamLog.Open(logDir))
            {
                open.Stop();
                if (log.LastSequence != count)
                {
                    throw new InvalidOperationException($"recovered {log.LastSequence} events of {count}");
                }
            }

            var start = Stopwatch.StartNew();
            await using (var bridge = Bridge(data))
            {
                await bridge.StartAsync();
                start.Stop();
            }

            opens.Add(open.Elapsed.TotalMilliseconds);
            starts.Add(start.Elapsed.TotalMilliseconds);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"recovery run {run + 1}: log open {opens[^1]:N0} ms, bridge start {starts[^1]:N0} ms over {count:N0} events"));
        }

        var what = $"recovery, {count:N0} events of {options.PayloadBytes} B";
        return
        [
            Figure.Of(what, "bridge start over the log", "ms", starts, $"{bytes:N0} bytes on disk; records outside the dedup window"),
            Figure.Of(what, "log open (recovery scan) alone", "ms", opens),
            Figure.Of(what, "disk per event", "bytes", [bytes / (double)count]),
        ];
    }
}
