using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Bench;

/// <summary>One .NET publisher connection to one .NET subscriber connection through the bridge, at full speed (QoS batch: backpressure, no drops).</summary>
internal static class PubSubBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(Uri url, BenchOptions options, TextWriter progress)
    {
        var events = options.EventsOr(1_000_000);
        await using var subscriber = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-sub" });
        await using var publisher = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-pub" });
        var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);

        // Warm-up runs: tiered JIT and dynamic PGO need a few hundred thousand events.
        for (var i = 0; i < 3; i++)
        {
            await RunOnceAsync(subscriber, publisher, payload, Math.Min(events, 500_000), $"bench.pubsub.warmup{i}");
        }

        var rates = new List<double>();
        long lost = 0;
        double perFrame = 0;
        long measured = 0;
        var process = ProcessCost.Now();
        for (var i = 0; i < options.RunsOr(5); i++)
        {
            var run = await RunOnceAsync(subscriber, publisher, payload, events, $"bench.pubsub.r{i}");
            rates.Add(run.EventsPerSecond);
            lost += run.Lost;
            measured += run.Received;
            perFrame = run.MessagesSent / (double)Math.Max(1, run.FramesSent);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pubsub run {i + 1}: {run.EventsPerSecond:N0} events/s ({run.Received:N0} received, {run.Lost:N0} lost, {run.Seconds:N2} s; {perFrame:N0} messages per frame)"));
        }

        var cost = ProcessCost.Now().Since(process, measured);
        return [Figure.Of("pubsub", $"1 -> 1 through the bridge, {options.PayloadBytes} B", "events/s", rates, $"{events:N0} events per run; {lost:N0} lost; ~{perFrame:N0} messages per frame; bench process (publisher + subscriber) per event: {cost}")];
    }

    internal sealed record Run(long Received, long Lost, double Seconds, double EventsPerSecond, long FramesSent, long MessagesSent);

    internal static async Task<Run> RunOnceAsync(LoomConnection subscriber, LoomConnection publisher, ByteString payload, int count, string topic)
    {
        long received = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await subscriber.SubscribeAsync(
            topic,
            (_, _) =>
            {
                if (Interlocked.Increment(ref received) == count)
                {
                    done.TrySetResult();
                }

                return Task.CompletedTask;
            },
            new SubscribeOptions { Qos = QosClass.Batch });

        var before = publisher.Statistics;
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            await publisher.PublishAsync(new Envelope { Topic = topic, Payload = payload, Qos = QosClass.Batch });
        }

        await WaitQuietAsync(done.Task, () => Interlocked.Read(ref received));
        stopwatch.Stop();
        var after = publisher.Statistics;
        var got = Interlocked.Read(ref received);
        return new Run(got, count - got, stopwatch.Elapsed.TotalSeconds, got / stopwatch.Elapsed.TotalSeconds, after.FramesSent - before.FramesSent, after.MessagesSent - before.MessagesSent);
    }

    /// <summary>Until done, or until the counter stops moving for 5 s (the rest counts as lost).</summary>
    internal static async Task WaitQuietAsync(Task done, Func<long> counter)
    {
        while (!done.IsCompleted)
        {
            var seen = counter();
            await Task.WhenAny(done, Task.Delay(TimeSpan.FromSeconds(5)));
            if (!done.IsCompleted && counter() == seen)
            {
                return;
            }
        }
    }
}

