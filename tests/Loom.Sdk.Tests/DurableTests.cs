using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json;
using Google.Protobuf;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Tests;

namespace Loom.Sdk.Tests;

/// <summary>Durable streams end to end: a real bridge with a data directory, the .NET SDK over gRPC, restarts on the same directory.</summary>
public sealed class DurableTests : IDisposable
{
    private readonly string _data = Path.Combine(Path.GetTempPath(), "loom-durable-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_data))
        {
            Directory.Delete(_data, recursive: true);
        }
    }

    private async Task<LoomBridge> StartAsync(TimeSpan? window = null)
    {
        var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                HeartbeatInterval = TimeSpan.FromSeconds(1),
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ShutdownTimeout = TimeSpan.FromSeconds(1),
                DataDirectory = _data,
                Streams = [new StreamConfig { Name = "orders", Subjects = ["orders.>"], DuplicateWindow = window ?? TimeSpan.FromMinutes(2) }],
            },
            TestBridge.Logging);
        await bridge.StartAsync();
        return bridge;
    }

    private static Task<LoomConnection> ConnectAsync(LoomBridge bridge, string name) =>
        LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = name, ReconnectInitialDelay = TimeSpan.FromMilliseconds(50), ReconnectMaxDelay = TimeSpan.FromMilliseconds(400) });

    private static Envelope Event(string topic, string text, string? id = null) => new() { Id = id ?? "", Topic = topic, Payload = ByteString.CopyFromUtf8(text) };

    [Fact]
    public async Task Acknowledged_publishes_get_sequences_and_a_repeated_id_is_stored_once_also_after_a_restart()
    {
        await using (var bridge = await StartAsync())
        await using (var connection = await ConnectAsync(bridge, "pub"))
        {
            var first = await connection.PublishDurableAsync(Event("orders.new", "a", "id-1"));
            var second = await connection.PublishDurableAsync(Event("orders.new", "b", "id-2"));
            Assert.Equal(("orders", 1ul, false), (first.Stream, first.Sequence, first.Duplicate));
            Assert.Equal(2ul, second.Sequence);
            var again = await connection.PublishDurableAsync(Event("orders.new", "a again", "id-1"));
            Assert.Equal((1ul, true), (again.Sequence, again.Duplicate));

            var ex = await Assert.ThrowsAnyAsync<LoomException>(() => connection.PublishDurableAsync(Event("chat.x", "not durable")));
            Assert.Equal(ErrorCode.InvalidParams, ex.Code);
            Assert.Contains("No durable stream captures topic 'chat.x'", ex.Message, StringComparison.Ordinal);
        }

        await using (var bridge = await StartAsync())
        await using (var connection = await ConnectAsync(bridge, "pub"))
        {
            var retried = await connection.PublishDurableAsync(Event("orders.new", "b retried", "id-2"));
            Assert.Equal((2ul, true), (retried.Sequence, retried.Duplicate));
            Assert.Equal(3ul, (await connection.PublishDurableAsync(Event("orders.new", "c", "id-3"))).Sequence);
            var read = await connection.ReadStreamAsync(new StreamReadRequest { Stream = "orders", StartSequence = 1 });
            Assert.Equal(["a", "b", "c"], read.Events.Select(e => e.Envelope.Payload.ToStringUtf8()));
            Assert.Equal(3ul, read.LastSequence);
        }
    }

    [Fact]
    public async Task A_durable_consumer_resumes_after_a_bridge_restart_where_it_left_off()
    {
        var seen = new ConcurrentBag<(ulong Sequence, string Text)>();
        await using (var bridge = await StartAsync())
        await using (var connection = await ConnectAsync(bridge, "worker"))
        {
            // Live subscribers still get durable events on the ephemeral bus.
            var live = 0;
            await using var subscription = await connection.SubscribeAsync("orders.>", (_, _) => { Interlocked.Increment(ref live); return Task.CompletedTask; });
            for (var i = 1; i <= 50; i++)
            {
                await connection.PublishDurableAsync(Event("orders.new", $"e{i}"));
            }

            var consumer = await connection.ConsumeAsync(new ConsumerConfig { Name = "billing", Stream = "orders" }, (m, _) =>
            {
                seen.Add((m.Sequence, m.Envelope.Payload.ToStringUtf8()));
                return Task.CompletedTask;
            });
            await Poll.UntilAsync(() => seen.Count >= 50 && live >= 50, what: "50 events consumed and seen live");
            await Poll.UntilAsync(async ct => (await ConsumerState(bridge, "billing", ct)).GetProperty("ack_floor").GetInt64() == 50, what: "the acks applied");
            await consumer.DetachAsync();
            for (var i = 51; i <= 80; i++)
            {
                await connection.PublishDurableAsync(Event("orders.new", $"e{i}"));
            }
        }

        Assert.Equal(Enumerable.Range(1, 50).Select(i => (ulong)i), seen.Select(s => s.Sequence).Order());
        var after = new ConcurrentBag<ulong>();
        await using (var bridge = await StartAsync())
        await using (var connection = await ConnectAsync(bridge, "worker"))
        {
            await using var consumer = await connection.ConsumeAsync(new ConsumerConfig { Name = "billing", Stream = "orders" }, (m, _) =>
            {
                after.Add(m.Sequence);
                return Task.CompletedTask;
            });
            Assert.Equal(51ul, consumer.Info.NextSequence);
            await Poll.UntilAsync(() => after.Count >= 30, what: "the 30 events published while it was away");
            Assert.Equal(Enumerable.Range(51, 30).Select(i => (ulong)i), after.Order());
        }
    }

    [Fact]
    public async Task Naks_are_redelivered_and_after_max_deliver_the_event_goes_to_the_dead_letter_topic()
    {
        await using var bridge = await StartAsync();
        await using var connection = await ConnectAsync(bridge, "flaky");
        var dead = new ConcurrentBag<Envelope>();
        await using var deadLetters = await connection.SubscribeAsync("loom.dead.>", (e, _) => { dead.Add(e); return Task.CompletedTask; });
        var counts = new ConcurrentBag<uint>();
        await using var consumer = await connection.ConsumeAsync(new ConsumerConfig { Name = "flaky", Stream = "orders", MaxDeliver = 3, AckWaitMs = 200 }, (m, _) =>
        {
            counts.Add(m.DeliveryCount);
            throw new InvalidOperationException("always fails");
        });
        await connection.PublishDurableAsync(Event("orders.bad", "poison"));
        await Poll.UntilAsync(() => !dead.IsEmpty, what: "the dead letter");
        Assert.Equal([1u, 2u, 3u], counts.Order());
        var letter = Assert.Single(dead);
        Assert.Equal("loom.dead.orders.flaky", letter.Topic);
        Assert.Equal("orders.bad", letter.Headers["loom-dead-topic"]);
        Assert.Equal("1", letter.Headers["loom-dead-sequence"]);
        Assert.Equal("poison", letter.Payload.ToStringUtf8());
    }

    [Fact]
    public async Task An_unacknowledged_delivery_is_redelivered_after_the_ack_wait_and_in_progress_extends_it()
    {
        await using var bridge = await StartAsync();
        await using var connection = await ConnectAsync(bridge, "slow");
        var deliveries = new ConcurrentQueue<(ulong Sequence, uint Count)>();
        var release = new TaskCompletionSource();
        await using var consumer = await connection.ConsumeAsync(new ConsumerConfig { Name = "slow", Stream = "orders", AckWaitMs = 300, MaxAckPending = 1 }, async (m, ct) =>
        {
            deliveries.Enqueue((m.Sequence, m.DeliveryCount));
            if (m.DeliveryCount == 1)
            {
                // Hold the first delivery without settling it past the ack wait: it comes again.
                await release.Task.WaitAsync(TimeSpan.FromSeconds(20), ct);
                m.Terminate();
            }
        });
        await connection.PublishDurableAsync(Event("orders.a", "1"));
        await connection.PublishDurableAsync(Event("orders.a", "2"));
        await Task.Delay(1000); // two ack waits: the redelivery of 1 is queued behind the held handler
        release.SetResult();
        await Poll.UntilAsync(() => deliveries.Any(d => d.Sequence == 2), what: "event 2 once 1 is settled (max_ack_pending 1)");
        Assert.Contains((1ul, 2u), deliveries);
    }

    [Fact]
    public async Task Start_positions_by_sequence_time_and_new_and_replay_over_http()
    {
        await using var bridge = await StartAsync();
        await using var connection = await ConnectAsync(bridge, "replay");
        for (var i = 1; i <= 10; i++)
        {
            await connection.PublishDurableAsync(Event("orders.x", $"e{i}"));
        }

        // Stored times are whole milliseconds: keep the last event before the mark out of the mark's millisecond.
        await Task.Delay(20);
        var middle = DateTimeOffset.UtcNow;
        await Task.Delay(20);
        for (var i = 11; i <= 15; i++)
        {
            await connection.PublishDurableAsync(Event("orders.x", $"e{i}"));
        }

        async Task<List<ulong>> Take(ConsumerConfig config, int expected)
        {
            var got = new ConcurrentBag<ulong>();
            await using var consumer = await connection.ConsumeAsync(config, (m, _) => { got.Add(m.Sequence); return Task.CompletedTask; });
            if (expected > 0)
            {
                await Poll.UntilAsync(() => got.Count >= expected, what: config.Name);
            }

            return [.. got.Order()];
        }

        Assert.Equal(Enumerable.Range(8, 8).Select(i => (ulong)i), await Take(new ConsumerConfig { Name = "s", Stream = "orders", Deliver = DeliverPolicy.BySequence, StartSequence = 8 }, 8));
        Assert.Equal(Enumerable.Range(11, 5).Select(i => (ulong)i), await Take(new ConsumerConfig { Name = "t", Stream = "orders", Deliver = DeliverPolicy.ByTime, StartUnixMs = middle.ToUnixTimeMilliseconds() }, 5));
        var fresh = new ConcurrentBag<ulong>();
        await using (var consumer = await connection.ConsumeAsync(new ConsumerConfig { Name = "n", Stream = "orders", Deliver = DeliverPolicy.New }, (m, _) => { fresh.Add(m.Sequence); return Task.CompletedTask; }))
        {
            await connection.PublishDurableAsync(Event("orders.x", "e16"));
            await Poll.UntilAsync(() => !fresh.IsEmpty, what: "the new event");
            Assert.Equal([16ul], fresh);
        }

        using var http = new HttpClient { BaseAddress = bridge.HttpAddress };
        var page = await http.GetFromJsonAsync<JsonElement>("/v1/streams/orders/events?from_seq=14&max=2");
        Assert.Equal(["e14", "e15"], page.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("payload").GetString()));
        var byTime = await http.GetFromJsonAsync<JsonElement>($"/v1/streams/orders/events?from_time={Uri.EscapeDataString(middle.ToString("O"))}&max=1");
        Assert.Equal(11, byTime.GetProperty("events")[0].GetProperty("sequence").GetInt64());
        var missing = await http.GetAsync(new Uri("/v1/streams/nope/events", UriKind.Relative));
        Assert.Equal(System.Net.HttpStatusCode.NotFound, missing.StatusCode);
        var bad = await http.GetAsync(new Uri("/v1/streams/orders/events?from_seq=x", UriKind.Relative));
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Contains("from_seq 'x'", await bad.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bad_consumer_requests_get_clear_errors()
    {
        await using var bridge = await StartAsync();
        await using var connection = await ConnectAsync(bridge, "bad");
        var noStream = await Assert.ThrowsAnyAsync<LoomException>(() => connection.ConsumeAsync(new ConsumerConfig { Name = "c", Stream = "nope" }, (_, _) => Task.CompletedTask));
        Assert.Contains("no durable stream 'nope'", noStream.Message, StringComparison.Ordinal);
        var badName = await Assert.ThrowsAnyAsync<LoomException>(() => connection.ConsumeAsync(new ConsumerConfig { Name = "a b", Stream = "orders" }, (_, _) => Task.CompletedTask));
        Assert.Equal(ErrorCode.InvalidParams, badName.Code);
    }

    private static async Task<JsonElement> ConsumerState(LoomBridge bridge, string name, CancellationToken ct)
    {
        using var http = new HttpClient { BaseAddress = bridge.HttpAddress };
        var list = await http.GetFromJsonAsync<JsonElement>("/v1/streams", ct);
        return list.GetProperty("streams")[0].GetProperty("consumers").EnumerateArray().First(c => c.GetProperty("name").GetString() == name);
    }
}
