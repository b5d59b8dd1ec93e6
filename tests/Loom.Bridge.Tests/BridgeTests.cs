using System.Net;
using System.Text;
using Google.Protobuf;
using Grpc.Health.V1;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

public sealed class BridgeTests : IAsyncLifetime
{
    private LoomBridge _bridge = null!;

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, HeartbeatInterval = TimeSpan.FromSeconds(5) }, _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    private static RegisterAgentRequest Agent(string id, params string[] patterns)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        foreach (var p in patterns)
        {
            request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = p });
        }

        return request;
    }

    private static CapabilityDescriptor EchoCapability(string name = "test.echo") => new()
    {
        Name = name,
        Version = "1.0.0",
        Description = "Echoes its input.",
        InputSchemaJson = """{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""",
        OutputSchemaJson = "{}",
    };

    private Task<ForwardActionResponse> ForwardAsync(string capability, string json, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        return ForwardWithAsync(GrpcChannel.ForAddress(_bridge.GrpcAddress), capability, json, timeout, cancellationToken);
    }

    private static async Task<ForwardActionResponse> ForwardWithAsync(GrpcChannel channel, string capability, string json, TimeSpan? timeout, CancellationToken cancellationToken)
    {
        using (channel)
        {
            var request = new ForwardActionRequest { Call = new ActionCall { CallId = "1", Capability = capability, InputJson = ByteString.CopyFromUtf8(json) } };
            return await new Protocol.V1.Bridge.BridgeClient(channel).ForwardActionAsync(request, RawAgent.Options(timeout, cancellationToken));
        }
    }

    [Fact]
    public async Task Health_check_reports_serving_and_unknown_services()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var health = new Health.HealthClient(channel);
        var ok = await health.CheckAsync(new HealthCheckRequest(), RawAgent.Options());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, ok.Status);
        var named = await health.CheckAsync(new HealthCheckRequest { Service = "loom.v1.Bridge" }, RawAgent.Options());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, named.Status);
        var collaboration = await health.CheckAsync(new HealthCheckRequest { Service = "loom.v1.Collaboration" }, RawAgent.Options());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, collaboration.Status);
        var ex = await Assert.ThrowsAsync<RpcException>(() => health.CheckAsync(new HealthCheckRequest { Service = "nope" }, RawAgent.Options()).ResponseAsync);
        Assert.Equal(StatusCode.NotFound, ex.StatusCode);
    }

    [Fact]
    public async Task Healthz_answers_on_the_http1_port()
    {
        using var http = new HttpClient();
        var response = await http.GetAsync(new Uri(_bridge.HttpAddress, "/healthz"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("\"status\":\"ok\"", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Admin_api_lists_agents_with_state_and_capabilities_with_schemas()
    {
        var request = Agent("admin-a", "news.>");
        request.Capabilities.Add(EchoCapability());
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, request);
        await using var idle = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("admin-b"), openStream: false);
        using var http = new HttpClient();

        using var agents = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri(_bridge.HttpAddress, "/v1/agents")));
        var list = agents.RootElement.GetProperty("agents").EnumerateArray().ToDictionary(a => a.GetProperty("agent_id").GetString()!);
        Assert.Equal(["admin-a", "admin-b"], list.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("connected", list["admin-a"].GetProperty("state").GetString());
        Assert.Equal("detached", list["admin-b"].GetProperty("state").GetString());
        Assert.Equal("news.>", list["admin-a"].GetProperty("topics")[0].GetString());
        Assert.Equal("test.echo", list["admin-a"].GetProperty("capabilities")[0].GetString());
        Assert.Equal("", list["admin-a"].GetProperty("session_id").GetString()); // shown to admin credentials only (docs/security.md)

        using var capabilities = System.Text.Json.JsonDocument.Parse(await http.GetStringAsync(new Uri(_bridge.HttpAddress, "/v1/capabilities")));
        var echo = Assert.Single(capabilities.RootElement.GetProperty("capabilities").EnumerateArray());
        Assert.Equal("test.echo", echo.GetProperty("name").GetString());
        Assert.Equal("1.0.0", echo.GetProperty("version").GetString());
        Assert.Equal("text", echo.GetProperty("input_schema").GetProperty("required")[0].GetString());
        var provider = Assert.Single(echo.GetProperty("providers").EnumerateArray());
        Assert.Equal("admin-a", provider.GetProperty("agent_id").GetString());
        Assert.True(provider.GetProperty("healthy").GetBoolean());

        // Leaving removes the agent from the listing.
        await agent.LeaveAsync();
        await Poll.UntilAsync(async ct => !(await http.GetStringAsync(new Uri(_bridge.HttpAddress, "/v1/agents"), ct)).Contains("admin-a", StringComparison.Ordinal), what: "admin-a to leave the listing");
    }

    [Fact]
    public async Task Registration_assigns_session_limits_and_subscription_ids()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("", "a.*", "b.>"), openStream: false);
        Assert.False(string.IsNullOrEmpty(agent.Registration.SessionId));
        Assert.StartsWith("-", agent.AgentId[^9..], StringComparison.Ordinal);
        Assert.Equal(5000u, agent.Registration.HeartbeatIntervalMs);
        Assert.Equal(4u * 1024 * 1024, agent.Registration.Limits.MaxMessageBytes);
        Assert.Equal(2, agent.Registration.Subscriptions.Count);
        Assert.All(agent.Registration.Subscriptions, s => Assert.False(string.IsNullOrEmpty(s.SubscriptionId)));
        Assert.Single(_bridge.Agents.All());
    }

    [Fact]
    public async Task A_bad_pattern_is_rejected_with_invalid_params_naming_it()
    {
        var ex = await Assert.ThrowsAsync<RpcException>(() => RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("bad", "météo.>.x"), openStream: false));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("météo.>.x", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Equal("INVALID_PARAMS", ex.Trailers.GetValue("loom-error-code"));
        Assert.Equal("/subscriptions/0/pattern", ex.Trailers.GetValue("loom-error-path"));
        Assert.Empty(_bridge.Agents.All());
    }

    [Fact]
    public async Task A_bad_capability_schema_rejects_the_whole_registration()
    {
        var request = Agent("cap-bad");
        request.Capabilities.Add(EchoCapability());
        request.Capabilities.Add(new CapabilityDescriptor { Name = "x.y", InputSchemaJson = "{\"type\": 42}" });
        var ex = await Assert.ThrowsAsync<RpcException>(() => RawAgent.RegisterAsync(_bridge.GrpcAddress, request, openStream: false));
        Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        Assert.Contains("capabilities[1]", ex.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain(_bridge.Broker.Capabilities, c => c.Name == "test.echo");
    }

    [Fact]
    public async Task The_stream_needs_a_known_session()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        using var call = new Protocol.V1.Bridge.BridgeClient(channel).EventStream(new Metadata { { "loom-session-id", "nope" } }, deadline: DateTime.UtcNow.AddSeconds(10));
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await call.ResponseHeadersAsync.WaitAsync(TimeSpan.FromSeconds(10));
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
        Assert.Equal("SESSION_NOT_FOUND", ex.Trailers.GetValue("loom-error-code"));
    }

    [Fact]
    public async Task Publish_reaches_wildcard_subscribers_in_order_and_is_batched()
    {
        await using var subscriber = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("sub", "orders.*.created"));
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("pub"));
        const int count = 2000;
        var batch = new List<ClientMessage>();
        for (var i = 0; i < count; i++)
        {
            batch.Add(new ClientMessage { Publish = new Envelope { Topic = $"orders.eu{i % 3}.created", Payload = ByteString.CopyFromUtf8(i.ToString(System.Globalization.CultureInfo.InvariantCulture)) } });
        }

        await publisher.PublishAsync("orders.eu.updated", "not for the subscriber");
        await publisher.SendAsync([.. batch]);
        for (var i = 0; i < count; i++)
        {
            var m = await subscriber.WaitForAsync(x => x.KindCase == ServerMessage.KindOneofCase.Deliver);
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), m.Deliver.Envelope.Payload.ToStringUtf8());
            Assert.Equal("pub", m.Deliver.Envelope.Sender);
            Assert.Equal(1u, m.Deliver.Envelope.HopCount);
            Assert.NotEqual(0, m.Deliver.Envelope.TimestampUnixMs);
        }
    }

    [Fact]
    public async Task Delivered_envelopes_carry_what_the_bridge_set_over_what_the_publisher_sent()
    {
        await using var subscriber = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("sub2", "forward.>"));
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("pub2"));
        var sentAt = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        // A spoofed sender is replaced, the hop count incremented, the publisher's id and timestamp kept.
        await publisher.PublishAsync("forward.spoofed", "payload", e =>
        {
            e.Id = "e-7";
            e.Sender = "someone-else";
            e.HopCount = 2;
            e.TimestampUnixMs = sentAt;
            e.Headers["h"] = "v";
        });
        await publisher.PublishAsync("forward.plain", "second");
        var first = (await subscriber.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver)).Deliver.Envelope;
        Assert.Equal("e-7", first.Id);
        Assert.Equal("pub2", first.Sender);
        Assert.Equal(3u, first.HopCount);
        Assert.Equal(sentAt, first.TimestampUnixMs);
        Assert.True(first.DeadlineUnixMs > first.TimestampUnixMs);
        Assert.Equal("v", first.Headers["h"]);
        Assert.Equal("payload", first.Payload.ToStringUtf8());
        var second = (await subscriber.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver)).Deliver.Envelope;
        Assert.Equal(32, second.Id.Length); // assigned by the bridge
        Assert.Equal("pub2", second.Sender);
        Assert.Equal(1u, second.HopCount);
        Assert.NotEqual(0, second.TimestampUnixMs);
    }

    [Fact]
    public async Task Publish_errors_come_back_with_the_envelope_id()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("p"));
        await agent.PublishAsync("bad..topic", "x", e => e.Id = "e-1");
        var error = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error);
        Assert.Equal("e-1", error.Error.CorrelationId);
        Assert.Equal(ErrorCode.InvalidParams, error.Error.Error.Code);
        await agent.PublishAsync("loop.topic", "x", e => { e.Id = "e-2"; e.HopCount = 100; });
        error = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error);
        Assert.Equal("e-2", error.Error.CorrelationId);
        Assert.Equal(ErrorCode.HopLimitExceeded, error.Error.Error.Code);
    }

    [Fact]
    public async Task Subscribe_and_unsubscribe_on_the_stream_are_acknowledged()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("s"));
        await agent.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "c1", Subscription = new Protocol.V1.Subscription { Pattern = "x.>" } } });
        var ack = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Ack);
        Assert.Equal("c1", ack.Ack.CorrelationId);
        await agent.PublishAsync("x.y.z", "hello");
        var delivered = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver);
        Assert.Equal(ack.Ack.SubscriptionId, delivered.Deliver.SubscriptionId);
        await agent.SendAsync(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = "c2", SubscriptionId = ack.Ack.SubscriptionId } });
        Assert.Equal("c2", (await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Ack)).Ack.CorrelationId);
        await agent.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "c3", Subscription = new Protocol.V1.Subscription { Pattern = "x.>.y" } } });
        var error = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error);
        Assert.Equal("c3", error.Error.CorrelationId);
        Assert.Equal(ErrorCode.InvalidParams, error.Error.Error.Code);
    }

    [Fact]
    public async Task A_capability_is_called_through_the_bridge_and_bad_input_is_rejected_before_the_provider()
    {
        var providerRequest = Agent("provider");
        providerRequest.Capabilities.Add(EchoCapability());
        await using var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, providerRequest);
        var answering = Task.Run(async () =>
        {
            var call = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
            Assert.Equal("test.echo", call.Call.Capability);
            Assert.Equal("anonymous", call.Call.Caller);
            Assert.True(call.Call.DeadlineUnixMs > DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
            await provider.SendAsync(new ClientMessage { Result = new ActionResult { CallId = call.Call.CallId, OutputJson = call.Call.InputJson } });
        });
        var response = await ForwardAsync("test.echo", """{"text":"hi"}""");
        await answering;
        Assert.Equal("""{"text":"hi"}""", response.OutputJson.ToStringUtf8());
        Assert.Equal("provider", response.Provider);

        var bad = await Assert.ThrowsAsync<RpcException>(() => ForwardAsync("test.echo", """{"text":5}"""));
        Assert.Equal(StatusCode.InvalidArgument, bad.StatusCode);
        Assert.Equal("INVALID_PARAMS", bad.Trailers.GetValue("loom-error-code"));
        Assert.Equal("/text", bad.Trailers.GetValue("loom-error-path"));

        var missing = await Assert.ThrowsAsync<RpcException>(() => ForwardAsync("no.such", "{}"));
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        Assert.Equal("CAPABILITY_NOT_FOUND", missing.Trailers.GetValue("loom-error-code"));
    }

    [Fact]
    public async Task An_agent_calls_a_capability_over_its_stream_and_a_tool_error_comes_back_as_a_value()
    {
        var providerRequest = Agent("provider2");
        providerRequest.Capabilities.Add(EchoCapability("test.fail"));
        await using var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, providerRequest);
        await using var caller = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("caller"));
        await caller.SendAsync(new ClientMessage { Call = new ActionCall { CallId = "k1", Capability = "test.fail", InputJson = ByteString.CopyFromUtf8("""{"text":"x"}""") } });
        var pushed = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
        Assert.Equal("caller", pushed.Call.Caller);
        await provider.SendAsync(new ClientMessage { Result = new ActionResult { CallId = pushed.Call.CallId, Error = new Error { Code = ErrorCode.ToolError, Message = "disk full" } } });
        var result = await caller.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Result);
        Assert.Equal("k1", result.Result.CallId);
        Assert.Equal(ErrorCode.ToolError, result.Result.Error.Code);
        Assert.Equal("disk full", result.Result.Error.Message);
    }

    [Fact]
    public async Task A_caller_cancel_reaches_the_provider()
    {
        var providerRequest = Agent("slow");
        providerRequest.Capabilities.Add(EchoCapability("test.slow"));
        await using var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, providerRequest);
        await using var caller = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("impatient"));
        await caller.SendAsync(new ClientMessage { Call = new ActionCall { CallId = "k9", Capability = "test.slow", InputJson = ByteString.CopyFromUtf8("""{"text":"x"}""") } });
        var pushed = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
        await caller.SendAsync(new ClientMessage { Cancel = new CancelCall { CallId = "k9" } });
        var cancel = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Cancel);
        Assert.Equal(pushed.Call.CallId, cancel.Cancel.CallId);
    }

    [Fact]
    public async Task A_provider_whose_stream_dies_fails_pending_callers_with_provider_unavailable()
    {
        var providerRequest = Agent("doomed");
        providerRequest.Capabilities.Add(EchoCapability("test.doomed"));
        var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, providerRequest);
        var pending = ForwardAsync("test.doomed", """{"text":"x"}""");
        await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
        provider.Abort();
        var ex = await Assert.ThrowsAsync<RpcException>(() => pending);
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
        Assert.Equal("PROVIDER_UNAVAILABLE", ex.Trailers.GetValue("loom-error-code"));
        await provider.DisposeAsync();
    }

    [Fact]
    public async Task Calls_fail_over_from_a_provider_whose_stream_is_down_and_carry_the_version()
    {
        var requestA = Agent("route-a");
        requestA.Capabilities.Add(EchoCapability("test.route"));
        var a = await RawAgent.RegisterAsync(_bridge.GrpcAddress, requestA);
        var requestB = Agent("route-b");
        requestB.Capabilities.Add(EchoCapability("test.route"));
        await using var b = await RawAgent.RegisterAsync(_bridge.GrpcAddress, requestB);

        // A's stream breaks but its session lives on (it may reconnect): calls must go to B, not wait for A.
        a.Abort();
        await a.DisposeAsync();
        await Poll.UntilAsync(() => _bridge.Broker.FindProviders("test.route").Any(p => p.Provider.AgentId == "route-a" && !p.IsHealthy), what: "route-a marked unhealthy");
        for (var i = 0; i < 3; i++)
        {
            var pending = ForwardAsync("test.route", """{"text":"x"}""", TimeSpan.FromSeconds(5));
            var call = await b.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
            Assert.Equal("1.0.0", call.Call.Version);
            await b.SendAsync(new ClientMessage { Result = new ActionResult { CallId = call.Call.CallId, OutputJson = ByteString.CopyFromUtf8("\"b\"") } });
            Assert.Equal("route-b", (await pending).Provider);
        }

        Assert.NotNull(_bridge.Agents.Find("route-a"));
    }

    [Fact]
    public async Task A_silent_agent_is_removed_after_three_missed_heartbeats()
    {
        var request = Agent("silent", "s.>");
        request.HeartbeatIntervalMs = 200;
        request.Capabilities.Add(EchoCapability("test.silent"));
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, request);
        Assert.Equal(200u, agent.Registration.HeartbeatIntervalMs);
        var pending = ForwardAsync("test.silent", """{"text":"x"}""");
        await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
        var started = DateTime.UtcNow;

        // The stream stays open but the agent sends nothing: a hung process.
        var ex = await Assert.ThrowsAsync<RpcException>(() => pending);
        var detectedAfter = DateTime.UtcNow - started;
        Assert.Equal("PROVIDER_UNAVAILABLE", ex.Trailers.GetValue("loom-error-code"));
        Assert.True(detectedAfter < TimeSpan.FromSeconds(2), $"detected after {detectedAfter}");
        await Poll.UntilAsync(() => _bridge.Agents.Find("silent") is null, what: "agent removed from the directory");
        Assert.DoesNotContain(_bridge.Broker.Capabilities, c => c.Name == "test.silent" && c.Providers.Count > 0);
        Assert.DoesNotContain(_bridge.Bus.Subscriptions, s => s.Owner == "silent");
    }

    [Fact]
    public async Task Heartbeats_keep_an_agent_alive_and_the_bridge_pings_back()
    {
        var request = Agent("alive");
        // 1 s, not less: a loaded CI machine can stall a test thread for most of a second, and a
        // shorter interval turned such a stall into a (correct) expiry.
        request.HeartbeatIntervalMs = 1000;
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, request);
        using var stop = new CancellationTokenSource();
        var beating = Task.Run(async () =>
        {
            for (ulong i = 0; !stop.IsCancellationRequested; i++)
            {
                await agent.SendAsync(new ClientMessage { Heartbeat = new HeartbeatPing { Sequence = i } });
                await Task.Delay(100, CancellationToken.None);
            }
        });

        // Four bridge pings span more than three intervals: the agent must still be there.
        var sequences = new List<ulong>();
        for (var i = 0; i < 4; i++)
        {
            sequences.Add((await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Heartbeat)).Heartbeat.Sequence);
        }

        await stop.CancelAsync();
        await beating.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(sequences.Order(), sequences);
        Assert.NotNull(_bridge.Agents.Find("alive"));
    }

    [Fact]
    public async Task A_reconnecting_agent_gets_its_subscriptions_and_queued_events_back()
    {
        var first = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("phoenix", "news.>"));
        var subscriptionId = first.Registration.Subscriptions[0].SubscriptionId;
        first.Abort();
        await first.DisposeAsync();
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("press"));
        await publisher.PublishAsync("news.today", "while you were away");

        // Re-registering with no subscriptions still gets the old one back, same id.
        var second = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("phoenix"));
        await using var _ = second;
        Assert.True(second.Registration.Reconnected);
        Assert.Equal(subscriptionId, Assert.Single(second.Registration.Subscriptions).SubscriptionId);
        var delivered = await second.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver);
        Assert.Equal("while you were away", delivered.Deliver.Envelope.Payload.ToStringUtf8());
    }

    [Fact]
    public async Task A_clean_half_close_means_the_agent_left()
    {
        var request = Agent("leaver", "l.>");
        request.Capabilities.Add(EchoCapability("test.leaver"));
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, request);
        await agent.LeaveAsync();
        await Poll.UntilAsync(() => _bridge.Agents.Find("leaver") is null, what: "agent left");
        var ex = await Assert.ThrowsAsync<RpcException>(() => ForwardAsync("test.leaver", """{"text":"x"}"""));
        Assert.Contains(ex.Trailers.GetValue("loom-error-code"), new[] { "CAPABILITY_NOT_FOUND", "PROVIDER_UNAVAILABLE" });
    }

    [Fact]
    public async Task A_slow_reader_is_handled_by_its_subscription_policy_not_by_memory()
    {
        var request = new RegisterAgentRequest { AgentId = "sloth", Name = "sloth" };
        request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "tick", Qos = QosClass.Realtime, QueueCapacity = 16 });

        // Registered but never opens its stream: nothing drains its queue.
        await using var sloth = await RawAgent.RegisterAsync(_bridge.GrpcAddress, request, openStream: false);
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("ticker"));
        var messages = Enumerable.Range(0, 100).Select(i => new ClientMessage { Publish = new Envelope { Topic = "tick", Payload = ByteString.CopyFromUtf8(i.ToString(System.Globalization.CultureInfo.InvariantCulture)) } }).ToArray();
        await publisher.SendAsync(messages);
        var subscription = Assert.Single(_bridge.Bus.Subscriptions, s => s.Owner == "sloth");
        await Poll.UntilAsync(() => subscription.Stats.Enqueued + subscription.Stats.DroppedTotal >= 100, what: "all 100 publishes applied");
        Assert.Equal(16, subscription.Count);
        Assert.Equal(84, subscription.Stats.DroppedTotal);

        // Drop oldest: the reader gets the newest 16.
        await sloth.OpenStreamAsync();
        var first = await sloth.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver);
        Assert.Equal("84", first.Deliver.Envelope.Payload.ToStringUtf8());
    }

    [Fact]
    public async Task Memory_is_reachable_over_the_stream()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("mem"));
        await agent.SendAsync(new ClientMessage { Memory = new MemoryRequest { CorrelationId = "m1", Set = new MemorySet { Key = "plan", Value = ByteString.CopyFromUtf8("v1"), TtlMs = 60_000 } } });
        var set = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory);
        Assert.Equal("m1", set.Memory.CorrelationId);
        await agent.SendAsync(new ClientMessage { Memory = new MemoryRequest { CorrelationId = "m2", Get = new MemoryGet { Key = "plan" } } });
        var get = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory);
        Assert.True(get.Memory.Found);
        Assert.Equal("v1", get.Memory.Entries[0].Value.ToStringUtf8());
        var cas = new MemoryRequest { CorrelationId = "m3", CompareAndSet = new MemoryCompareAndSet { Key = "plan", ExpectedVersion = get.Memory.Entries[0].Version + 7, Value = ByteString.CopyFromUtf8("v2") } };
        await agent.SendAsync(new ClientMessage { Memory = cas });
        var swapped = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory);
        Assert.False(swapped.Memory.Found);
        Assert.NotNull(_bridge.Memory.Get("default", "plan"));
    }

    [Fact]
    public async Task Shutdown_drains_in_flight_calls_within_its_bound()
    {
        var providerRequest = Agent("finisher");
        providerRequest.Capabilities.Add(EchoCapability("test.finish"));
        await using var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, providerRequest);
        var pending = ForwardAsync("test.finish", """{"text":"last"}""");
        var call = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
        var stopping = _bridge.StopAsync();

        // The provider still answers during the drain and the caller gets its result.
        await provider.SendAsync(new ClientMessage { Result = new ActionResult { CallId = call.Call.CallId, OutputJson = ByteString.CopyFromUtf8("\"done\"") } });
        Assert.Equal("\"done\"", (await pending).OutputJson.ToStringUtf8());
        await stopping.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Oversized_payloads_are_refused_and_the_session_survives()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("big", "big.>"));
        await agent.PublishAsync("big.one", new string('x', 1024 * 1024 + 1), e => e.Id = "huge");
        var error = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error);
        Assert.Equal(ErrorCode.ResourceExhausted, error.Error.Error.Code);
        Assert.Equal("huge", error.Error.CorrelationId);
        await agent.PublishAsync("big.two", "small");
        var delivered = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver);
        Assert.Equal("small", delivered.Deliver.Envelope.Payload.ToStringUtf8());
        Assert.Equal(Encoding.UTF8.GetBytes("small"), delivered.Deliver.Envelope.Payload.ToByteArray());
    }
}
