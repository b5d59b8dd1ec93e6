using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Core;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>One misbehaving client must not stall, starve or expire the others.</summary>
public sealed class IsolationTests : IAsyncLifetime
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(20);
    private LoomBridge _bridge = null!;

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MinHeartbeatInterval = TimeSpan.FromMilliseconds(100) }, _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    [Fact]
    public async Task A_blocking_subscriber_that_stops_reading_neither_stalls_nor_expires_the_publisher()
    {
        // The offender: BLOCK with a tiny queue and a block timeout of ten of the publisher's heartbeat
        // intervals, and a client that never reads its stream (HTTP/2 flow control then stops the bridge's writes).
        using var stalledChannel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var stalledClient = new Protocol.V1.Bridge.BridgeClient(stalledChannel);
        var offender = new RegisterAgentRequest { AgentId = "stalled", Name = "stalled", Sdk = "test" };
        offender.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "load.>", Qos = QosClass.Batch, QueueCapacity = 4, BlockTimeoutMs = 2000 });
        var stalled = await stalledClient.RegisterAgentAsync(offender, RawAgent.Options());
        using var stalledCancel = new CancellationTokenSource();
        using var neverRead = stalledClient.EventStream(new Metadata { { "loom-session-id", stalled.SessionId } }, cancellationToken: stalledCancel.Token);
        await neverRead.ResponseHeadersAsync.WaitAsync(Short);

        var healthyRequest = new RegisterAgentRequest { AgentId = "healthy", Name = "healthy", Sdk = "test" };
        healthyRequest.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "load.>", Qos = QosClass.Normal, QueueCapacity = 8192 });
        await using var healthy = await RawAgent.RegisterAsync(_bridge.GrpcAddress, healthyRequest);

        // The publisher asks for 500 ms heartbeats: 1.5 s unheard would expire it, less than the
        // offender's 2 s block timeout, so a bridge that stopped reading the publisher's stream while
        // its publish waits would expire it (200 ms was tighter than a loaded 2-core CI can promise).
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "publisher", Name = "publisher", Sdk = "test", HeartbeatIntervalMs = 500 });
        using var stopBeats = new CancellationTokenSource();
        var beats = Task.Run(async () =>
        {
            // A well-behaved agent heartbeats on its stream; what matters is whether the bridge reads them.
            for (ulong n = 1; !stopBeats.IsCancellationRequested; n++)
            {
                await publisher.SendAsync(new ClientMessage { Heartbeat = new HeartbeatPing { Sequence = n } });
                await Task.Delay(100, stopBeats.Token).ContinueWith(static _ => { }, TaskScheduler.Default);
            }
        });
        const int Events = 1500;
        var payload = ByteString.CopyFrom(new byte[1024]);
        for (var i = 0; i < Events; i += 50)
        {
            var batch = Enumerable.Range(i, 50).Select(n => new ClientMessage { Publish = new Envelope { Topic = "load.data", Id = "e" + n, Payload = payload } }).ToArray();
            await publisher.SendAsync(batch);
        }

        for (var i = 0; i < Events; i++)
        {
            var delivery = await healthy.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
            Assert.Equal("e" + i, delivery.Deliver.Envelope.Id);
        }

        // The publisher is still the same live session, and the offender's losses are counted as a slow consumer's.
        Assert.Null(publisher.StreamError);
        Assert.NotNull(_bridge.Agents.Find("publisher"));
        await publisher.PublishAsync("load.after", "still here");
        var after = await healthy.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
        Assert.Equal("still here", after.Deliver.Envelope.Payload.ToStringUtf8());
        var offenderStats = _bridge.Bus.Subscriptions.Single(s => s.Owner == "stalled").Stats;
        Assert.True(offenderStats.Dropped[DropReason.BlockTimeout] >= 1, "the first wait ended in a block timeout");
        Assert.True(offenderStats.Dropped[DropReason.SlowConsumer] > 0, "later envelopes were dropped without waiting");

        await stopBeats.CancelAsync();
        await beats.WaitAsync(Short);
        await stalledCancel.CancelAsync();
    }

    [Fact]
    public async Task A_subscription_asking_for_an_unbounded_block_is_refused_with_the_limit()
    {
        var request = new RegisterAgentRequest { AgentId = "greedy", Name = "greedy", Sdk = "test" };
        request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "x.>", Qos = QosClass.Batch, QueueCapacity = 1, BlockTimeoutMs = 4_000_000_000 });
        var ex = await Assert.ThrowsAsync<RpcException>(() => RawAgent.RegisterAsync(_bridge.GrpcAddress, request, openStream: false));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Equal("INVALID_PARAMS", ex.Trailers.GetValue("loom-error-code"));
        Assert.Contains("2000 ms", ex.Status.Detail, StringComparison.Ordinal);
    }

    /// <summary>An agent that registers with one subscription, opens its stream and never reads it.</summary>
    private static async Task<(GrpcChannel Channel, AsyncDuplexStreamingCall<ClientFrame, ServerFrame> Stream)> NeverReadingAsync(LoomBridge bridge, string id, Protocol.V1.Subscription subscription, uint heartbeatMs = 0)
    {
        var channel = GrpcChannel.ForAddress(bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test", HeartbeatIntervalMs = heartbeatMs };
        request.Subscriptions.Add(subscription);
        var registered = await client.RegisterAgentAsync(request, RawAgent.Options());
        var stream = client.EventStream(new Metadata { { "loom-session-id", registered.SessionId } });
        await stream.ResponseHeadersAsync.WaitAsync(Short);
        return (channel, stream);
    }

    [Fact]
    public async Task Queued_megabyte_events_are_bounded_in_bytes_and_healthy_subscribers_get_them_all()
    {
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, EventBus = new EventBusOptions { MaxQueueBytesPerSubscription = 8L * 1024 * 1024 } }, _ => { });
        await bridge.StartAsync();
        var (channel, stream) = await NeverReadingAsync(bridge, "hoarder", new Protocol.V1.Subscription { Pattern = "big.>", Qos = QosClass.Normal });
        using (channel)
        using (stream)
        {
            var healthyRequest = new RegisterAgentRequest { AgentId = "reader", Name = "reader", Sdk = "test" };
            // BATCH: the reader's own queue (also 8 MiB) holds the publisher back instead of dropping, so it loses nothing.
            healthyRequest.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "big.>", Qos = QosClass.Batch });
            await using var healthy = await RawAgent.RegisterAsync(bridge.GrpcAddress, healthyRequest);
            await using var publisher = await RawAgent.RegisterAsync(bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "pub", Name = "pub", Sdk = "test" });

            var payload = ByteString.CopyFrom(new byte[1024 * 1024 - 1024]);
            const int Events = 40;
            for (var i = 0; i < Events; i++)
            {
                await publisher.SendAsync(new ClientMessage { Publish = new Envelope { Topic = "big.data", Id = "m" + i, Payload = payload } });
                Assert.True(bridge.Bus.QueuedBytes <= (8L + 8 + 2) * 1024 * 1024, $"{bridge.Bus.QueuedBytes} bytes queued");
            }

            for (var i = 0; i < Events; i++)
            {
                var delivery = await healthy.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
                Assert.Equal("m" + i, delivery.Deliver.Envelope.Id);
            }

            var hoarder = bridge.Bus.Subscriptions.Single(s => s.Owner == "hoarder");
            Assert.True(hoarder.QueuedBytes <= 9L * 1024 * 1024, $"the hoarder's queue holds {hoarder.QueuedBytes} bytes");
            Assert.True(hoarder.Stats.Dropped[DropReason.QueueFullDropNewest] > 0, "the hoarder's overflow was dropped and counted");
        }
    }

    [Fact]
    public async Task Past_the_bridge_wide_byte_limit_a_publisher_is_told_and_the_bridge_recovers()
    {
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MinHeartbeatInterval = TimeSpan.FromMilliseconds(100), EventBus = new EventBusOptions { MaxQueuedBytes = 4L * 1024 * 1024 } }, _ => { });
        await bridge.StartAsync();

        // The hoarder sends nothing, so it is expired soon after its stream goes away (1 s heartbeats).
        var (channel, stream) = await NeverReadingAsync(bridge, "hoarder", new Protocol.V1.Subscription { Pattern = "big.>", Qos = QosClass.Normal }, heartbeatMs: 1000);
        using (channel)
        {
            await using var publisher = await RawAgent.RegisterAsync(bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "pub", Name = "pub", Sdk = "test" });
            var payload = ByteString.CopyFrom(new byte[512 * 1024]);
            ServerMessage? refusal = null;
            for (var i = 0; i < 200 && refusal is null; i++)
            {
                await publisher.SendAsync(new ClientMessage { Publish = new Envelope { Topic = "big.data", Id = "m" + i, Payload = payload } });
                try
                {
                    refusal = await publisher.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error, TimeSpan.FromMilliseconds(50));
                }
                catch (TimeoutException)
                {
                    // Not refused yet (the hoarder's stream still takes some): publish more.
                }
            }

            Assert.NotNull(refusal);
            Assert.Equal(Protocol.V1.ErrorCode.ResourceExhausted, refusal.Error.Error.Code);
            Assert.Contains("max_queued_bytes", refusal.Error.Error.Message, StringComparison.Ordinal);

            // The hoarder goes away: its queue's bytes are released and publishing works again.
            stream.Dispose();
            await Poll.UntilAsync(() => bridge.Bus.QueuedBytes < 4L * 1024 * 1024, Short, "the hoarder's queued bytes released");
            var readerRequest = new RegisterAgentRequest { AgentId = "reader", Name = "reader", Sdk = "test" };
            readerRequest.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "big.>" });
            await using var reader = await RawAgent.RegisterAsync(bridge.GrpcAddress, readerRequest);
            await publisher.PublishAsync("big.after", "ok");
            var delivered = await reader.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
            Assert.Equal("ok", delivered.Deliver.Envelope.Payload.ToStringUtf8());
        }
    }

    [Fact]
    public async Task A_client_filling_the_memory_store_is_refused_and_others_keep_working()
    {
        const int ValueBytes = 8 * 1024;
        var memory = new MemoryStoreOptions { MaxTotalBytes = 192 * 1024, MaxBytesPerNamespace = 128 * 1024, MaxValueBytes = 16 * 1024 };
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, Memory = memory }, _ => { });
        await bridge.StartAsync();

        var healthyRequest = new RegisterAgentRequest { AgentId = "healthy", Name = "healthy", Sdk = "test", Namespace = "healthy" };
        healthyRequest.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "chat.>" });
        await using var healthy = await RawAgent.RegisterAsync(bridge.GrpcAddress, healthyRequest);
        await using var filler = await RawAgent.RegisterAsync(bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "filler", Name = "filler", Sdk = "test", Namespace = "filler" });

        async Task<MemoryResponse> AskAsync(RawAgent agent, MemoryRequest request)
        {
            request.CorrelationId = Guid.NewGuid().ToString("N");
            await agent.SendAsync(new ClientMessage { Memory = request });
            return (await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory && m.Memory.CorrelationId == request.CorrelationId, Short)).Memory;
        }

        async Task<(int Stored, Error Refusal)> FillAsync(string? ns)
        {
            var value = ByteString.CopyFrom(new byte[ValueBytes]);
            for (var i = 0; i < 100; i++)
            {
                var answer = await AskAsync(filler, new MemoryRequest { Namespace = ns ?? "", Set = new MemorySet { Key = $"blob-{i:000}", Value = value } });
                if (answer.Error is not null)
                {
                    return (i, answer.Error);
                }
            }

            throw new Xunit.Sdk.XunitException("100 writes of 8 KiB were all stored past a 128 KiB limit");
        }

        // The offender fills its own namespace: refused at the namespace's limit, with what to do.
        var (stored, refusal) = await FillAsync(null);
        Assert.Equal(ErrorCode.ResourceExhausted, refusal.Code);
        Assert.True(refusal.Retryable);
        Assert.Contains("Namespace 'filler' holds", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("(memory.max_bytes_per_namespace", refusal.Message, StringComparison.Ordinal);
        Assert.Contains("Nothing was written", refusal.Message, StringComparison.Ordinal);
        Assert.Equal(128 * 1024 / (int)MemoryStore.SizeOf("blob-000", ValueBytes), stored);

        // Nothing it stored was lost, and its stream goes on.
        var first = await AskAsync(filler, new MemoryRequest { Get = new MemoryGet { Key = "blob-000" } });
        Assert.True(first.Found);
        Assert.Equal(ValueBytes, first.Entries[0].Value.Length);
        Assert.Null(filler.StreamError);

        // A healthy agent publishes and receives, and its memory works in its own namespace.
        await AssertHealthyAsync();

        // The offender fills another namespace until the store's total is reached: the healthy agent's writes are
        // refused too now (with the total named), its reads still work, and a delete gives the room back.
        (_, refusal) = await FillAsync("filler-2");
        Assert.Contains("(memory.max_total_bytes", refusal.Message, StringComparison.Ordinal);
        Assert.True(bridge.Memory.TotalBytes <= 192 * 1024, $"the store holds {bridge.Memory.TotalBytes} bytes");
        var refused = await AskAsync(healthy, new MemoryRequest { Set = new MemorySet { Key = "more", Value = ByteString.CopyFrom(new byte[ValueBytes]) } });
        Assert.Equal(ErrorCode.ResourceExhausted, refused.Error.Code);
        Assert.Contains("(memory.max_total_bytes", refused.Error.Message, StringComparison.Ordinal);
        Assert.Equal("v2", (await AskAsync(healthy, new MemoryRequest { Get = new MemoryGet { Key = "plan" } })).Entries[0].Value.ToStringUtf8());
        for (var i = 0; i < 3; i++)
        {
            Assert.True((await AskAsync(filler, new MemoryRequest { Namespace = "filler-2", Delete = new MemoryDelete { Key = $"blob-{i:000}" } })).Found);
        }

        Assert.Null((await AskAsync(healthy, new MemoryRequest { Set = new MemorySet { Key = "more", Value = ByteString.CopyFrom(new byte[ValueBytes]) } })).Error);
        await AssertHealthyAsync();

        // The refusals are counted by limit, and the store's bytes and entries are exported.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var metrics = await http.GetStringAsync(new Uri(bridge.HttpAddress, "/metrics"));
        Assert.Contains("loom_memory_writes_refused_total{reason=\"namespace_bytes\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("loom_memory_writes_refused_total{reason=\"total_bytes\"} 2\n", metrics, StringComparison.Ordinal);
        Assert.Contains($"loom_memory_bytes {bridge.Memory.TotalBytes}\n", metrics, StringComparison.Ordinal);
        Assert.Contains($"loom_memory_entries {bridge.Memory.TotalEntries}\n", metrics, StringComparison.Ordinal);
        Assert.Contains("loom_memory_limit_bytes 196608\n", metrics, StringComparison.Ordinal);

        async Task AssertHealthyAsync()
        {
            var id = Guid.NewGuid().ToString("N");
            await healthy.PublishAsync("chat.note", id);
            var delivered = await healthy.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Payload.ToStringUtf8() == id, Short);
            Assert.Equal("healthy", delivered.Deliver.Envelope.Sender);
            var set = await AskAsync(healthy, new MemoryRequest { Set = new MemorySet { Key = "plan", Value = ByteString.CopyFromUtf8("v1") } });
            Assert.Null(set.Error);
            var cas = await AskAsync(healthy, new MemoryRequest { CompareAndSet = new MemoryCompareAndSet { Key = "plan", ExpectedVersion = set.Entries[0].Version, Value = ByteString.CopyFromUtf8("v2") } });
            Assert.True(cas.Found);
            var list = await AskAsync(healthy, new MemoryRequest { List = new MemoryList { Prefix = "pl" } });
            Assert.Equal("v2", Assert.Single(list.Entries).Value.ToStringUtf8());
            Assert.Null(healthy.StreamError);
        }
    }
}
