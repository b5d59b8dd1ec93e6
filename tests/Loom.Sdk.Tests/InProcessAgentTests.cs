using System.Text;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Tests;

/// <summary>The same Agent classes, hosted in-process against the core with no network.</summary>
public sealed class InProcessAgentTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(5);

    [Fact]
    public async Task The_same_agent_answers_a_call_and_an_event_in_process()
    {
        using var bus = new EventBus();
        var broker = new ActionBroker();
        var memory = new MemoryStore();
        var directory = new AgentDirectory();
        var math = new MathAgent();
        await using var provider = LoomAgentHost.StartInProcess(math, bus, broker, memory, new AgentHostOptions { AgentId = "math-local" }, directory);
        await using var caller = LoomAgentHost.StartInProcess(new ClientAgent(), bus, broker, memory);
        Assert.True(provider.IsInProcess);
        Assert.NotNull(directory.Find("math-local"));

        var sum = await caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(20, 22), Short);
        Assert.Equal(42, sum!.Sum);
        Assert.Equal($"math-local for {caller.AgentId}", await caller.Context.InvokeAsync<string>("math.whoami", null, Short));

        var provided = Assert.Single(broker.Capabilities, c => c.Name == "math.add");
        Assert.True(Assert.Single(provided.Providers).Provider.IsLocal);

        await caller.Context.EmitAsync("math.events.local", new { n = 1 });
        await Poll.UntilAsync(() => !math.Events.IsEmpty, Short, "event handled");
        var e = Assert.Single(math.Events);
        Assert.Equal(caller.AgentId, e.Sender);

        // Errors are the same as over the bridge.
        var bad = await Assert.ThrowsAsync<InvalidParamsException>(() => caller.Context.InvokeRawAsync("math.add", Encoding.UTF8.GetBytes("""{"a":"x","b":1}"""), Short));
        Assert.True(bad.Path == "/a", $"path {bad.Path}: {bad.Message}");
        var tool = await Assert.ThrowsAsync<ToolErrorException>(() => caller.Context.InvokeAsync<AddOutput>("math.fail", new AddInput(3, 0), Short));
        Assert.Contains("boom: cannot do 3", tool.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<LoomTimeoutException>(() => caller.Context.InvokeAsync<AddOutput>("math.slow", new AddInput(1, 1), TimeSpan.FromMilliseconds(100)));
        Assert.Equal(3, (await caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(1, 2), Short))!.Sum);

        await provider.DisposeAsync();
        Assert.Null(directory.Find("math-local"));
        await Assert.ThrowsAsync<CapabilityNotFoundException>(() => caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(1, 2), Short));
    }

    [Fact]
    public async Task Request_reply_and_memory_work_in_process()
    {
        using var bus = new EventBus();
        var broker = new ActionBroker();
        var memory = new MemoryStore();
        await using var responder = LoomAgentHost.StartInProcess(new EchoAgent(), bus, broker, memory);
        await using var requester = LoomAgentHost.StartInProcess(new ClientAgent(), bus, broker, memory);

        var reply = await requester.Context.RequestAsync<EchoReply>("svc.echo", "hi", Short);
        Assert.Equal("\"hi\"", reply!.Text);
        await Assert.ThrowsAsync<LoomTimeoutException>(() => requester.Context.RequestAsync("svc.none", "x"u8.ToArray(), TimeSpan.FromMilliseconds(100)));

        var set = await requester.Context.Memory.SetAsync("k", "v"u8.ToArray());
        var cas = await responder.Context.Memory.CompareAndSetAsync("k", set.Version, "w"u8.ToArray());
        Assert.True(cas.Swapped);
        Assert.Equal("w", (await requester.Context.Memory.GetAsync("k"))!.ValueText());
    }

    [Fact]
    public async Task An_in_process_agent_serves_remote_agents_through_the_bridge()
    {
        await using var bridge = await TestBridge.StartAsync();
        var math = new MathAgent();
        await using var local = LoomAgentHost.StartInProcess(math, bridge.Bus, bridge.Broker, bridge.Memory, new AgentHostOptions { AgentId = "math-inproc" }, bridge.Agents);
        await using var remote = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, TestBridge.Options());

        var sum = await remote.Context.InvokeAsync<AddOutput>("math.add", new AddInput(2, 3), Short);
        Assert.Equal(5, sum!.Sum);

        await remote.Context.EmitAsync("math.events.remote", new { from = "remote" });
        await Poll.UntilAsync(() => !math.Events.IsEmpty, Short, "event from a remote agent");
        Assert.Equal(remote.AgentId, math.Events.Single().Sender);

        // And the in-process agent reaches the remote one.
        await using var echo = await LoomAgentHost.StartAsync(new EchoAgent(), bridge.GrpcAddress, TestBridge.Options());
        var reply = await local.Context.RequestAsync<EchoReply>("svc.echo", "across", Short);
        Assert.Equal("math-inproc", reply!.From);
    }
}