/// <summary>Publishes at a fixed rate; each payload carries its send timestamp, so the subscriber measures one-way latency (same process, same clock).</summary>
internal static class PacedBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(Uri url, BenchOptions options, TextWriter progress)
    {
        await using var subscriber = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-paced-sub" });
        await using var publisher = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-paced-pub" });
        var figures = new List<Figure>();
        foreach (var rate in options.Rates)
        {
            await RunOnceAsync(subscriber, publisher, rate, Math.Max(rate / 2, 500), options.PayloadBytes, $"bench.paced.{rate}.warmup");
            var p50 = new List<double>();
            var p90 = new List<double>();
            var p99 = new List<double>();
            var p999 = new List<double>();
            var achieved = new List<double>();
            long lost = 0;
            for (var run = 0; run < options.RunsOr(5); run++)
            {
                var (sorted, seconds, missing) = await RunOnceAsync(subscriber, publisher, rate, rate * options.Seconds, options.PayloadBytes, $"bench.paced.{rate}.r{run}");
                p50.Add(Percentiles.Of(sorted, 0.50));
                p90.Add(Percentiles.Of(sorted, 0.90));
                p99.Add(Percentiles.Of(sorted, 0.99));
                p999.Add(Percentiles.Of(sorted, 0.999));
                achieved.Add(sorted.Length / seconds);
                lost += missing;
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"paced {rate:N0}/s run {run + 1}: p50 {p50[^1]:N1} µs, p90 {p90[^1]:N1}, p99 {p99[^1]:N1}, p999 {p999[^1]:N1}; {sorted.Length / seconds:N0} events/s, {missing} lost"));
            }

            var what = $"paced {rate:N0}/s";
            figures.Add(Figure.Of(what, "latency p50", "µs", p50, $"{rate * options.Seconds:N0} events per run, {options.PayloadBytes} B, one-way publish -> handler"));
            figures.Add(Figure.Of(what, "latency p90", "µs", p90));
            figures.Add(Figure.Of(what, "latency p99", "µs", p99));
            figures.Add(Figure.Of(what, "latency p99.9", "µs", p999));
            figures.Add(Figure.Of(what, "achieved rate", "events/s", achieved, $"{lost} lost"));
        }

        return figures;
    }

    private static async Task<(long[] Sorted, double Seconds, long Lost)> RunOnceAsync(LoomConnection subscriber, LoomConnection publisher, int rate, int count, int payloadBytes, string topic)
    {
        var latencies = new long[count];
        long received = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await subscriber.SubscribeAsync(
            topic,
            (envelope, _) =>
            {
                var now = Stopwatch.GetTimestamp();
                var sent = BinaryPrimitives.ReadInt64LittleEndian(envelope.Payload.Span);
                var n = Interlocked.Increment(ref received);
                if (n <= latencies.Length)
                {
                    latencies[n - 1] = now - sent;
                }

                if (n == latencies.Length)
                {
                    done.TrySetResult();
                }

                return Task.CompletedTask;
            },
            new SubscribeOptions { Qos = QosClass.Batch });

        var interval = (double)Stopwatch.Frequency / rate;
        var start = Stopwatch.GetTimestamp();

        // A dedicated thread paces (it sleeps between sends), so no thread-pool thread is held.
        await Task.Factory.StartNew(
            () =>
            {
                var sentCount = 0;
                while (sentCount < count)
                {
                    var now = Stopwatch.GetTimestamp();
                    var due = (long)((now - start) / interval) + 1;
                    while (sentCount < count && sentCount < due)
                    {
                        var bytes = new byte[Math.Max(8, payloadBytes)];
                        BinaryPrimitives.WriteInt64LittleEndian(bytes, Stopwatch.GetTimestamp());
                        var pending = publisher.PublishAsync(new Envelope { Topic = topic, Payload = UnsafeByteOperations.UnsafeWrap(bytes), Qos = QosClass.Batch });
                        if (!pending.IsCompletedSuccessfully)
                        {
                            pending.AsTask().GetAwaiter().GetResult();
                        }

                        sentCount++;
                    }

                    var next = start + (long)(sentCount * interval);
                    if (next - Stopwatch.GetTimestamp() > Stopwatch.Frequency / 2000)
                    {
                        Thread.Sleep(1); // coarse pacing: latency is measured from the actual send, not the schedule
                    }
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);

        var seconds = Percentiles.Us(Stopwatch.GetTimestamp() - start) / 1e6;
        await PubSubBench.WaitQuietAsync(done.Task, () => Interlocked.Read(ref received));
        var got = (int)Math.Min(Interlocked.Read(ref received), count);
        var sorted = latencies[..got];
        Array.Sort(sorted);
        return (sorted, seconds, count - got);
    }
}

/// <summary>One publisher to N subscriber connections on one topic: deliveries per second in total.</summary>
internal static class FanOutBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(Uri url, BenchOptions options, TextWriter progress)
    {
        var n = options.Subscribers;
        var events = options.EventsOr(200_000);
        var subscribers = new List<LoomConnection>();
        try
        {
            for (var i = 0; i < n; i++)
            {
                subscribers.Add(await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = $"bench-fan-{i}" }));
            }

            await using var publisher = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-fan-pub" });
            var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);
            await RunOnceAsync(subscribers, publisher, payload, Math.Min(events, 50_000), "bench.fan.warmup");
            var rates = new List<double>();
            for (var run = 0; run < options.RunsOr(5); run++)
            {
                var (rate, lost) = await RunOnceAsync(subscribers, publisher, payload, events, $"bench.fan.r{run}");
                rates.Add(rate);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"fanout x{n} run {run + 1}: {rate:N0} deliveries/s ({rate / n:N0} per subscriber), {lost} lost"));
            }

            return [Figure.Of("fanout", $"1 -> {n} subscribers, {options.PayloadBytes} B", "deliveries/s", rates, $"{events:N0} events per run")];
        }
        finally
        {
            foreach (var s in subscribers)
            {
                await s.DisposeAsync();
            }
        }
    }

    private static async Task<(double Rate, long Lost)> RunOnceAsync(List<LoomConnection> subscribers, LoomConnection publisher, ByteString payload, int events, string topic)
    {
        long received = 0;
        var total = (long)events * subscribers.Count;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var subscriptions = new List<LoomSubscription>();
        foreach (var s in subscribers)
        {
            subscriptions.Add(await s.SubscribeAsync(topic, (_, _) =>
            {
                if (Interlocked.Increment(ref received) == total)
                {
                    done.TrySetResult();
                }

                return Task.CompletedTask;
            }, new SubscribeOptions { Qos = QosClass.Batch }));
        }

        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < events; i++)
        {
            await publisher.PublishAsync(new Envelope { Topic = topic, Payload = payload, Qos = QosClass.Batch });
        }

        await PubSubBench.WaitQuietAsync(done.Task, () => Interlocked.Read(ref received));
        stopwatch.Stop();
        foreach (var s in subscriptions)
        {
            await s.DisposeAsync();
        }

        var got = Interlocked.Read(ref received);
        return (got / stopwatch.Elapsed.TotalSeconds, total - got);
    }
}

/// <summary>CPU, allocation and GC pause of this process, to report them per event of a scenario.</summary>
internal readonly record struct ProcessCost(TimeSpan Cpu, long Allocated, TimeSpan GcPause)
{
    public static ProcessCost Now() => new(Process.GetCurrentProcess().TotalProcessorTime, GC.GetTotalAllocatedBytes(), GC.GetTotalPauseDuration());

    /// <summary>Per event since <paramref name="start"/>: "1.52 µs CPU, 612 B allocated, 0.21 µs in GC pauses".</summary>
    public string Since(ProcessCost start, long events)
    {
        var n = Math.Max(1, events);
        var cpu = Cpu - start.Cpu;
        return string.Create(CultureInfo.InvariantCulture, $"{cpu.TotalMicroseconds / n:N2} µs CPU, {(Allocated - start.Allocated) / (double)n:N0} B allocated, {(GcPause - start.GcPause).TotalMicroseconds / n:N2} µs in GC pauses");
    }
}
