using Grpc.Core;
using Loom.Core;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>The bridge's own limits: sessions in total, and the settings check every bridge runs when it is made.</summary>
public sealed class LimitTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(15);

    private static RegisterAgentRequest Agent(string id) => new() { AgentId = id, Name = id, Sdk = "test" };

    [Fact]
    public async Task Past_the_session_limit_a_registration_is_refused_and_counted_until_one_leaves()
    {
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MaxSessions = 3 }, _ => { });
        await bridge.StartAsync();
        await using var a = await RawAgent.RegisterAsync(bridge.GrpcAddress, Agent("a"));
        var b = await RawAgent.RegisterAsync(bridge.GrpcAddress, Agent("b"));
        var listening = Agent("c");
        listening.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "x.>" });
        await using var c = await RawAgent.RegisterAsync(bridge.GrpcAddress, listening);

        var refused = await Assert.ThrowsAsync<RpcException>(() => RawAgent.RegisterAsync(bridge.GrpcAddress, Agent("d"), openStream: false));
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Equal("RESOURCE_EXHAUSTED", refused.Trailers.GetValue("loom-error-code"));
        Assert.Contains("The bridge holds 3 agent sessions, its limit (max_sessions)", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Equal(3, bridge.SessionCount);

        // A reconnect of a live session is not a new session, and the others keep working.
        await using var again = await RawAgent.RegisterAsync(bridge.GrpcAddress, Agent("a"));
        Assert.True(again.Registration.Reconnected);
        await again.PublishAsync("x.y", "still fine");
        var delivered = await c.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
        Assert.Equal("still fine", delivered.Deliver.Envelope.Payload.ToStringUtf8());
        Assert.Equal(3, bridge.SessionCount);

        // One leaves: its place is free again.
        await b.LeaveAsync();
        await b.DisposeAsync();
        await Poll.UntilAsync(() => bridge.SessionCount == 2, Short, "the agent that left is removed");
        await using var d = await RawAgent.RegisterAsync(bridge.GrpcAddress, Agent("d"));
        Assert.Equal(3, bridge.SessionCount);

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var metrics = await http.GetStringAsync(new Uri(bridge.HttpAddress, "/metrics"));
        Assert.Contains("loom_registrations_total{result=\"rejected\"} 1\n", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public void The_default_settings_are_valid_and_the_session_limit_is_derived_from_memory()
    {
        new BridgeOptions().Validate();
        var expected = (int)Math.Clamp(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024L * 1024), 1024, 65536);
        Assert.Equal(expected, Internal.SessionRegistry.DefaultMaxSessions());
    }

    public static TheoryData<BridgeOptions, string, string> BadSettings() => new()
    {
        { new BridgeOptions { MaxSessions = -1 }, "MaxSessions", "MaxSessions (max_sessions) is -1; use 0 (derived from the machine's memory) or a positive number." },
        { new BridgeOptions { MaxConnections = -5 }, "MaxConnections", "MaxConnections (max_connections) is -5; use 0" },
        { new BridgeOptions { MaxConnectionsPerAddress = -1 }, "MaxConnectionsPerAddress", "MaxConnectionsPerAddress (max_connections_per_address) is -1; use 0 (no limit per address)" },
        { new BridgeOptions { HandshakeTimeout = TimeSpan.Zero }, "HandshakeTimeout", "HandshakeTimeout (handshake_timeout_ms) is 0 ms; it must be positive." },
        { new BridgeOptions { MaxMessageBytes = 1000 }, "MaxMessageBytes", "MaxMessageBytes (max_message_bytes) is 1000; use 16384 (16 KiB) to 1073741824 (1 GiB)." },
        { new BridgeOptions { MaxMessageBytes = 64 * 1024 }, "MaxPayloadBytes", "MaxPayloadBytes (max_payload_bytes) is 1048576; use 1 to MaxMessageBytes (max_message_bytes, 65536)." },
        { new BridgeOptions { MaxSubscriptionsPerSession = 0 }, "MaxSubscriptionsPerSession", "MaxSubscriptionsPerSession (max_subscriptions_per_session) is 0; it must be positive." },
        { new BridgeOptions { MaxCapabilitiesPerAgent = 0 }, "MaxCapabilitiesPerAgent", "MaxCapabilitiesPerAgent (max_capabilities_per_agent) is 0" },
        { new BridgeOptions { HeartbeatInterval = TimeSpan.FromMilliseconds(50) }, "HeartbeatInterval", "HeartbeatInterval (heartbeat_ms) is 50 ms; use 100 ms (MinHeartbeatInterval) to 60000 ms (MaxHeartbeatInterval)." },
        { new BridgeOptions { MinHeartbeatInterval = TimeSpan.FromSeconds(2), MaxHeartbeatInterval = TimeSpan.FromSeconds(1) }, "MaxHeartbeatInterval", "MaxHeartbeatInterval is 1000 ms; it must be at least MinHeartbeatInterval (2000 ms)." },
        { new BridgeOptions { GrpcPort = 70000 }, "GrpcPort", "GrpcPort is 70000; use 0 (a free port) to 65535." },
        { new BridgeOptions { GrpcPort = 7100, HttpPort = 7100 }, "HttpPort", "GrpcPort and HttpPort are both 7100" },
        { new BridgeOptions { EventBus = new EventBusOptions { MaxQueuedBytes = -1 } }, "EventBus.MaxQueuedBytes", "EventBus.MaxQueuedBytes (max_queued_bytes) is -1; use 0 for the default" },
        { new BridgeOptions { EventBus = new EventBusOptions { MaxQueueBytesPerSubscription = 0 } }, "EventBus.MaxQueueBytesPerSubscription", "EventBus.MaxQueueBytesPerSubscription (max_queue_bytes_per_subscription) is 0; use a positive number of bytes." },
        { new BridgeOptions { EventBus = new EventBusOptions { MaxSubscriptionQueueCapacity = 0 } }, "EventBus.MaxSubscriptionQueueCapacity", "EventBus.MaxSubscriptionQueueCapacity (max_subscription_queue_capacity) is 0; use 1 to 16777216." },
        { new BridgeOptions { EventBus = new EventBusOptions { MaxBlockTimeout = TimeSpan.FromMilliseconds(500) } }, "EventBus.MaxBlockTimeout", "EventBus.MaxBlockTimeout (max_block_timeout_ms) is 500 ms; it must be at least DefaultBlockTimeout (1000 ms)." },
        { new BridgeOptions { Memory = new MemoryStoreOptions { MaxTotalBytes = -1 } }, "Memory.MaxTotalBytes", "Memory.MaxTotalBytes (memory.max_total_bytes) is -1; use 0 for the default" },
        { new BridgeOptions { Memory = new MemoryStoreOptions { MaxTotalEntries = 0 } }, "Memory.MaxTotalEntries", "Memory.MaxTotalEntries (memory.max_total_entries) is 0; use a positive number." },
        { new BridgeOptions { Actions = new ActionBrokerOptions { DefaultTimeout = TimeSpan.FromMinutes(20) } }, "Actions.MaxTimeout", "Actions.MaxTimeout is 600000 ms; it must be at least Actions.DefaultTimeout (1200000 ms)." },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void A_bridge_with_a_bad_setting_is_refused_naming_the_option_and_the_accepted_range(BridgeOptions options, string option, string message)
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new LoomBridge(options, _ => { }));
        Assert.Equal(option, ex.ParamName);
        Assert.StartsWith(message, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_host_that_is_not_an_address_is_refused()
    {
        var ex = Assert.Throws<ArgumentException>(() => new LoomBridge(new BridgeOptions { Host = "example.org" }, _ => { }));
        Assert.Contains("Host 'example.org' is not an IP address", ex.Message, StringComparison.Ordinal);
    }
}
