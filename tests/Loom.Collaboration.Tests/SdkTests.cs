using System.Text.Json;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Collaboration.Tests;

/// <summary>The .NET SDK's collaboration extensions, in-process and against a real bridge.</summary>
public sealed class SdkTests
{
    private sealed class Worker(string answer, string topic = "jobs.q") : Agent
    {
        public override IEnumerable<string> Topics => [topic];

        public override async Task OnEventAsync(AgentContext context, Envelope envelope, CancellationToken cancellationToken)
        {
            if (envelope.IsCollaborationRecord() || envelope.ReplyTo.Length == 0)
            {
                return;
            }

            var reply = envelope.IsCallForProposals() ? $"{{\"cost\":{answer.Length},\"bidder\":\"{context.AgentId}\"}}" : answer;
            await context.ReplyAsync(envelope, JsonDocument.Parse(reply).RootElement, cancellationToken: cancellationToken);
        }

        [Capability("jobs.run", Description = "Does the job.")]
        public static JsonElement Run(JsonElement input) => input;
    }

    private sealed class Boss : Agent;

    private static BridgeOptions Options() => new() { GrpcPort = 0, HttpPort = 0, HeartbeatInterval = TimeSpan.FromSeconds(1), MinHeartbeatInterval = TimeSpan.FromMilliseconds(50), ShutdownTimeout = TimeSpan.FromSeconds(1) };

    [Fact]
    public async Task In_process_fan_out_and_local_majority()
    {
        using var bus = new EventBus();
        var broker = new ActionBroker();
        var memory = new MemoryStore();
        await using var w1 = LoomAgentHost.StartInProcess(new Worker("{\"v\":1}"), bus, broker, memory, new AgentHostOptions { AgentId = "w1" });
        await using var w2 = LoomAgentHost.StartInProcess(new Worker("{\"v\":1.0}"), bus, broker, memory, new AgentHostOptions { AgentId = "w2" });
        await using var w3 = LoomAgentHost.StartInProcess(new Worker("{\"v\":2.0}"), bus, broker, memory, new AgentHostOptions { AgentId = "w3" });
        await using var boss = LoomAgentHost.StartInProcess(new Boss(), bus, broker, memory, new AgentHostOptions { AgentId = "boss" });

        var records = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using (await boss.Context.JoinThreadAsync("t-in", (e, _) =>
        {
            records.Enqueue(e.Headers.GetValueOrDefault(Loom.Core.Collaboration.Coordinator.KindHeader, "?"));
            return Task.CompletedTask;
        }))
        {
            var cn = await boss.Context.ContractNetAsync(new ContractNetRequest
            {
                ThreadId = "t-in",
                Topic = "jobs.q",
                Capability = "jobs.run",
                Task = Google.Protobuf.ByteString.CopyFromUtf8("{\"x\":1}"),
                BidTimeoutMs = 3000,
            });
            Assert.Equal(CollabOutcome.Completed, cn.Outcome);
            Assert.Equal("w1", cn.Winner); // {"v":1} is the shortest answer: the lowest cost
            await Poll.UntilAsync(() => records.Contains("result"), what: "the result record on the thread");
            Assert.Equal(["cfp", "bid", "bid", "bid", "award", "result"], records);
        }

        var all = await boss.Context.FanOutAsync("jobs.q", new { ask = 1 }, JoinStrategy.All, TimeSpan.FromSeconds(5));
        Assert.Equal(CollabOutcome.Completed, all.Outcome);
        Assert.Equal(["w1", "w2", "w3"], all.Answered.Order());

        var request = new GatherRequest { Topic = "jobs.q", TimeoutMs = 5000 };
        var majority = await boss.Context.MajorityAsync(request, r => r.PayloadAs<JsonElement>().GetProperty("v").GetDouble());
        Assert.Equal(CollabOutcome.Completed, majority.Outcome);
        Assert.Equal(["w1", "w2"], majority.Agreeing.Order());
    }

    [Fact]
    public async Task Remote_gather_barrier_and_contract_net_through_a_bridge()
    {
        await using var bridge = new LoomBridge(Options());
        await bridge.StartAsync();
        await using var w1 = await LoomAgentHost.StartAsync(new Worker("{\"n\":\"a\"}"), bridge.GrpcAddress, new AgentHostOptions { AgentId = "rw1" });
        await using var w2 = await LoomAgentHost.StartAsync(new Worker("{\"n\":\"bb\"}"), bridge.GrpcAddress, new AgentHostOptions { AgentId = "rw2" });
        await using var local = LoomAgentHost.StartInProcess(new Worker("{\"n\":\"ccc\"}"), bridge.Bus, bridge.Broker, bridge.Memory, new AgentHostOptions { AgentId = "lw3" });
        await using var boss = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { AgentId = "boss" });

        var first = await boss.FanOutAsync("jobs.q", new { }, JoinStrategy.FirstK, TimeSpan.FromSeconds(5), k: 3);
        Assert.Equal(CollabOutcome.Completed, first.Outcome);
        Assert.Equal(["lw3", "rw1", "rw2"], first.Answered.Order());

        // A barrier shared by a remote connection and an in-process agent (one coordinator per bus).
        var request = new BarrierRequest { BarrierId = "sync-1", TimeoutMs = 5000 };
        request.Participants.Add(["boss", "lw3"]);
        var waiting = boss.BarrierAsync(request.Clone());
        var arrived = await local.Context.BarrierAsync(request.Clone());
        Assert.Equal(CollabOutcome.Completed, arrived.Outcome);
        Assert.Equal(CollabOutcome.Completed, (await waiting.WaitAsync(TimeSpan.FromSeconds(5))).Outcome);

        // Contract-net with a local scorer: the longest answer (highest cost) wins.
        var cn = await boss.ContractNetAsync(
            new ContractNetRequest { Topic = "jobs.q", Capability = "jobs.run", Task = Google.Protobuf.ByteString.CopyFromUtf8("{\"x\":1}"), BidTimeoutMs = 3000, TimeoutMs = 10_000 },
            bid => bid.Payload.Length == 0 ? double.NaN : JsonDocument.Parse(bid.Payload.Memory).RootElement.GetProperty("cost").GetDouble());
        Assert.Equal(CollabOutcome.Completed, cn.Outcome);
        Assert.Equal("lw3", cn.Winner);
        Assert.Equal(3, cn.Bids.Count);

        // Invalid parameters come back typed, with the path.
        var bad = await Assert.ThrowsAsync<InvalidParamsException>(() => boss.GatherAsync(new GatherRequest { Topic = "jobs.q", Strategy = JoinStrategy.FirstK }));
        Assert.Equal("/k", bad.Path);

        // Cancelling the caller cancels the operation.
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => boss.GatherAsync(new GatherRequest { Topic = "nobody.listens", TimeoutMs = 10_000 }, cts.Token));
    }
}
