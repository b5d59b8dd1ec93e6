using Loom.Bridge.Internal.Dashboard;
using Loom.Core;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Dashboard.Tests;

/// <summary>
/// The feed's per-event counting (publish edges, the events total, the events over the recording
/// budget) is exact whatever thread publishes and however topics and senders interleave.
/// </summary>
public sealed class DashboardFeedCountingTests
{
    [Fact]
    public async Task Edges_the_events_total_and_the_unrecorded_count_are_exact_across_threads()
    {
        var time = new ManualTime();
        using var bus = new EventBus(time: time);
        var broker = new ActionBroker(time: time);
        using var feed = new DashboardFeed(bus, broker, new AgentDirectory(), () => null, time, startSampler: false);
        feed.Tick(); // the first point starts from zero

        // 4 threads × 600 events over 2 senders × 2 topics (fresh string objects too, so a thread's
        // last edge is found by reference and by value alike): 2,400 in one second, 400 over budget.
        string[] senders = ["alpha", "beta"];
        string[] topics = ["a.one", "a.two"];
        await Task.WhenAll(Enumerable.Range(0, 4).Select(t => Task.Run(async () =>
        {
            for (var i = 0; i < 600; i++)
            {
                var sender = i % 3 == 0 ? new string(senders[(i + t) % 2]) : senders[(i + t) % 2];
                var topic = i % 5 == 0 ? new string(topics[i % 2]) : topics[i % 2];
                await bus.PublishAsync(new Envelope { Topic = topic, Sender = sender });
            }
        })));

        var expected = new Dictionary<(string, string), long>();
        for (var t = 0; t < 4; t++)
        {
            for (var i = 0; i < 600; i++)
            {
                var key = (senders[(i + t) % 2], topics[i % 2]);
                expected[key] = expected.GetValueOrDefault(key) + 1;
            }
        }

        var edges = feed.Topology().Publishes.ToDictionary(e => (e.From, e.To), e => e.Count);
        Assert.Equal(expected.OrderBy(e => e.Key), edges.OrderBy(e => e.Key));
        Assert.Equal(2400 - DashboardFeed.RecordBudgetPerSecond, feed.SampledOut);

        time.Advance(TimeSpan.FromSeconds(1));
        feed.Tick();
        Assert.Equal(2400, feed.History()[^1].Events); // events over the one second since the first point

        // The next second starts a new budget; what the last one did not record stays counted.
        for (var i = 0; i < 10; i++)
        {
            await bus.PublishAsync(new Envelope { Topic = "a.one", Sender = "alpha" });
        }

        Assert.Equal(400, feed.SampledOut);
        Assert.Equal(610, feed.Topology().Publishes.Single(e => e.From == "alpha" && e.To == "a.one").Count);
        time.Advance(TimeSpan.FromSeconds(2));
        feed.Tick();
        Assert.Equal(5, feed.History()[^1].Events); // 10 events over 2 seconds
    }

    /// <summary>A clock that moves only when the test says; no timers (the sampler is off).</summary>
    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = TimeSpan.TicksPerDay;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public override DateTimeOffset GetUtcNow() => new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero).AddTicks(Interlocked.Read(ref _ticks));

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }
}
