using System.Collections.Concurrent;
using Loom.Protocol.V1;

namespace Loom.Core.Tests;

public class EventBusTests
{
    private readonly FakeTimeProvider _time = new();

    private EventBus NewBus(EventBusOptions? options = null) => new(options, _time);

    /// <summary>A bus that lets subscriptions block publishers for minutes (the default caps it at 2 s).</summary>
    private static readonly EventBusOptions LongBlocks = new() { MaxBlockTimeout = TimeSpan.FromMinutes(5) };

    private static Envelope Env(string topic, string? id = null, uint ttlMs = 0) =>
        new() { Topic = topic, Id = id ?? string.Empty, TtlMs = ttlMs };

    private static List<string> Drain(EventSubscription subscription)
    {
        var ids = new List<string>();
        while (subscription.TryRead(out var e))
        {
            ids.Add(e.Id);
        }

        return ids;
    }

    [Fact]
    public async Task Publish_fills_in_id_timestamp_deadline_and_hop_count()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("orders.*", new SubscriptionOptions());
        var envelope = Env("orders.created");

        var result = await bus.PublishAsync(envelope);

        Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 0), result);
        Assert.Equal(32, envelope.Id.Length);
        Assert.True(Guid.TryParseExact(envelope.Id, "N", out _));
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        Assert.Equal(now, envelope.TimestampUnixMs);
        Assert.Equal(now + (long)TimeSpan.FromMinutes(5).TotalMilliseconds, envelope.DeadlineUnixMs);
        Assert.Equal(1u, envelope.HopCount);
        Assert.True(sub.TryRead(out var read));
        Assert.Same(envelope, read);
        Assert.False(sub.TryRead(out _));
    }

    [Fact]
    public async Task Publish_keeps_fields_that_are_set_and_uses_ttl_from_the_timestamp()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe(">", new SubscriptionOptions());
        var ts = _time.GetUtcNow().ToUnixTimeMilliseconds() - 100;
        var envelope = new Envelope { Topic = "t", Id = "mine", TimestampUnixMs = ts, TtlMs = 1000 };
        await bus.PublishAsync(envelope);
        Assert.Equal("mine", envelope.Id);
        Assert.Equal(ts + 1000, envelope.DeadlineUnixMs);
    }

    [Fact]
    public async Task Every_matching_subscriber_gets_the_same_instance()
    {
        using var bus = NewBus();
        var subs = new[] { bus.Subscribe("a.b", new()), bus.Subscribe("a.*", new()), bus.Subscribe("a.>", new()), bus.Subscribe(">", new()), bus.Subscribe("b.*", new()) };
        var envelope = Env("a.b");
        var result = await bus.PublishAsync(envelope);
        Assert.Equal(4, result.Delivered);
        for (var i = 0; i < 4; i++)
        {
            Assert.True(subs[i].TryRead(out var e));
            Assert.Same(envelope, e);
        }

        Assert.False(subs[4].TryRead(out _));
    }

    [Fact]
    public async Task No_subscribers_and_bad_topics()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("x.y", new());
        Assert.Equal(PublishStatus.NoSubscribers, (await bus.PublishAsync(Env("a.b"))).Status);
        var ex = await Assert.ThrowsAsync<InvalidParamsException>(async () => await bus.PublishAsync(Env("a.*")));
        Assert.Equal("/topic", ex.Path);
        await Assert.ThrowsAsync<InvalidParamsException>(async () => await bus.PublishAsync(Env("")));
        Assert.Throws<InvalidParamsException>(() => bus.Subscribe("a.>.b", new()));
        var stats = Assert.Single(bus.TopicStats(), s => s.Topic == "a.b");
        Assert.Equal(1, stats.NoSubscribers);
        Assert.Equal(1, stats.Published);
    }

    [Fact]
    public void Qos_class_defaults()
    {
        using var bus = NewBus(new EventBusOptions { RealtimeQueueCapacity = 4, NormalQueueCapacity = 8, BatchQueueCapacity = 16 });
        var realtime = bus.Subscribe("a", new(QosClass.Realtime));
        var normal = bus.Subscribe("a", new(QosClass.Normal));
        var unspecified = bus.Subscribe("a", new(QosClass.Unspecified));
        var batch = bus.Subscribe("a", new(QosClass.Batch));
        var custom = bus.Subscribe("a", new(QosClass.Realtime, OverflowPolicy.Block, 3, TimeSpan.FromSeconds(2), "agent-1"));

        Assert.Equal((OverflowPolicy.DropOldest, 4), (realtime.Overflow, realtime.Capacity));
        Assert.Equal((OverflowPolicy.DropNewest, 8), (normal.Overflow, normal.Capacity));
        Assert.Equal((QosClass.Normal, OverflowPolicy.DropNewest), (unspecified.Qos, unspecified.Overflow));
        Assert.Equal((OverflowPolicy.Block, 16, TimeSpan.FromSeconds(1)), (batch.Overflow, batch.Capacity, batch.BlockTimeout));
        Assert.Equal((OverflowPolicy.Block, 3, TimeSpan.FromSeconds(2), "agent-1"), (custom.Overflow, custom.Capacity, custom.BlockTimeout, custom.Owner));
        Assert.Equal(5, bus.Subscriptions.Count);
        Assert.Throws<InvalidParamsException>(() => bus.Subscribe("a", new(QueueCapacity: -1)));
    }

    [Fact]
    public async Task Drop_newest_keeps_the_first_and_counts_exactly()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t", new(QosClass.Normal, QueueCapacity: 3));
        var results = new List<PublishResult>();
        for (var i = 1; i <= 5; i++)
        {
            results.Add(await bus.PublishAsync(Env("t", i.ToString())));
        }

        Assert.Equal([1, 1, 1, 0, 0], results.Select(r => r.Delivered));
        Assert.Equal([0, 0, 0, 1, 1], results.Select(r => r.Dropped));
        Assert.All(results, r => Assert.Equal(PublishStatus.Accepted, r.Status));
        Assert.Equal(3, sub.Count);
        var stats = sub.Stats;
        Assert.Equal(2, stats.Dropped[DropReason.QueueFullDropNewest]);
        Assert.Equal(2, stats.DroppedTotal);
        Assert.Equal(3, stats.Enqueued);
        Assert.Equal(["1", "2", "3"], Drain(sub));
        Assert.Equal(3, sub.Stats.Delivered);
        var topic = Assert.Single(bus.TopicStats());
        Assert.Equal((5L, 3L, 2L), (topic.Published, topic.Delivered, topic.Dropped[DropReason.QueueFullDropNewest]));
    }

    [Fact]
    public async Task Drop_oldest_keeps_the_newest_and_counts_exactly()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t.*", new(QosClass.Realtime, QueueCapacity: 3));
        for (var i = 1; i <= 7; i++)
        {
            var r = await bus.PublishAsync(Env(i <= 2 ? "t.early" : "t.late", i.ToString()));
            Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 0), r);
        }

        Assert.Equal(["5", "6", "7"], Drain(sub));
        var stats = sub.Stats;
        Assert.Equal(4, stats.Dropped[DropReason.QueueFullDropOldest]);
        Assert.Equal(7, stats.Enqueued);
        Assert.Equal(3, stats.Delivered);

        // Evictions count against the topic of the evicted envelope.
        var topics = bus.TopicStats().ToDictionary(t => t.Topic);
        Assert.Equal(2, topics["t.early"].Dropped[DropReason.QueueFullDropOldest]);
        Assert.Equal(2, topics["t.late"].Dropped[DropReason.QueueFullDropOldest]);
    }

    [Fact]
    public async Task Block_waits_for_room_and_drops_after_the_timeout()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 1, BlockTimeout: TimeSpan.FromSeconds(1)));
        Assert.Equal(1, (await bus.PublishAsync(Env("t", "1"))).Delivered);

        var blocked = bus.PublishAsync(Env("t", "2"));
        Assert.False(blocked.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.False(blocked.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var result = await blocked.AsTask().WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(new PublishResult(PublishStatus.Accepted, 0, 1), result);
        Assert.Equal(1, sub.Stats.Dropped[DropReason.BlockTimeout]);
        Assert.Equal(1, bus.TopicStats()[0].Dropped[DropReason.BlockTimeout]);
        Assert.Equal(["1"], Drain(sub));
    }

    [Fact]
    public async Task A_stalled_blocking_reader_costs_its_publishers_one_block_timeout_per_episode()
    {
        using var bus = NewBus();
        using var stalled = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 2, BlockTimeout: TimeSpan.FromMilliseconds(200)));
        using var healthy = bus.Subscribe("t", new(QosClass.Normal, QueueCapacity: 1000));
        await bus.PublishAsync(Env("t", "1"));
        await bus.PublishAsync(Env("t", "2"));

        // Two publishers wait for the full queue; when the first one's timeout passes, both go on.
        var first = bus.PublishAsync(Env("t", "3"));
        _time.Advance(TimeSpan.FromMilliseconds(100));
        var second = bus.PublishAsync(Env("t", "4"));
        Assert.False(first.IsCompleted);
        Assert.False(second.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 1), await first.AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 1), await second.AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(stalled.IsStalled);

        // While it stays stalled, publishing does not wait at all: the healthy subscriber gets everything.
        for (var i = 5; i < 105; i++)
        {
            var publish = bus.PublishAsync(Env("t", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            Assert.True(publish.IsCompletedSuccessfully, "a publish waited for a stalled subscriber");
            Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 1), await publish);
        }

        Assert.Equal(104, Drain(healthy).Count);
        Assert.Equal(1, stalled.Stats.Dropped[DropReason.BlockTimeout]);
        Assert.Equal(101, stalled.Stats.Dropped[DropReason.SlowConsumer]);
        Assert.Equal(101, bus.TopicStats()[0].Dropped[DropReason.SlowConsumer]);

        // The reader comes back: once it drained to half its queue, publishers wait for it again.
        Assert.Equal(["1", "2"], Drain(stalled));
        Assert.False(stalled.IsStalled);
        await bus.PublishAsync(Env("t", "a"));
        await bus.PublishAsync(Env("t", "b"));
        var waits = bus.PublishAsync(Env("t", "c"));
        Assert.False(waits.IsCompleted);
        Assert.True(stalled.TryRead(out _));
        Assert.Equal(new PublishResult(PublishStatus.Accepted, 2, 0), await waits.AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
    }

    private static Envelope Sized(string topic, string id, int payloadBytes) =>
        new() { Topic = topic, Id = id, Payload = Google.Protobuf.ByteString.CopyFrom(new byte[payloadBytes]) };

    [Theory]
    [InlineData(OverflowPolicy.DropNewest)]
    [InlineData(OverflowPolicy.DropOldest)]
    public async Task A_queue_is_bounded_in_bytes_as_well_as_in_count(OverflowPolicy overflow)
    {
        using var bus = NewBus(new EventBusOptions { MaxQueueBytesPerSubscription = 10_000 });
        using var sub = bus.Subscribe("t", new(QosClass.Normal, overflow, QueueCapacity: 8192));
        var weight = EventBus.WeightOf(Sized("t", "00", 1000));
        var fits = (int)(10_000 / weight);
        for (var i = 0; i < 30; i++)
        {
            await bus.PublishAsync(Sized("t", i.ToString("00", System.Globalization.CultureInfo.InvariantCulture), 1000));
        }

        Assert.Equal(fits, sub.Count);
        Assert.Equal(fits * weight, sub.QueuedBytes);
        Assert.Equal(sub.QueuedBytes, bus.QueuedBytes);
        var reason = overflow == OverflowPolicy.DropNewest ? DropReason.QueueFullDropNewest : DropReason.QueueFullDropOldest;
        Assert.Equal(30 - fits, sub.Stats.Dropped[reason]);

        // Drop-newest keeps the first that fitted, drop-oldest the last ones.
        var expected = Enumerable.Range(overflow == OverflowPolicy.DropNewest ? 0 : 30 - fits, fits).Select(i => i.ToString("00", System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(expected, Drain(sub));
        Assert.Equal(0, sub.QueuedBytes);
        Assert.Equal(0, bus.QueuedBytes);
    }

    [Fact]
    public async Task One_envelope_larger_than_the_byte_bound_still_fits_an_empty_queue()
    {
        using var bus = NewBus(new EventBusOptions { MaxQueueBytesPerSubscription = 1000 });
        using var sub = bus.Subscribe("t", new(QosClass.Normal));
        Assert.Equal(1, (await bus.PublishAsync(Sized("t", "big", 5000))).Delivered);
        Assert.Equal(0, (await bus.PublishAsync(Sized("t", "next", 10))).Delivered);
        Assert.Equal(["big"], Drain(sub));
    }

    [Fact]
    public async Task Past_the_bus_wide_byte_limit_publishes_are_refused_until_readers_drain()
    {
        using var bus = NewBus(new EventBusOptions { MaxQueuedBytes = 20_000 });
        using var a = bus.Subscribe("t", new(QosClass.Normal));
        using var b = bus.Subscribe("t", new(QosClass.Normal));
        var published = 0;
        PublishResult result;
        while ((result = await bus.PublishAsync(Sized("t", "e" + published, 1000))).Status == PublishStatus.Accepted)
        {
            published++;
            Assert.True(published < 100, "the limit never applied");
        }

        Assert.Equal(new PublishResult(PublishStatus.MemoryLimit, 0, 0), result);
        Assert.True(bus.QueuedBytes >= 20_000);
        Assert.True(bus.QueuedBytes < 20_000 + (2 * EventBus.WeightOf(Sized("t", "e0", 1000))), "at most one publication past the limit");
        Assert.Equal(1, bus.TopicStats()[0].Dropped[DropReason.MemoryLimit]);

        // A reader drains: publishing goes on. An unsubscribed queue gives its bytes back too.
        Drain(a);
        Assert.Equal(PublishStatus.Accepted, (await bus.PublishAsync(Sized("t", "after", 1000))).Status);
        b.Dispose();
        Drain(a);
        Assert.Equal(0, bus.QueuedBytes);
    }

    [Fact]
    public async Task An_envelope_over_the_size_limit_is_refused_whole_and_counted()
    {
        using var bus = NewBus(new EventBusOptions { MaxEnvelopeBytes = 10_000 });
        using var sub = bus.Subscribe("t", new(QosClass.Normal));

        // Headers count as much as the payload; two-byte characters count as two.
        var headers = Sized("t", "headers", 1000);
        headers.Headers["a"] = new string('é', 2500);
        headers.Headers["b"] = new string('é', 2500);
        Assert.Equal(new PublishResult(PublishStatus.TooLarge, 0, 0), await bus.PublishAsync(headers));

        // So do fields this build does not know, forwarded as received.
        using var bytes = new MemoryStream();
        var output = new Google.Protobuf.CodedOutputStream(bytes);
        new Envelope { Topic = "t", Id = "unknown" }.WriteTo(output);
        output.WriteTag(99, Google.Protobuf.WireFormat.WireType.LengthDelimited);
        output.WriteBytes(Google.Protobuf.ByteString.CopyFrom(new byte[20_000]));
        output.Flush();
        var unknown = Envelope.Parser.ParseFrom(bytes.ToArray());
        Assert.True(unknown.UnknownFieldsSize > 20_000);
        Assert.Equal(new PublishResult(PublishStatus.TooLarge, 0, 0), await bus.PublishAsync(unknown));

        Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 0), await bus.PublishAsync(Sized("t", "fits", 9000)));
        Assert.Equal(["fits"], Drain(sub));
        Assert.Equal(2, bus.TopicStats()[0].Dropped[DropReason.TooLarge]);
        Assert.Equal(0, sub.Stats.Dropped[DropReason.TooLarge]);
    }

    [Theory]
    [InlineData(20_000, 0)]
    [InlineData(0, 100_000)]
    public void A_subscription_may_not_ask_for_more_than_the_bus_allows(int blockTimeoutMs, int capacity)
    {
        using var bus = NewBus(new EventBusOptions { MaxBlockTimeout = TimeSpan.FromSeconds(10), MaxSubscriptionQueueCapacity = 65536 });
        var ex = Assert.Throws<InvalidParamsException>(() => bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: capacity, BlockTimeout: blockTimeoutMs == 0 ? null : TimeSpan.FromMilliseconds(blockTimeoutMs))));
        Assert.Equal(blockTimeoutMs == 0 ? "/queue_capacity" : "/block_timeout_ms", ex.Path);
        Assert.Contains(blockTimeoutMs == 0 ? "65536" : "10000 ms", ex.Message, StringComparison.Ordinal);
        using var fits = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 65536, BlockTimeout: TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task Block_completes_when_the_reader_makes_room()
    {
        using var bus = NewBus(LongBlocks);
        using var sub = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 2, BlockTimeout: TimeSpan.FromSeconds(30)));
        await bus.PublishAsync(Env("t", "1"));
        await bus.PublishAsync(Env("t", "2"));
        var blocked = bus.PublishAsync(Env("t", "3"));
        Assert.False(blocked.IsCompleted);

        Assert.True(sub.TryRead(out var first));
        Assert.Equal("1", first.Id);
        var result = await blocked.AsTask().WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 0), result);
        Assert.Equal(["2", "3"], Drain(sub));
        Assert.Equal(0, sub.Stats.DroppedTotal);
    }

    [Fact]
    public async Task Block_gives_up_when_the_publisher_cancels()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 1));
        await bus.PublishAsync(Env("t"));
        using var cts = new CancellationTokenSource();
        var blocked = bus.PublishAsync(Env("t"), cts.Token).AsTask();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => blocked.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(1, sub.Stats.Dropped[DropReason.BlockTimeout]);
    }

    [Fact]
    public async Task Block_stops_waiting_when_the_subscription_goes_away()
    {
        using var bus = NewBus(LongBlocks);
        var sub = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 1, BlockTimeout: TimeSpan.FromMinutes(1)));
        await bus.PublishAsync(Env("t"));
        var blocked = bus.PublishAsync(Env("t")).AsTask();
        sub.Dispose();
        var result = await blocked.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(new PublishResult(PublishStatus.Accepted, 0, 0), result);
    }

    [Fact]
    public async Task Mixed_policies_in_one_publish()
    {
        using var bus = NewBus();
        using var newest = bus.Subscribe("t", new(QosClass.Normal, QueueCapacity: 1));
        using var oldest = bus.Subscribe("t", new(QosClass.Realtime, QueueCapacity: 1));
        using var block = bus.Subscribe("t", new(QosClass.Batch, QueueCapacity: 1, BlockTimeout: TimeSpan.FromMilliseconds(10)));
        Assert.Equal(new PublishResult(PublishStatus.Accepted, 3, 0), await bus.PublishAsync(Env("t", "1")));

        var second = bus.PublishAsync(Env("t", "2"));
        _time.Advance(TimeSpan.FromMilliseconds(10));
        Assert.Equal(new PublishResult(PublishStatus.Accepted, 1, 2), await second.AsTask().WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.Equal(["1"], Drain(newest));
        Assert.Equal(["2"], Drain(oldest));
        Assert.Equal(["1"], Drain(block));
    }

    [Fact]
    public async Task Ttl_expired_envelopes_are_skipped_and_counted()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t", new());
        await bus.PublishAsync(Env("t", "short", ttlMs: 1000));
        await bus.PublishAsync(Env("t", "long", ttlMs: 5000));
        _time.Advance(TimeSpan.FromMilliseconds(999));
        Assert.Equal(2, sub.Count);

        _time.Advance(TimeSpan.FromMilliseconds(1)); // the deadline itself counts as passed
        Assert.Equal(["long"], Drain(sub));
        Assert.Equal(1, sub.Stats.Dropped[DropReason.TtlExpired]);
        Assert.Equal(1, sub.Stats.Delivered);
        Assert.Equal(1, bus.TopicStats()[0].Dropped[DropReason.TtlExpired]);
    }

    [Fact]
    public async Task Expired_before_publish_is_refused()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t", new());
        var past = _time.GetUtcNow().ToUnixTimeMilliseconds() - 1;
        var result = await bus.PublishAsync(new Envelope { Topic = "t", DeadlineUnixMs = past });
        Assert.Equal(PublishStatus.TtlExpired, result.Status);
        Assert.Equal(0, sub.Count);
        Assert.Equal(1, bus.TopicStats()[0].Dropped[DropReason.TtlExpired]);

        var old = _time.GetUtcNow().ToUnixTimeMilliseconds() - 2000;
        Assert.Equal(PublishStatus.TtlExpired, (await bus.PublishAsync(new Envelope { Topic = "t", TimestampUnixMs = old, TtlMs = 1000 })).Status);
    }

    [Fact]
    public async Task Hop_limit_is_enforced()
    {
        using var bus = NewBus(new EventBusOptions { MaxHops = 3 });
        using var sub = bus.Subscribe("t", new());
        var ok = new Envelope { Topic = "t", HopCount = 2 };
        Assert.Equal(PublishStatus.Accepted, (await bus.PublishAsync(ok)).Status);
        Assert.Equal(3u, ok.HopCount);

        var looping = new Envelope { Topic = "t", HopCount = 3 };
        Assert.Equal(new PublishResult(PublishStatus.HopLimitExceeded, 0, 0), await bus.PublishAsync(looping));
        Assert.Equal(1, sub.Count);
        Assert.Equal(1, bus.TopicStats()[0].Dropped[DropReason.HopLimit]);

        // Republishing the same envelope (a forwarding loop) stops at the limit.
        var e = new Envelope { Topic = "t" };
        var statuses = new List<PublishStatus>();
        for (var i = 0; i < 5; i++)
        {
            statuses.Add((await bus.PublishAsync(e)).Status);
        }

        Assert.Equal([PublishStatus.Accepted, PublishStatus.Accepted, PublishStatus.Accepted, PublishStatus.HopLimitExceeded, PublishStatus.HopLimitExceeded], statuses);
    }

    [Fact]
    public async Task Slow_consumer_is_reported_once_per_episode()
    {
        using var bus = NewBus();
        var events = new List<SlowConsumerEvent>();
        bus.SlowConsumer += events.Add;
        using var sub = bus.Subscribe("t", new(QosClass.Normal, QueueCapacity: 10, Owner: "agent-7"));

        for (var i = 0; i < 7; i++)
        {
            await bus.PublishAsync(Env("t"));
        }

        Assert.Empty(events);
        await bus.PublishAsync(Env("t")); // 8/10 = 80%
        var e = Assert.Single(events);
        Assert.Equal((sub.Id, "t", "agent-7", 8, 10, OverflowPolicy.DropNewest), (e.SubscriptionId, e.Pattern, e.Owner, e.Depth, e.Capacity, e.Policy));

        for (var i = 0; i < 10; i++)
        {
            await bus.PublishAsync(Env("t")); // fills and drops: same episode
        }

        Assert.Single(events);

        // Draining to 5 (50%) does not end the episode; below 50% does.
        for (var i = 0; i < 5; i++)
        {
            Assert.True(sub.TryRead(out _));
        }

        await bus.PublishAsync(Env("t"));
        await bus.PublishAsync(Env("t"));
        await bus.PublishAsync(Env("t"));
        Assert.Single(events);
        Assert.Equal(8, sub.Count);
        for (var i = 0; i < 4; i++)
        {
            Assert.True(sub.TryRead(out _));
        }

        Assert.Equal(4, sub.Count);
        for (var i = 0; i < 4; i++)
        {
            await bus.PublishAsync(Env("t"));
        }

        Assert.Equal(2, events.Count);
        Assert.Equal(2, sub.Stats.SlowEpisodes);
    }

    [Fact]
    public async Task Slow_consumer_threshold_waits_for_the_queue_to_stay_full()
    {
        using var bus = NewBus(new EventBusOptions { SlowConsumerThreshold = TimeSpan.FromSeconds(2) });
        var count = 0;
        bus.SlowConsumer += _ => count++;
        using var sub = bus.Subscribe("t", new(QosClass.Realtime, QueueCapacity: 5));
        for (var i = 0; i < 10; i++)
        {
            await bus.PublishAsync(Env("t"));
        }

        Assert.Equal(0, count);
        _time.Advance(TimeSpan.FromSeconds(1));
        await bus.PublishAsync(Env("t"));
        Assert.Equal(0, count);
        _time.Advance(TimeSpan.FromSeconds(1));
        await bus.PublishAsync(Env("t"));
        await bus.PublishAsync(Env("t"));
        Assert.Equal(1, count);
    }

    [Fact]
    public async Task A_throwing_slow_consumer_handler_does_not_break_publishing()
    {
        using var bus = NewBus();
        bus.SlowConsumer += _ => throw new InvalidOperationException("handler bug");
        using var sub = bus.Subscribe("t", new(QueueCapacity: 1));
        Assert.Equal(1, (await bus.PublishAsync(Env("t"))).Delivered);
    }

    private sealed class CountingSignal : ISubscriptionSignal
    {
        public int Calls;

        public void OnAvailable(EventSubscription subscription) => Interlocked.Increment(ref Calls);
    }

    [Fact]
    public async Task Signal_fires_when_an_empty_queue_gets_an_envelope()
    {
        using var bus = NewBus();
        var signal = new CountingSignal();
        using var sub = bus.Subscribe("t", new(), signal);

        await bus.PublishAsync(Env("t"));
        Assert.Equal(1, signal.Calls);
        await bus.PublishAsync(Env("t"));
        Assert.Equal(1, signal.Calls); // not empty before

        Assert.Equal(2, Drain(sub).Count); // the reader found it empty
        await bus.PublishAsync(Env("t"));
        Assert.Equal(2, signal.Calls);
        await bus.PublishAsync(Env("t"));
        Assert.Equal(2, signal.Calls);
    }

    [Fact]
    public async Task WaitToReadAsync_completes_on_publish_and_returns_false_on_dispose()
    {
        using var bus = new EventBus();
        var sub = bus.Subscribe("t", new());
        var waiting = sub.WaitToReadAsync(CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        await bus.PublishAsync(Env("t"));
        Assert.True(await waiting.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.True(await sub.WaitToReadAsync(CancellationToken.None)); // still there
        Assert.True(sub.TryRead(out _));

        var second = sub.WaitToReadAsync(CancellationToken.None).AsTask();
        sub.Dispose();
        Assert.False(await second.WaitAsync(TimeSpan.FromSeconds(5)));
        Assert.False(await sub.WaitToReadAsync(CancellationToken.None));
    }

    [Fact]
    public async Task WaitToReadAsync_honours_cancellation()
    {
        using var bus = NewBus();
        using var sub = bus.Subscribe("t", new());
        using var cts = new CancellationTokenSource();
        var waiting = sub.WaitToReadAsync(cts.Token).AsTask();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    [Fact]
    public async Task Unsubscribe_stops_delivery()
    {
        using var bus = NewBus();
        var sub = bus.Subscribe("t", new());
        await bus.PublishAsync(Env("t"));
        Assert.True(bus.Unsubscribe(sub.Id));
        Assert.False(bus.Unsubscribe(sub.Id));
        Assert.True(sub.IsDisposed);
        Assert.Equal(PublishStatus.NoSubscribers, (await bus.PublishAsync(Env("t"))).Status);
        Assert.Empty(bus.Subscriptions);

        var again = bus.Subscribe("t", new());
        again.Dispose();
        again.Dispose();
        Assert.Equal(PublishStatus.NoSubscribers, (await bus.PublishAsync(Env("t"))).Status);
    }

    [Fact]
    public async Task Subscribing_later_invalidates_the_cached_matches()
    {
        using var bus = NewBus();
        using var first = bus.Subscribe("a.*", new());
        Assert.Equal(1, (await bus.PublishAsync(Env("a.b"))).Delivered);
        using var second = bus.Subscribe("a.b", new());
        Assert.Equal(2, (await bus.PublishAsync(Env("a.b"))).Delivered);
        second.Dispose();
        Assert.Equal(1, (await bus.PublishAsync(Env("a.b"))).Delivered);
    }

    [Fact]
    public async Task Topics_beyond_the_tracking_limit_share_other_stats()
    {
        using var bus = NewBus(new EventBusOptions { MaxTrackedTopics = 2 });
        using var sub = bus.Subscribe(">", new());
        foreach (var t in new[] { "a", "b", "c", "d", "c" })
        {
            Assert.Equal(1, (await bus.PublishAsync(Env(t))).Delivered);
        }

        var stats = bus.TopicStats().ToDictionary(s => s.Topic);
        Assert.Equal(3, stats.Count);
        Assert.Equal(3, stats["(other)"].Published);
        Assert.Equal(5, sub.Stats.Enqueued);
    }

    [Fact]
    public async Task Dispose_closes_everything()
    {
        var bus = NewBus();
        var sub = bus.Subscribe("t", new());
        bus.Dispose();
        Assert.True(sub.IsDisposed);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await bus.PublishAsync(Env("t")));
        Assert.Throws<ObjectDisposedException>(() => bus.Subscribe("t", new()));
    }

    [Fact]
    public async Task Concurrent_publishers_lose_nothing_without_counting_it()
    {
        using var bus = new EventBus();
        using var sub = bus.Subscribe("load.*", new(QosClass.Normal, QueueCapacity: 256));
        const int Publishers = 4, PerPublisher = 50_000;
        var read = 0L;
        using var done = new CancellationTokenSource();
        var reader = Task.Run(async () =>
        {
            while (true)
            {
                while (sub.TryRead(out _))
                {
                    read++;
                }

                if (done.IsCancellationRequested && sub.Count == 0)
                {
                    return;
                }

                try
                {
                    await sub.WaitToReadAsync(done.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
        var delivered = 0L;
        var dropped = 0L;
        await Task.WhenAll(Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                var r = await bus.PublishAsync(new Envelope { Topic = "load.p" + p, Id = "x" });
                Interlocked.Add(ref delivered, r.Delivered);
                Interlocked.Add(ref dropped, r.Dropped);
            }
        })));
        await done.CancelAsync();
        await reader.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(Publishers * PerPublisher, delivered + dropped);
        Assert.Equal(delivered, read);
        var stats = sub.Stats;
        Assert.Equal(dropped, stats.Dropped[DropReason.QueueFullDropNewest]);
        Assert.Equal(delivered, stats.Delivered);
        Assert.Equal(Publishers * PerPublisher, bus.TopicStats().Sum(t => t.Published));
    }

    [Fact]
    public async Task Concurrent_blocking_publishers_deliver_everything_exactly_once()
    {
        using var bus = new EventBus(LongBlocks);
        using var sub = bus.Subscribe("load", new(QosClass.Batch, QueueCapacity: 16, BlockTimeout: TimeSpan.FromSeconds(30)));
        const int Publishers = 3, PerPublisher = 20_000;
        var seen = new ConcurrentDictionary<string, bool>();
        var reader = Task.Run(async () =>
        {
            while (seen.Count < Publishers * PerPublisher)
            {
                while (sub.TryRead(out var e))
                {
                    Assert.True(seen.TryAdd(e.Id, true), "duplicate " + e.Id);
                }

                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                if (seen.Count < Publishers * PerPublisher)
                {
                    await sub.WaitToReadAsync(timeout.Token);
                }
            }
        });
        await Task.WhenAll(Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                var r = await bus.PublishAsync(new Envelope { Topic = "load", Id = p + ":" + i });
                Assert.Equal(1, r.Delivered);
            }
        })));
        await reader.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(Publishers * PerPublisher, seen.Count);
        Assert.Equal(0, sub.Stats.DroppedTotal);
    }

    [Fact]
    public async Task Concurrent_drop_oldest_accounts_for_every_envelope()
    {
        using var bus = new EventBus();
        using var sub = bus.Subscribe("rt", new(QosClass.Realtime, QueueCapacity: 8));
        const int Publishers = 4, PerPublisher = 20_000;
        var read = 0L;
        using var stop = new CancellationTokenSource();
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                if (sub.TryRead(out _))
                {
                    read++;
                }
                else
                {
                    Thread.Yield();
                }
            }
        });
        await Task.WhenAll(Enumerable.Range(0, Publishers).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                await bus.PublishAsync(new Envelope { Topic = "rt", Id = "x" });
            }
        })));
        await stop.CancelAsync();
        await reader.WaitAsync(TimeSpan.FromSeconds(10));
        var leftover = Drain(sub).Count;
        var stats = sub.Stats;
        Assert.Equal(Publishers * PerPublisher, read + leftover + stats.Dropped[DropReason.QueueFullDropOldest]);
        Assert.Equal(Publishers * PerPublisher, stats.Enqueued);
        Assert.Equal(0, sub.Count);
    }

    [Fact]
    public async Task Hot_path_does_not_allocate()
    {
        using var bus = new EventBus();
        using var sub = bus.Subscribe("bench.>", new());
        var envelope = new Envelope { Topic = "bench.a.b", Id = "fixed" };
        for (var i = 0; i < 100; i++)
        {
            envelope.HopCount = 0;
            await bus.PublishAsync(envelope);
            sub.TryRead(out _);
        }

        // A per-event allocation shows in every window; a one-off of the runtime's (tiered JIT
        // replacing a method mid-loop under a loaded suite) does not, so one clean window of three suffices.
        var windows = new List<long>();
        for (var attempt = 0; attempt < 3 && (windows.Count == 0 || windows[^1] != 0); attempt++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 10_000; i++)
            {
                envelope.HopCount = 0;
                var pending = bus.PublishAsync(envelope);
                Assert.True(pending.IsCompletedSuccessfully);
                Assert.True(sub.TryRead(out _));
            }

            windows.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.True(windows[^1] == 0, $"bytes allocated per 10,000 publishes, window by window: {string.Join(", ", windows)}");
    }
}
