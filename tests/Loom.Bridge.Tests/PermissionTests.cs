using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Core;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// Issue 16's permissions on a real bridge with auth required and real tokens, over real sockets:
/// every kind allowed and denied, the refusal's wording, the metric, and defects 2, 3 and 4.
/// </summary>
public sealed class PermissionTests : IAsyncLifetime
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(20);
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-perms-").FullName;
    private LoomBridge _bridge = null!;

    private string Key => Path.Combine(_temp, "token.key");

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                Auth = AuthMode.Required,
                MetricsOpen = true, // the tests read the refusal counter without an admin token
                TokenKeyFile = Key,
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(100),
                Permissions = new Dictionary<string, IdentityPermissions>
                {
                    ["*"] = new() { Allow = new() { Call = ["orders.price"] } },
                    ["alice"] = new()
                    {
                        Allow = new()
                        {
                            Publish = ["orders.>"],
                            Subscribe = ["orders.>"],
                            Provide = ["orders.*"],
                            MemoryRead = ["alice", "shared"],
                            MemoryWrite = ["alice", "shared"],
                            Collaboration = ["barrier", "gather"],
                        },
                        Deny = new() { Publish = ["orders.secret.>"], Subscribe = ["orders.secret.>"] },
                    },
                    ["bob"] = new()
                    {
                        Allow = new() { Subscribe = ["orders.*"], MemoryRead = ["shared"], Collaboration = ["barrier"], Provide = ["bob.*"] },
                        Deny = new() { Call = ["*"] },
                    },
                },
            },
            _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _bridge.DisposeAsync();
        Directory.Delete(_temp, recursive: true);
    }

    private string Token(string agent, string[]? publish = null, string[]? subscribe = null) =>
        BridgeTokens.Create(Key, agent, publish ?? [], subscribe ?? [], TimeSpan.FromHours(1));

    private Task<RawAgent> AgentAsync(string id, Action<RegisterAgentRequest>? configure = null, string[]? publish = null, string[]? subscribe = null)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        configure?.Invoke(request);
        return RawAgent.RegisterAsync(_bridge.GrpcAddress, request, token: Token(id, publish, subscribe));
    }

    private static void Subscribe(RegisterAgentRequest r, string pattern) => r.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = pattern });

    private async Task<string> MetricsAsync()
    {
        using var http = new HttpClient { Timeout = Short };
        return await http.GetStringAsync(new Uri(_bridge.HttpAddress, "/metrics"));
    }

    [Fact]
    public async Task Publish_is_delivered_when_allowed_and_refused_naming_the_rule_otherwise()
    {
        await using var bob = await AgentAsync("bob", r => Subscribe(r, "orders.*"));
        await using var alice = await AgentAsync("alice");

        await alice.PublishAsync("orders.new", "1");
        Assert.Equal("orders.new", (await bob.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short)).Deliver.Envelope.Topic);

        // A deny rule beats the allow: refused, naming identity, action and rule; nothing delivered.
        await alice.PublishAsync("orders.secret.plan", "2", e => e.Id = "denied-1");
        var refusal = await alice.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error, Short);
        Assert.Equal(ErrorCode.PermissionDenied, refusal.Error.Error.Code);
        Assert.Equal("denied-1", refusal.Error.CorrelationId);
        Assert.Contains("Identity 'alice' may not publish to 'orders.secret.plan': denied by permissions.alice.deny.publish 'orders.secret.>'", refusal.Error.Error.Message, StringComparison.Ordinal);

        // No rule: refused saying so.
        await alice.PublishAsync("billing.x", "3");
        var none = await alice.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error, Short);
        Assert.Contains("may not publish to 'billing.x': no rule allows it", none.Error.Error.Message, StringComparison.Ordinal);

        // bob is not allowed to publish at all; his token's allow list would grant it (carol below).
        await bob.PublishAsync("orders.fake", "4");
        Assert.Contains("Identity 'bob' may not publish to 'orders.fake'", (await bob.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error, Short)).Error.Error.Message, StringComparison.Ordinal);

        // A token's allow list grants too (carol has no entry of her own).
        await using var carol = await AgentAsync("carol", publish: ["orders.>"]);
        await carol.PublishAsync("orders.after", "5");
        var next = await bob.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
        Assert.Equal("orders.after", next.Deliver.Envelope.Topic); // the refused ones never arrived

        var metrics = await MetricsAsync();
        Assert.Contains("loom_permission_denied_total{action=\"publish\"} 3", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Subscriptions_and_capabilities_outside_the_rules_are_refused_at_registration_and_on_the_stream()
    {
        // At registration: the whole registration is refused, nothing is subscribed or registered.
        var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var wide = new RegisterAgentRequest { AgentId = "bob", Name = "bob", Sdk = "test" };
        Subscribe(wide, "orders.>");
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(wide, RawAgent.Options(token: Token("bob"))));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("Identity 'bob' may not subscribe to 'orders.>': no rule allows it", refused.Status.Detail, StringComparison.Ordinal);
        var provider = new RegisterAgentRequest { AgentId = "bob", Name = "bob", Sdk = "test" };
        provider.Capabilities.Add(new CapabilityDescriptor { Name = "orders.price" });
        refused = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(provider, RawAgent.Options(token: Token("bob"))));
        Assert.Contains("Identity 'bob' may not provide capability 'orders.price'", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_bridge.Broker.FindProviders("orders.price"));
        Assert.DoesNotContain(_bridge.Bus.Subscriptions, s => s.Owner == "bob");
        channel.Dispose();

        // On the stream: alice's deny overlaps orders.>, a pattern that could deliver a denied topic.
        await using var alice = await AgentAsync("alice");
        await alice.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "s1", Subscription = new Protocol.V1.Subscription { Pattern = "orders.>" } } });
        var error = await alice.WaitForAsync(m => m.KindCase is ServerMessage.KindOneofCase.Error or ServerMessage.KindOneofCase.Ack, Short);
        Assert.Equal(ServerMessage.KindOneofCase.Error, error.KindCase);
        Assert.Contains("denied by permissions.alice.deny.subscribe 'orders.secret.>'", error.Error.Error.Message, StringComparison.Ordinal);
        await alice.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "s2", Subscription = new Protocol.V1.Subscription { Pattern = "orders.new.*" } } });
        var ack = await alice.WaitForAsync(m => m.KindCase is ServerMessage.KindOneofCase.Error or ServerMessage.KindOneofCase.Ack, Short);
        Assert.Equal(ServerMessage.KindOneofCase.Ack, ack.KindCase);
        Assert.Equal(["orders.new.*"], _bridge.Bus.Subscriptions.Where(s => s.Owner == "alice").Select(s => s.Pattern));
    }

    [Fact]
    public async Task Calls_are_made_only_when_allowed()
    {
        await using var alice = await AgentAsync("alice", r => r.Capabilities.Add(new CapabilityDescriptor { Name = "orders.price" }));
        await using var carol = await AgentAsync("carol");
        await using var bob = await AgentAsync("bob");

        // carol: allowed by the '*' entry; the call reaches alice.
        await carol.SendAsync(new ClientMessage { Call = new ActionCall { CallId = "c1", Capability = "orders.price", InputJson = ByteString.CopyFromUtf8("{}") } });
        var pushed = await alice.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call, Short);
        Assert.Equal("carol", pushed.Call.Caller);
        await alice.SendAsync(new ClientMessage { Result = new ActionResult { CallId = pushed.Call.CallId, OutputJson = ByteString.CopyFromUtf8("{\"p\":1}") } });
        Assert.Equal("{\"p\":1}", (await carol.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Result, Short)).Result.OutputJson.ToStringUtf8());

        // bob: his deny beats the '*' allow, on the stream and by ForwardAction; alice sees no call.
        await bob.SendAsync(new ClientMessage { Call = new ActionCall { CallId = "b1", Capability = "orders.price", InputJson = ByteString.CopyFromUtf8("{}") } });
        var result = await bob.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Result, Short);
        Assert.Equal(ErrorCode.PermissionDenied, result.Result.Error.Code);
        Assert.Contains("Identity 'bob' may not call capability 'orders.price': denied by permissions.bob.deny.call '*'", result.Result.Error.Message, StringComparison.Ordinal);
        var forward = await Assert.ThrowsAsync<RpcException>(async () => await bob.Client.ForwardActionAsync(new ForwardActionRequest { SessionId = bob.Registration.SessionId, Call = new ActionCall { CallId = "b2", Capability = "orders.price" } }, RawAgent.Options(token: bob.Token)));
        Assert.Equal(StatusCode.PermissionDenied, forward.StatusCode);
        await Assert.ThrowsAsync<TimeoutException>(() => alice.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call, TimeSpan.FromMilliseconds(500)));
    }

    [Fact]
    public async Task Defect_3_memory_namespaces_are_read_and_written_only_by_identities_granted_them()
    {
        await using var alice = await AgentAsync("alice");
        await using var bob = await AgentAsync("bob");

        async Task<MemoryResponse> Memory(RawAgent agent, MemoryRequest request)
        {
            await agent.SendAsync(new ClientMessage { Memory = request });
            return (await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory && m.Memory.CorrelationId == request.CorrelationId, Short)).Memory;
        }

        Assert.Null((await Memory(alice, new MemoryRequest { CorrelationId = "a1", Namespace = "alice", Set = new MemorySet { Key = "k", Value = ByteString.CopyFromUtf8("\"v\"") } })).Error);
        Assert.Null((await Memory(alice, new MemoryRequest { CorrelationId = "a2", Namespace = "shared", Set = new MemorySet { Key = "k", Value = ByteString.CopyFromUtf8("\"s\"") } })).Error);

        var read = await Memory(bob, new MemoryRequest { CorrelationId = "b1", Namespace = "alice", Get = new MemoryGet { Key = "k" } });
        Assert.Equal(ErrorCode.PermissionDenied, read.Error.Code);
        Assert.Contains("Identity 'bob' may not read memory namespace 'alice': no rule allows it", read.Error.Message, StringComparison.Ordinal);
        Assert.Empty(read.Entries);
        var list = await Memory(bob, new MemoryRequest { CorrelationId = "b2", Namespace = "alice", List = new MemoryList() });
        Assert.Equal(ErrorCode.PermissionDenied, list.Error.Code);
        var write = await Memory(bob, new MemoryRequest { CorrelationId = "b3", Namespace = "shared", Set = new MemorySet { Key = "k", Value = ByteString.CopyFromUtf8("\"forged\"") } });
        Assert.Contains("may not write memory namespace 'shared'", write.Error.Message, StringComparison.Ordinal);
        var delete = await Memory(bob, new MemoryRequest { CorrelationId = "b4", Namespace = "alice", Delete = new MemoryDelete { Key = "k" } });
        Assert.Equal(ErrorCode.PermissionDenied, delete.Error.Code);

        // Nothing was written or deleted; what bob may read, he reads.
        Assert.Equal("\"v\"", _bridge.Memory.Get("alice", "k")!.Value.ToStringUtf8());
        var shared = await Memory(bob, new MemoryRequest { CorrelationId = "b5", Namespace = "shared", Get = new MemoryGet { Key = "k" } });
        Assert.Null(shared.Error);
        Assert.Equal("\"s\"", shared.Entries[0].Value.ToStringUtf8());
    }

    [Fact]
    public async Task Defect_4_a_caller_arrives_at_a_barrier_only_as_itself_and_collaboration_needs_a_grant()
    {
        await using var alice = await AgentAsync("alice");
        await using var bob = await AgentAsync("bob");
        await using var carol = await AgentAsync("carol");
        var collab = new Protocol.V1.Collaboration.CollaborationClient(bob.Channel);

        // bob arrives as alice: refused, and the barrier does not count alice.
        var request = new BarrierRequest { SessionId = bob.Registration.SessionId, BarrierId = "b1", Participant = "alice", NoWait = true };
        request.Participants.Add(["alice", "bob"]);
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await collab.BarrierAsync(request, RawAgent.Options(token: bob.Token)));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("Identity 'bob' (agent 'bob') may not arrive at barrier 'b1' as 'alice'", refused.Status.Detail, StringComparison.Ordinal);

        // bob's session used with carol's token: refused as another identity's session.
        var hijack = await Assert.ThrowsAsync<RpcException>(async () => await collab.BarrierAsync(new BarrierRequest { SessionId = bob.Registration.SessionId, BarrierId = "b1", NoWait = true }, RawAgent.Options(token: carol.Token)));
        Assert.Equal(StatusCode.PermissionDenied, hijack.StatusCode);

        // As themselves, both arrive and the barrier completes with exactly them.
        request.Participant = "";
        var pending = await collab.BarrierAsync(request, RawAgent.Options(token: bob.Token));
        Assert.Equal(["bob"], pending.Arrived);
        var alone = new BarrierRequest { SessionId = alice.Registration.SessionId, BarrierId = "b1", NoWait = true };
        var done = await new Protocol.V1.Collaboration.CollaborationClient(alice.Channel).BarrierAsync(alone, RawAgent.Options(token: alice.Token));
        Assert.Equal(CollabOutcome.Completed, done.Outcome);
        Assert.Equal(["bob", "alice"], done.Arrived);

        // carol has no collaboration grant; bob may not gather (only barrier).
        var none = await Assert.ThrowsAsync<RpcException>(async () => await collab.BarrierAsync(new BarrierRequest { SessionId = carol.Registration.SessionId, BarrierId = "b2", Count = 1 }, RawAgent.Options(token: carol.Token)));
        Assert.Contains("Identity 'carol' may not run collaboration operation 'barrier': no rule allows it", none.Status.Detail, StringComparison.Ordinal);
        var gather = await Assert.ThrowsAsync<RpcException>(async () => await collab.GatherAsync(new GatherRequest { SessionId = bob.Registration.SessionId, Topic = "orders.q", TimeoutMs = 100 }, RawAgent.Options(token: bob.Token)));
        Assert.Contains("may not run collaboration operation 'gather'", gather.Status.Detail, StringComparison.Ordinal);

        // alice may gather, but not publish the request where she may not publish.
        var secret = await Assert.ThrowsAsync<RpcException>(async () => await new Protocol.V1.Collaboration.CollaborationClient(alice.Channel).GatherAsync(new GatherRequest { SessionId = alice.Registration.SessionId, Topic = "orders.secret.q", TimeoutMs = 100 }, RawAgent.Options(token: alice.Token)));
        Assert.Contains("may not publish to 'orders.secret.q'", secret.Status.Detail, StringComparison.Ordinal);
        Assert.Contains("action=\"collaboration\"", await MetricsAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Defect_2_another_identity_cannot_take_over_an_agent_id_nor_its_subscriptions_queue_or_capabilities()
    {
        var victim = await AgentAsync("alice", r =>
        {
            Subscribe(r, "orders.*");
            r.Capabilities.Add(new CapabilityDescriptor { Name = "orders.price" });
            r.HeartbeatIntervalMs = 5000;
        });
        var subscriptionId = victim.Registration.Subscriptions.Single().SubscriptionId;
        victim.Abort(); // its stream is gone; the session lives and queues for it

        await using var carol = await AgentAsync("carol", publish: ["orders.>"]);
        await carol.PublishAsync("orders.queued", "for alice");

        // bob's token, and the victim's id: refused; so is anonymous (auth required).
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var takeover = new RegisterAgentRequest { AgentId = "alice", Name = "alice", Sdk = "attacker" };
        Subscribe(takeover, "orders.*");
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(takeover, RawAgent.Options(token: Token("bob"))));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        var anonymous = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(takeover, RawAgent.Options()));
        Assert.Equal(StatusCode.Unauthenticated, anonymous.StatusCode);

        // Nothing was inherited or removed: alice's subscription and capability are hers, still.
        Assert.Equal([subscriptionId], _bridge.Bus.Subscriptions.Where(s => s.Owner == "alice").Select(s => s.Id));
        Assert.Equal(["alice"], _bridge.Broker.FindProviders("orders.price").Select(p => p.Provider.AgentId));
        Assert.Equal("test", _bridge.Agents.Find("alice")!.Sdk);

        // alice comes back with her own token and finds her queued event.
        await using var back = await AgentAsync("alice", r => Subscribe(r, "orders.*"));
        Assert.True(back.Registration.Reconnected);
        var delivery = await back.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
        Assert.Equal("orders.queued", delivery.Deliver.Envelope.Topic);
        Assert.Equal("carol", delivery.Deliver.Envelope.Sender);
        await victim.DisposeAsync();
    }
}
