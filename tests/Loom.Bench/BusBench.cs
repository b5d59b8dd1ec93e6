using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Bench;

/// <summary>In-process EventBus: one publisher thread, one subscriber thread, a batch (blocking) subscription so nothing drops.</summary>
internal static class BusBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(BenchOptions options, TextWriter progress)
    {
        var events = options.EventsOr(10_000_000);
        var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);
        await RunOnceAsync(Math.Min(events, 2_000_000), payload); // warm-up: tiered JIT
        var rates = new List<double>();
        var allocations = new List<double>();
        for (var run = 0; run < options.RunsOr(5); run++)
        {
            var before = GC.GetTotalAllocatedBytes(precise: true);
            var seconds = await RunOnceAsync(events, payload);
            var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            rates.Add(events / seconds);
            allocations.Add(allocated / (double)events);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bus run {run + 1}: {events / seconds:N0} events/s, {allocated / (double)events:N0} bytes allocated per event"));
        }

        return
        [
            Figure.Of("bus", "1 publisher -> 1 subscriber, in-process", "events/s", rates, $"{events:N0} events of {options.PayloadBytes} B per run"),
            Figure.Of("bus", "allocated per event (envelopes are reused from a ring)", "bytes", allocations),
        ];
    }

    private static async Task<double> RunOnceAsync(int events, ByteString payload)
    {
        using var bus = new EventBus(new EventBusOptions { BatchQueueCapacity = 65_536 });
        using var subscription = bus.Subscribe("bench.bus.>", new SubscriptionOptions(QosClass.Batch));
        var reader = Task.Factory.StartNew(
            async () =>
            {
                var count = 0;
                while (count < events && await subscription.WaitToReadAsync(CancellationToken.None))
                {
                    while (subscription.TryRead(out _))
                    {
                        count++;
                    }
                }

                return count;
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).Unwrap();

        var ring = new Envelope[2 * 65_536];
        for (var i = 0; i < ring.Length; i++)
        {
            ring[i] = new Envelope { Id = "bench-bus-" + i.ToString(CultureInfo.InvariantCulture), Topic = "bench.bus.events", Payload = payload };
        }

        var stopwatch = Stopwatch.StartNew();
        var publisher = Task.Factory.StartNew(
            async () =>
            {
                for (var i = 0; i < events; i++)
                {
                    // The ring is twice the queue: an envelope comes round again only after it was read.
                    var envelope = ring[i & (ring.Length - 1)];
                    envelope.HopCount = 0;
                    envelope.TimestampUnixMs = 0;
                    envelope.DeadlineUnixMs = 0;
                    var pending = bus.PublishAsync(envelope);
                    if (!pending.IsCompletedSuccessfully)
                    {
                        await pending;
                    }
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).Unwrap();
        await publisher;
        var received = await reader;
        stopwatch.Stop();
        if (received != events)
        {
            throw new InvalidOperationException($"The subscriber read {received} of {events} events.");
        }

        return stopwatch.Elapsed.TotalSeconds;
    }
}
