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

        // The publisher asks for 200 ms heartbeats: 600 ms unheard would expire it.
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "publisher", Name = "publisher", Sdk = "test", HeartbeatIntervalMs = 200 });
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
        Assert.Contains("10000 ms", ex.Status.Detail, StringComparison.Ordinal);
    }
}
