using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Tests;

/// <summary>.NET agents against a real bridge over real sockets.</summary>
public sealed class RemoteAgentTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task Connection_registers_and_leaves_cleanly()
    {
        await using var bridge = await TestBridge.StartAsync();
        var connection = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = "plain" });
        Assert.Equal(ConnectionStatus.Connected, connection.Status);
        Assert.StartsWith("plain-", connection.AgentId, StringComparison.Ordinal);
        Assert.NotEmpty(connection.SessionId);
        Assert.True(connection.Limits.MaxBatchMessages > 0);
        var info = bridge.Agents.Find(connection.AgentId);
        Assert.NotNull(info);
        Assert.Equal("loom-dotnet/0.1.0", info.Sdk);
        Assert.Contains(info.Topics, t => t.StartsWith("_inbox.", StringComparison.Ordinal));

        // A clean half-close is the agent leaving: gone long before 3 heartbeat intervals (3 s).
        var stopwatch = Stopwatch.StartNew();
        await connection.DisposeAsync();
        Assert.Equal(ConnectionStatus.Closed, connection.Status);
        await Poll.UntilAsync(() => bridge.Agents.Find(connection.AgentId) is null, TimeSpan.FromSeconds(2), "agent removed after leaving");
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(2), $"leaving took {stopwatch.Elapsed}");
    }

    [Fact]
    public async Task Unreachable_bridge_fails_with_unavailable()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var ex = await Assert.ThrowsAnyAsync<LoomException>(() => LoomConnection.ConnectAsync(new Uri($"http://127.0.0.1:{port}"), new LoomConnectionOptions { ConnectTimeout = TimeSpan.FromSeconds(2) }));
        Assert.Equal(ErrorCode.Unavailable, ex.Code);
        Assert.True(ex.Retryable);
    }

    [Fact]
    public async Task Capability_is_called_by_another_agent_with_typed_input_and_output()
    {
        await using var bridge = await TestBridge.StartAsync();
        var math = new MathAgent();
        await using var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var sum = await caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(2, 40), Short);
        Assert.Equal(42, sum!.Sum);

        var who = await caller.Context.InvokeAsync<string>("math.whoami", null, Short);
        Assert.Equal($"{provider.AgentId} for {caller.AgentId}", who);

        // The schemas generated from the signature are what the bridge's broker holds.
        var info = Assert.Single(bridge.Broker.Capabilities, c => c.Name == "math.add");
        Assert.Equal("1.2.0", info.Version);
        Assert.Equal("Adds two integers.", info.Descriptor.Description);
        using var input = JsonDocument.Parse(info.Descriptor.InputSchemaJson);
        Assert.Equal("Two integers to add.", input.RootElement.GetProperty("description").GetString());
        var properties = input.RootElement.GetProperty("properties");
        Assert.True(properties.TryGetProperty("a", out var a));
        Assert.Equal("The first addend.", a.GetProperty("description").GetString());
        Assert.True(properties.TryGetProperty("b", out _));
        using var output = JsonDocument.Parse(info.Descriptor.OutputSchemaJson);
        Assert.True(output.RootElement.GetProperty("properties").TryGetProperty("sum", out _));
        Assert.Equal(provider.AgentId, Assert.Single(info.Providers).Provider.AgentId);
    }

    [Fact]
    public async Task Bad_input_is_invalid_params_with_the_failing_path()
    {
        await using var bridge = await TestBridge.StartAsync();
        var math = new MathAgent();
        await using var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var ex = await Assert.ThrowsAsync<InvalidParamsException>(() =>
            caller.Context.InvokeRawAsync("math.add", Encoding.UTF8.GetBytes("""{"a":"x","b":2}"""), Short));
        Assert.Equal("/a", ex.Path);

        // The broker rejected it: the provider never saw the call.
        Assert.Equal(0, math.Calls);

        // A capability may raise INVALID_PARAMS itself; the code and path travel back.
        var own = await Assert.ThrowsAsync<InvalidParamsException>(() => caller.Context.InvokeAsync<AddOutput>("math.strict", new AddInput(1, 0), Short));
        Assert.Equal("/b", own.Path);

        await Assert.ThrowsAsync<CapabilityNotFoundException>(() => caller.Context.InvokeAsync<AddOutput>("math.nothing", new AddInput(1, 0), Short));
    }

    [Fact]
    public async Task Throwing_capability_is_tool_error_and_the_agent_keeps_answering()
    {
        await using var bridge = await TestBridge.StartAsync();
        await using var provider = await LoomAgentHost.StartAsync(new MathAgent(), bridge.GrpcAddress, TestBridge.Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var ex = await Assert.ThrowsAsync<ToolErrorException>(() => caller.Context.InvokeAsync<AddOutput>("math.fail", new AddInput(7, 0), Short));
        Assert.Contains("boom: cannot do 7", ex.Message, StringComparison.Ordinal);

        var sum = await caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(1, 1), Short);
        Assert.Equal(2, sum!.Sum);
    }

    [Fact]
    public async Task Call_timeout_cancels_the_provider_work()
    {
        await using var bridge = await TestBridge.StartAsync();
        var math = new MathAgent();
        await using var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var stopwatch = Stopwatch.StartNew();
        await Assert.ThrowsAsync<LoomTimeoutException>(() => caller.Context.InvokeAsync<AddOutput>("math.slow", new AddInput(1, 1), TimeSpan.FromMilliseconds(300)));
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(3), $"timeout took {stopwatch.Elapsed}");
        Assert.True(math.SlowStarted.Task.IsCompleted);
    }

    [Fact]
    public async Task Events_reach_subscribers_by_wildcard()
    {
        await using var bridge = await TestBridge.StartAsync();
        var collector = new CollectorAgent("sensors.*.temp", "alerts.>");
        await using var subscriber = await LoomAgentHost.StartAsync(collector, bridge.GrpcAddress, TestBridge.Options());
        await using var publisher = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var dynamic = new System.Collections.Concurrent.ConcurrentQueue<Envelope>();
        var subscription = await subscriber.Context.SubscribeAsync("sensors.kitchen.*", (e, _) =>
        {
            dynamic.Enqueue(e);
            return Task.CompletedTask;
        });
        Assert.NotNull(subscription.Id);

        await publisher.Context.EmitAsync("sensors.kitchen.temp", new { celsius = 21.5 }, new EmitOptions { ThreadId = "t-1", Headers = new Dictionary<string, string> { ["unit"] = "C" } });
        await publisher.Context.EmitAsync("sensors.kitchen.humidity", new { percent = 40 });
        await publisher.Context.EmitAsync("sensors.kitchen.temp.raw", new { celsius = 0 });
        await publisher.Context.EmitAsync("alerts.fire.floor1", "fire"u8.ToArray());
        await publisher.Context.EmitAsync("alertsx", "no"u8.ToArray());

        await Poll.UntilAsync(() => collector.Events.Count >= 2 && dynamic.Count >= 2, Short, "deliveries");
        var topics = collector.Events.Select(e => e.Topic).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(["alerts.fire.floor1", "sensors.kitchen.temp"], topics);
        Assert.Equal(["sensors.kitchen.temp", "sensors.kitchen.humidity"], dynamic.Select(e => e.Topic).ToArray());

        var temp = collector.Events.Single(e => e.Topic == "sensors.kitchen.temp");
        Assert.Equal(publisher.AgentId, temp.Sender);
        Assert.Equal("t-1", temp.ThreadId);
        Assert.Equal("C", temp.Headers["unit"]);
        Assert.Equal("application/json", temp.ContentType);
        Assert.Equal(21.5, JsonDocument.Parse(temp.Payload.Memory).RootElement.GetProperty("celsius").GetDouble());
        Assert.Equal("fire", collector.Events.Single(e => e.Topic.StartsWith("alerts", StringComparison.Ordinal)).PayloadText());

        // After unsubscribing, nothing more arrives there; the agent's own topics go on.
        await subscription.DisposeAsync();
        await publisher.Context.EmitAsync("sensors.kitchen.temp", new { celsius = 22 });
        await Poll.UntilAsync(() => collector.Events.Count >= 3, Short, "third delivery");
        Assert.Equal(2, dynamic.Count);

        await Assert.ThrowsAsync<InvalidParamsException>(() => publisher.Context.EmitAsync("bad..topic", 1).AsTask());
        await Assert.ThrowsAsync<InvalidParamsException>(() => publisher.Context.SubscribeAsync("a.>.b", (_, _) => Task.CompletedTask));
    }

    [Fact]
    public async Task Pending_messages_are_coalesced_into_batched_frames()
    {
        await using var bridge = await TestBridge.StartAsync();
        var collector = new CollectorAgent("batch.>");
        await using var subscriber = await LoomAgentHost.StartAsync(collector, bridge.GrpcAddress, TestBridge.Options());
        await using var publisher = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        const int count = 20_000;
        var payload = new byte[100];
        var before = publisher.Connection!.Statistics;
        for (var i = 0; i < count; i++)
        {
            await publisher.Context.EmitAsync("batch.items", payload, new EmitOptions { Qos = QosClass.Batch });
        }

        await Poll.UntilAsync(() => collector.Events.Count >= count, TimeSpan.FromSeconds(20), "all events delivered");
        var after = publisher.Connection.Statistics;
        var messages = after.MessagesSent - before.MessagesSent;
        var frames = after.FramesSent - before.FramesSent;
        Assert.True(messages >= count, $"{messages} messages sent");
        Assert.True(frames < messages / 4, $"{messages} messages went in {frames} frames: not coalesced");
        Assert.Equal(0, subscriber.Connection!.Statistics.DeliveriesDropped);
        Assert.Equal(count, collector.Events.Count);
    }

    [Fact]
    public async Task Request_gets_a_reply_or_times_out()
    {
        await using var bridge = await TestBridge.StartAsync();
        await using var responder = await LoomAgentHost.StartAsync(new EchoAgent(), bridge.GrpcAddress, TestBridge.Options());
        await using var requester = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var reply = await requester.Context.RequestAsync<EchoReply>("svc.echo", "hello", Short, new EmitOptions { ThreadId = "conv-9" });
        Assert.Equal("\"hello\"", reply!.Text);
        Assert.Equal(requester.AgentId, reply.From);

        var raw = await requester.Context.RequestAsync("svc.echo", "raw"u8.ToArray(), Short, new EmitOptions { ThreadId = "conv-9" });
        Assert.Equal("conv-9", raw.ThreadId);
        Assert.Equal(responder.AgentId, raw.Sender);
        Assert.StartsWith("_inbox.", raw.Topic, StringComparison.Ordinal);

        // Nobody answers: a typed timeout.
        var stopwatch = Stopwatch.StartNew();
        await Assert.ThrowsAsync<LoomTimeoutException>(() => requester.Context.RequestAsync("svc.nobody", "x"u8.ToArray(), TimeSpan.FromMilliseconds(200)));
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(2));

        // The answer comes after the timeout: dropped and counted.
        await Assert.ThrowsAsync<LoomTimeoutException>(() => requester.Context.RequestAsync("svc.slow", "late"u8.ToArray(), TimeSpan.FromMilliseconds(100)));
        await Poll.UntilAsync(() => requester.Connection!.Statistics.LateReplies == 1, Short, "late reply counted");

        await Assert.ThrowsAsync<InvalidParamsException>(() => requester.Context.ReplyAsync(raw, "no reply_to"u8.ToArray()).AsTask());
    }

    [Fact]
    public async Task Memory_supports_ttl_list_delete_and_compare_and_set()
    {
        await using var bridge = await TestBridge.StartAsync();
        await using var agent = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());
        await using var other = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());
        var memory = agent.Context.Memory;
        Assert.Equal("default", memory.Namespace);

        var first = await memory.SetAsync("plan.step", new AddInput(1, 2));
        Assert.True(first.Version > 0);
        Assert.Equal(new AddInput(1, 2), await memory.GetAsync<AddInput>("plan.step"));

        // Shared with other agents of the namespace.
        var seen = await other.Context.Memory.GetAsync("plan.step");
        Assert.NotNull(seen);
        Assert.Equal(first.Version, seen.Version);

        // Compare-and-set.
        var lost = await memory.CompareAndSetAsync("plan.step", first.Version + 100, new AddInput(9, 9));
        Assert.False(lost.Swapped);
        Assert.Equal(first.Version, lost.Current!.Version);
        var won = await memory.CompareAndSetAsync("plan.step", first.Version, new AddInput(3, 4));
        Assert.True(won.Swapped);
        Assert.True(won.Current!.Version > first.Version);
        Assert.Equal(new AddInput(3, 4), won.Current.ValueAs<AddInput>());
        var created = await memory.CompareAndSetAsync("plan.lock", 0, "owner-1"u8.ToArray());
        Assert.True(created.Swapped);
        Assert.False((await memory.CompareAndSetAsync("plan.lock", 0, "owner-2"u8.ToArray())).Swapped);

        // TTL.
        var expiring = await memory.SetAsync("plan.temp", "soon gone"u8.ToArray(), TimeSpan.FromMilliseconds(300));
        Assert.NotNull(expiring.ExpiresAt);
        Assert.Equal("soon gone", (await memory.GetAsync("plan.temp"))!.ValueText());
        await Poll.UntilSucceedsAsync(async () => (await memory.GetAsync("plan.temp")) is null ? true : throw new InvalidOperationException("still there"), Short);

        // List and delete; namespaces are separate.
        var keys = (await memory.ListAsync("plan.")).Select(i => i.Key).ToArray();
        Assert.Equal(["plan.lock", "plan.step"], keys);
        Assert.True(await memory.DeleteAsync("plan.lock"));
        Assert.False(await memory.DeleteAsync("plan.lock"));
        Assert.Empty(await memory.WithNamespace("elsewhere").ListAsync("plan."));

        await Assert.ThrowsAsync<InvalidParamsException>(() => memory.SetAsync("", "x"u8.ToArray()));
    }

    [Fact]
    public async Task Agent_reregisters_resubscribes_and_serves_again_after_the_bridge_restarts()
    {
        var bridge = await TestBridge.StartAsync();
        var port = bridge.GrpcAddress.Port;
        var math = new MathAgent();
        await using var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options("math-1"));
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options("caller-1"));
        var dynamicEvents = new System.Collections.Concurrent.ConcurrentQueue<Envelope>();
        await using var dynamic = await provider.Context.SubscribeAsync("late.topic", (e, _) =>
        {
            dynamicEvents.Enqueue(e);
            return Task.CompletedTask;
        });
        Assert.Equal(3, (await caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(1, 2), Short))!.Sum);

        var changes = provider.Connection!.StatusChanges;
        await bridge.DisposeAsync();
        await Poll.UntilAsync(() => provider.Connection.Status == ConnectionStatus.Reconnecting, Short, "provider notices the bridge is gone");

        // Pending work on the broken connection fails fast and retryable, never hangs.
        var down = await Assert.ThrowsAnyAsync<LoomException>(() => caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(1, 2), Short));
        Assert.True(down.Retryable, $"{down.Code} is not retryable");

        await using var second = await TestBridge.StartAsync(grpcPort: port);
        await Poll.UntilAsync(
            () => provider.Connection.Status == ConnectionStatus.Connected && second.Agents.Find("math-1") is not null && second.Agents.Find("caller-1") is not null,
            TimeSpan.FromSeconds(10),
            "both agents registered with the new bridge");
        Assert.Contains(second.Broker.Capabilities, c => c.Name == "math.add");
        var topics = second.Agents.Find("math-1")!.Topics;
        Assert.Contains("math.events.>", topics);
        Assert.Contains("late.topic", topics);

        var sum = await Poll.UntilSucceedsAsync(() => caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(20, 22), Short), Short);
        Assert.Equal(42, sum!.Sum);

        await caller.Context.EmitAsync("math.events.restarted", new { ok = true });
        await caller.Context.EmitAsync("late.topic", new { ok = true });
        await Poll.UntilAsync(() => math.Events.Any(e => e.Topic == "math.events.restarted") && !dynamicEvents.IsEmpty, Short, "events after the restart");

        var seen = new List<ConnectionStatus>();
        while (changes.TryRead(out var change))
        {
            seen.Add(change.Status);
        }

        Assert.Equal([ConnectionStatus.Connected, ConnectionStatus.Reconnecting, ConnectionStatus.Connected], seen);
        Assert.True(provider.Connection.Statistics.Reconnects >= 1);
    }

    [Fact]
    public async Task A_broken_stream_fails_pending_calls_fast_and_reconnects()
    {
        await using var bridge = await TestBridge.StartAsync();
        var math = new MathAgent();
        await using var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var pending = caller.Context.InvokeAsync<AddOutput>("math.slow", new AddInput(1, 1), TimeSpan.FromSeconds(30));
        await math.SlowStarted.Task.WaitAsync(Short);
        var stopwatch = Stopwatch.StartNew();
        caller.Connection!.BreakStreamForTest();
        var ex = await Assert.ThrowsAnyAsync<LoomException>(() => pending);
        Assert.Equal(ErrorCode.Unavailable, ex.Code);
        Assert.True(ex.Retryable);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(2), $"failing took {stopwatch.Elapsed}");

        var sum = await Poll.UntilSucceedsAsync(() => caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(5, 5), Short), Short);
        Assert.Equal(10, sum!.Sum);
        Assert.Equal(1, caller.Connection.Statistics.Reconnects);
    }

    [Fact]
    public async Task A_killed_provider_is_detected_and_its_pending_caller_gets_provider_unavailable()
    {
        var interval = TimeSpan.FromMilliseconds(200);
        await using var bridge = await TestBridge.StartAsync(interval);
        var math = new MathAgent();
        var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options("doomed"));
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var pending = caller.Context.InvokeAsync<AddOutput>("math.slow", new AddInput(1, 1), TimeSpan.FromSeconds(30));
        await math.SlowStarted.Task.WaitAsync(Short);
        var stopwatch = Stopwatch.StartNew();
        provider.Connection!.KillForTest();

        await Assert.ThrowsAsync<ProviderUnavailableException>(() => pending);
        Assert.True(stopwatch.Elapsed < interval * 3 + TimeSpan.FromMilliseconds(500), $"caller waited {stopwatch.Elapsed}");

        // No goodbye came: the bridge drops the agent once its heartbeats lapse (3 intervals, swept every 100 ms).
        await Poll.UntilAsync(() => bridge.Agents.Find("doomed") is null, TimeSpan.FromSeconds(3), "dead agent removed");
        Assert.True(stopwatch.Elapsed < interval * 3 + TimeSpan.FromMilliseconds(800), $"removal took {stopwatch.Elapsed}");
        await Assert.ThrowsAsync<CapabilityNotFoundException>(() => caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(1, 1), Short));
        await provider.DisposeAsync();
    }

    [Fact]
    public async Task A_hung_provider_misses_heartbeats_and_its_pending_caller_gets_provider_unavailable()
    {
        var interval = TimeSpan.FromMilliseconds(200);
        await using var bridge = await TestBridge.StartAsync(interval);
        var math = new MathAgent();
        var provider = await LoomAgentHost.StartAsync(math, bridge.GrpcAddress, TestBridge.Options("hung"));
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var pending = caller.Context.InvokeAsync<AddOutput>("math.slow", new AddInput(1, 1), TimeSpan.FromSeconds(30));
        await math.SlowStarted.Task.WaitAsync(Short);
        var stopwatch = Stopwatch.StartNew();
        provider.Connection!.FreezeForTest();

        // The connection stays open but silent: only the missed heartbeats tell.
        await Assert.ThrowsAsync<ProviderUnavailableException>(() => pending);
        var elapsed = stopwatch.Elapsed;
        Assert.True(elapsed >= interval * 2, $"detected after {elapsed}: too early for heartbeat expiry");
        Assert.True(elapsed < interval * 3 + TimeSpan.FromMilliseconds(500), $"detected after {elapsed}");
        Assert.Null(bridge.Agents.Find("hung"));
        await provider.DisposeAsync();
    }
}
