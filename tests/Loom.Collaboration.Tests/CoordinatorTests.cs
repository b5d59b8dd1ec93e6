using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Core.Collaboration;
using Loom.Protocol.V1;

namespace Loom.Collaboration.Tests;

public sealed class CoordinatorTests
{
    private static GatherRequest Topic(string topic, JoinStrategy strategy, int timeoutMs = 5000, uint k = 0) => new()
    {
        Topic = topic,
        Payload = ByteString.CopyFromUtf8("{\"q\":1}"),
        Strategy = strategy,
        K = k,
        TimeoutMs = (uint)timeoutMs,
    };

    [Fact]
    public async Task First_returns_the_fastest_reply_and_counts_the_others_as_late()
    {
        using var core = new Core();
        using var fast = core.Responder("fast", "work.q", _ => "{\"v\":\"fast\"}");
        using var slow1 = core.Responder("slow1", "work.q", _ => "{\"v\":\"slow\"}", TimeSpan.FromMilliseconds(300));
        using var slow2 = core.Responder("slow2", "work.q", _ => "{\"v\":\"slow\"}", TimeSpan.FromMilliseconds(300));

        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.First), "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal(["fast"], result.Answered);
        Assert.Equal(3u, result.Expected);
        Assert.Equal(["slow1", "slow2"], result.TimedOut.Order());
        await Poll.UntilAsync(() => core.Coordinator.Stats.LateReplies >= 2, what: "late replies counted");
    }

    [Fact]
    public async Task Late_replies_never_hold_up_reply_routing_even_when_their_records_cannot_be_queued()
    {
        using var core = new Core();

        // A blocking subscriber of the progress records that never reads: each record publish waits 300 ms
        // (the operation's own records wait too: that is the subscriber's chosen backpressure, and bounded).
        using var stuck = core.Bus.Subscribe("_loom.collab.>", new SubscriptionOptions(QosClass.Batch, OverflowPolicy.Block, QueueCapacity: 1, BlockTimeout: TimeSpan.FromMilliseconds(300)));

        // Anyone may send late replies: 200 of them to operations that do not exist.
        for (var i = 0; i < 200; i++)
        {
            await core.Bus.PublishAsync(new Envelope { Topic = "_loom.reply.nobody" + i, Sender = "spammer", Payload = ByteString.CopyFromUtf8("{}") });
        }

        await Poll.UntilAsync(() => core.Coordinator.Stats.LateReplies >= 200, TimeSpan.FromSeconds(10), "every late reply counted");

        // A real gather still gets its reply at once. (Were the late records awaited one by one by the
        // reply router, about 60 s of 300 ms waits, even counting the 200 would not finish in time.)
        using var worker = core.Responder("w", "work.q", _ => "{\"v\":1}");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.First, timeoutMs: 5000), "boss");
        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal(["w"], result.Answered);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"the gather took {clock.Elapsed} behind the stuck records");
    }

    [Fact]
    public async Task First_k_waits_for_k_replies()
    {
        using var core = new Core();
        using var a = core.Responder("a", "work.q", _ => "1");
        using var b = core.Responder("b", "work.q", _ => "2", TimeSpan.FromMilliseconds(50));
        using var c = core.Responder("c", "work.q", _ => "3", TimeSpan.FromMilliseconds(2000));

        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.FirstK, k: 2), "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal(["a", "b"], result.Answered.Order());
        Assert.Equal(["c"], result.TimedOut);
        Assert.True(result.ElapsedMs < 1500, $"took {result.ElapsedMs} ms");
    }

    [Fact]
    public async Task All_with_a_silent_responder_times_out_with_partial_results()
    {
        using var core = new Core();
        using var a = core.Responder("a", "work.q", _ => "1");
        using var b = core.Responder("b", "work.q", _ => "2");
        using var mute = core.Responder("mute", "work.q", _ => null);

        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.All, timeoutMs: 1000), "boss");

        Assert.Equal(CollabOutcome.Timeout, result.Outcome);
        Assert.Equal(["a", "b"], result.Answered.Order());
        Assert.Equal(["mute"], result.TimedOut);
        Assert.Equal(2, result.Replies.Count);
    }

    [Fact]
    public async Task All_completes_as_soon_as_every_known_responder_answered()
    {
        using var core = new Core();
        using var a = core.Responder("a", "work.q", _ => "1");
        using var b = core.Responder("b", "work.q", _ => "2");

        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.All, timeoutMs: 10_000), "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Empty(result.TimedOut);
        Assert.True(result.ElapsedMs < 5000);
    }

    [Fact]
    public async Task Catch_all_taps_are_not_known_responders()
    {
        using var core = new Core();
        using var tap = core.Bus.Subscribe(">", new SubscriptionOptions(Owner: "loom-logs-1"));
        using var a = core.Responder("a", "work.q", _ => "1");

        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.All, timeoutMs: 10_000), "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal(1u, result.Expected);
    }

    [Fact]
    public async Task Majority_agrees_on_the_value_at_the_pointer()
    {
        using var core = new Core();
        using var a = core.Responder("a", "vote.q", _ => "{\"v\":{\"x\":1,\"y\":2},\"who\":\"a\"}");
        using var b = core.Responder("b", "vote.q", _ => "{\"v\":{\"y\":2.0,\"x\":1},\"who\":\"b\"}", TimeSpan.FromMilliseconds(30));
        using var c = core.Responder("c", "vote.q", _ => "{\"v\":7,\"who\":\"c\"}");

        var request = Topic("vote.q", JoinStrategy.Majority);
        request.ComparePointer = "/v";
        var result = await core.Coordinator.GatherAsync(request, "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal(2u, result.Quorum);
        Assert.Equal(["a", "b"], result.Agreeing.Order());
        using var agreed = JsonDocument.Parse(result.AgreedValue.Memory);
        Assert.Equal(1, agreed.RootElement.GetProperty("x").GetInt32());
    }

    [Fact]
    public async Task Majority_without_a_quorum_reports_no_quorum_once_everyone_answered()
    {
        using var core = new Core();
        using var a = core.Responder("a", "vote.q", _ => "1");
        using var b = core.Responder("b", "vote.q", _ => "2");
        using var c = core.Responder("c", "vote.q", _ => "3");

        var result = await core.Coordinator.GatherAsync(Topic("vote.q", JoinStrategy.Majority), "boss");

        Assert.Equal(CollabOutcome.NoQuorum, result.Outcome);
        Assert.Empty(result.Agreeing);
        Assert.Equal(3, result.Answered.Count);
    }

    [Fact]
    public async Task Majority_ignores_replies_from_agents_outside_its_agents_list()
    {
        // Defect 6 of issue 16: two made-up agent ids answering first decided a vote meant for a, b and c.
        using var core = new Core();
        using var a = core.Responder("a", "vote.q", _ => "1");
        using var b = core.Responder("b", "vote.q", _ => "2", TimeSpan.FromMilliseconds(200));
        using var c = core.Responder("c", "vote.q", _ => "2", TimeSpan.FromMilliseconds(200));
        using var x = core.Responder("made-up-1", "vote.q", _ => "1");
        using var y = core.Responder("made-up-2", "vote.q", _ => "1");

        var request = Topic("vote.q", JoinStrategy.Majority);
        request.Agents.Add(["a", "b", "c"]);
        var result = await core.Coordinator.GatherAsync(request, "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal(3u, result.Expected);
        Assert.Equal(2u, result.Quorum);
        Assert.Equal("2", result.AgreedValue.ToStringUtf8());
        Assert.Equal(["b", "c"], result.Agreeing.Order());
        Assert.DoesNotContain(result.Replies, r => r.Responder.StartsWith("made-up", StringComparison.Ordinal));
        Assert.DoesNotContain(result.Answered, r => r.StartsWith("made-up", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Capability_fan_out_reports_failures_and_timeouts_by_agent()
    {
        using var core = new Core();
        using var ok = core.Provide("ok", "job.run", (_, _) => Task.FromResult("{\"r\":1}"));
        using var bad = core.Provide("bad", "job.run", (_, _) => throw new ToolErrorException("boom"));
        using var stuck = core.Provide("stuck", "job.run", async (_, ct) =>
        {
            await Task.Delay(Timeout.Infinite, ct);
            return "{}";
        });

        var result = await core.Coordinator.GatherAsync(new GatherRequest { Capability = "job.run", Strategy = JoinStrategy.All, TimeoutMs = 1000 }, "boss");

        Assert.Equal(CollabOutcome.Timeout, result.Outcome);
        Assert.Equal(["ok"], result.Answered);
        Assert.Equal(["bad"], result.Failed);
        Assert.Equal(["stuck"], result.TimedOut);
        Assert.Equal(ErrorCode.ToolError, result.Replies.Single(r => r.Responder == "bad").Error.Code);
    }

    [Fact]
    public async Task Concurrent_requests_never_mix_replies()
    {
        using var core = new Core();
        var rng = new Random(7);
        using var a = core.Responder("a", "echo.q", e => e.Payload.ToStringUtf8(), TimeSpan.FromMilliseconds(rng.Next(1, 20)));
        using var b = core.Responder("b", "echo.q", e => e.Payload.ToStringUtf8(), TimeSpan.FromMilliseconds(rng.Next(1, 20)));

        var results = await Task.WhenAll(Enumerable.Range(0, 100).Select(i =>
            core.Coordinator.GatherAsync(new GatherRequest { Topic = "echo.q", Payload = ByteString.CopyFromUtf8($"{{\"n\":{i}}}"), Strategy = JoinStrategy.All, TimeoutMs = 10_000 }, "boss")));

        for (var i = 0; i < results.Length; i++)
        {
            Assert.Equal(CollabOutcome.Completed, results[i].Outcome);
            Assert.Equal(2, results[i].Replies.Count);
            Assert.All(results[i].Replies, r => Assert.Equal($"{{\"n\":{i}}}", r.Payload.ToStringUtf8()));
        }

        Assert.Equal(0, core.Coordinator.Stats.InFlight);
    }

    [Fact]
    public async Task Cancelling_a_gather_reports_cancelled_and_cancels_the_calls()
    {
        using var core = new Core();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stuck = core.Provide("stuck", "job.run", async (_, ct) =>
        {
            started.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                cancelled.TrySetResult();
                throw;
            }

            return "{}";
        });
        using var cts = new CancellationTokenSource();

        var gather = core.Coordinator.GatherAsync(new GatherRequest { Capability = "job.run", TimeoutMs = 10_000 }, "boss", cts.Token);
        await started.Task.WaitAsync(TimeSpan.FromSeconds(5));
        await cts.CancelAsync();
        var result = await gather.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(CollabOutcome.Cancelled, result.Outcome);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Invalid_requests_are_refused_with_a_path()
    {
        using var core = new Core();
        var both = await Assert.ThrowsAsync<InvalidParamsException>(() => core.Coordinator.GatherAsync(new GatherRequest { Topic = "a.b", Capability = "x" }, "boss"));
        Assert.Equal("/capability", both.Path);
        var k = await Assert.ThrowsAsync<InvalidParamsException>(() => core.Coordinator.GatherAsync(new GatherRequest { Topic = "a.b", Strategy = JoinStrategy.FirstK }, "boss"));
        Assert.Equal("/k", k.Path);
        var pointer = await Assert.ThrowsAsync<InvalidParamsException>(() => core.Coordinator.GatherAsync(new GatherRequest { Topic = "a.b", ComparePointer = "x" }, "boss"));
        Assert.Equal("/compare_pointer", pointer.Path);
        var barrier = await Assert.ThrowsAsync<InvalidParamsException>(() => core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b1" }, "x"));
        Assert.Equal("/participants", barrier.Path);
        await Assert.ThrowsAsync<CapabilityNotFoundException>(() => core.Coordinator.GatherAsync(new GatherRequest { Capability = "nobody.home" }, "boss"));
    }

    [Fact]
    public async Task Gather_progress_is_published_on_the_event_stream()
    {
        using var core = new Core();
        using var recorder = new Recorder(core.Bus, "_loom.collab.>");
        using var a = core.Responder("a", "work.q", _ => "1");

        var result = await core.Coordinator.GatherAsync(Topic("work.q", JoinStrategy.First), "boss");

        var records = recorder.Drain();
        Assert.Contains(records, e => e.Topic == "_loom.collab.gather.started" && e.CorrelationId == result.OpId && e.Sender == "boss");
        Assert.Contains(records, e => e.Topic == "_loom.collab.gather.completed" && e.Payload.ToStringUtf8().Contains("\"completed\"", StringComparison.Ordinal));
    }

    // -------------------------------------------------------------------------------------------
    // Barrier
    // -------------------------------------------------------------------------------------------

    [Fact]
    public async Task Barrier_completes_when_every_named_participant_arrived()
    {
        using var core = new Core();
        var request = new BarrierRequest { BarrierId = "b1", TimeoutMs = 5000 };
        request.Participants.Add(["a", "b", "c"]);
        var waits = new[] { "a", "b" }.Select(p => core.Coordinator.BarrierAsync(request.Clone(), p)).ToList();
        await Poll.UntilAsync(() => core.Coordinator.Barriers().Any(b => b.Arrived.Count == 2), what: "two arrivals");
        Assert.All(waits, w => Assert.False(w.IsCompleted));

        var last = await core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b1", TimeoutMs = 5000 }, "c");
        var results = await Task.WhenAll(waits);

        Assert.Equal(CollabOutcome.Completed, last.Outcome);
        Assert.All(results, r => Assert.Equal(CollabOutcome.Completed, r.Outcome));
        Assert.Equal(["a", "b", "c"], last.Arrived);
        Assert.Empty(last.Missing);
        Assert.Empty(core.Coordinator.Barriers());
    }

    [Fact]
    public async Task Barrier_with_a_missing_participant_times_out_and_reports_who_arrived()
    {
        using var core = new Core();
        var request = new BarrierRequest { BarrierId = "b2", TimeoutMs = 300 };
        request.Participants.Add(["a", "b", "ghost"]);

        var results = await Task.WhenAll(core.Coordinator.BarrierAsync(request.Clone(), "a"), core.Coordinator.BarrierAsync(request.Clone(), "b"));

        Assert.All(results, r =>
        {
            Assert.Equal(CollabOutcome.Timeout, r.Outcome);
            Assert.Equal(["a", "b"], r.Arrived.Order());
            Assert.Equal(["ghost"], r.Missing);
            Assert.Equal(3u, r.Expected);
        });
    }

    [Fact]
    public async Task Barrier_by_count_and_an_observer()
    {
        using var core = new Core();
        var observer = core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b3", Count = 2, Observe = true, TimeoutMs = 5000 }, "boss");
        var first = await core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b3", NoWait = true }, "w1");
        Assert.Equal(CollabOutcome.Pending, first.Outcome);
        var second = await core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b3", NoWait = true }, "w2");
        Assert.Equal(CollabOutcome.Completed, second.Outcome);
        var seen = await observer.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(CollabOutcome.Completed, seen.Outcome);
        Assert.Equal(["w1", "w2"], seen.Arrived);
    }

    [Fact]
    public async Task Barrier_refuses_a_different_expectation_and_strangers()
    {
        using var core = new Core();
        var request = new BarrierRequest { BarrierId = "b4", TimeoutMs = 5000, NoWait = true };
        request.Participants.Add(["a", "b"]);
        await core.Coordinator.BarrierAsync(request, "a");
        await Assert.ThrowsAsync<InvalidParamsException>(() => core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b4", Count = 5 }, "a"));
        var stranger = await Assert.ThrowsAsync<InvalidParamsException>(() => core.Coordinator.BarrierAsync(new BarrierRequest { BarrierId = "b4" }, "zed"));
        Assert.Equal("/participant", stranger.Path);
    }

    // -------------------------------------------------------------------------------------------
    // Contract-net
    // -------------------------------------------------------------------------------------------

    [Fact]
    public async Task Contract_net_awards_the_lowest_cost_and_falls_back_when_the_winner_fails()
    {
        using var core = new Core();
        using var recorder = new Recorder(core.Bus, "thread.cn1.broadcast");
        using var cheap = core.Responder("cheap", "thread.cn1.broadcast", _ => "{\"cost\":1}");
        using var mid = core.Responder("mid", "thread.cn1.broadcast", _ => "{\"cost\":2}");
        using var dear = core.Responder("dear", "thread.cn1.broadcast", _ => "{\"cost\":3}");
        using var noBid = core.Responder("shy", "thread.cn1.broadcast", _ => "{\"price\":0}");
        using var p1 = core.Provide("cheap", "task.do", (_, _) => throw new ToolErrorException("crashed"));
        using var p2 = core.Provide("mid", "task.do", (inv, _) => Task.FromResult($"{{\"by\":\"mid\",\"in\":{Encoding.UTF8.GetString(inv.InputJson.Span)}}}"));
        using var p3 = core.Provide("dear", "task.do", (_, _) => Task.FromResult("{\"by\":\"dear\"}"));

        var result = await core.Coordinator.ContractNetAsync(
            new ContractNetRequest { ThreadId = "cn1", Task = ByteString.CopyFromUtf8("{\"job\":42}"), Capability = "task.do", BidTimeoutMs = 3000, TimeoutMs = 10_000 },
            "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal("mid", result.Winner);
        Assert.Equal(["cheap", "mid", "dear", "shy"], result.Bids.Select(b => b.Bidder));
        Assert.False(result.Bids[3].Valid);
        Assert.Equal(["cheap", "mid"], result.Attempts.Select(a => a.Agent));
        Assert.Equal(ErrorCode.ToolError, result.Attempts[0].Error.Code);
        using var output = JsonDocument.Parse(result.OutputJson.Memory);
        Assert.Equal(42, output.RootElement.GetProperty("in").GetProperty("job").GetInt32());
        Assert.True(result.ElapsedMs < 3000, "every known bidder bid: no wait for the bid deadline");

        var kinds = recorder.Drain().Select(e => e.Headers[Coordinator.KindHeader]).ToList();
        Assert.Equal(["cfp", "bid", "bid", "bid", "bid", "award", "fallback", "award", "result"], kinds);
    }

    [Fact]
    public async Task Contract_net_falls_back_when_the_winner_times_out()
    {
        using var core = new Core();
        using var fast = core.Responder("fast", "cn.cfp", _ => "{\"cost\":5,\"latency_ms\":10}");
        using var slow = core.Responder("slow", "cn.cfp", _ => "{\"cost\":1,\"latency_ms\":900}");
        using var p1 = core.Provide("fast", "task.do", async (_, ct) =>
        {
            await Task.Delay(Timeout.Infinite, ct);
            return "{}";
        });
        using var p2 = core.Provide("slow", "task.do", (_, _) => Task.FromResult("{\"by\":\"slow\"}"));

        var result = await core.Coordinator.ContractNetAsync(
            new ContractNetRequest { Topic = "cn.cfp", Capability = "task.do", Scoring = ScoringRule.Fastest, ExecutionTimeoutMs = 300, TimeoutMs = 10_000 },
            "boss");

        Assert.Equal(CollabOutcome.Completed, result.Outcome);
        Assert.Equal("slow", result.Winner);
        Assert.Equal(ErrorCode.Timeout, result.Attempts[0].Error.Code);
    }

    [Fact]
    public async Task Contract_net_without_bids_reports_no_bids()
    {
        using var core = new Core();
        using var shy = core.Responder("shy", "cn.cfp", _ => null);
        var result = await core.Coordinator.ContractNetAsync(new ContractNetRequest { Topic = "cn.cfp", Capability = "task.do", BidTimeoutMs = 200 }, "boss");
        Assert.Equal(CollabOutcome.NoBids, result.Outcome);
        Assert.Equal(["shy"], result.NoBid);
    }

    [Fact]
    public async Task Contract_net_with_given_scores_awards_the_highest()
    {
        using var core = new Core();
        using var p1 = core.Provide("x", "task.do", (_, _) => Task.FromResult("{\"by\":\"x\"}"));
        using var p2 = core.Provide("y", "task.do", (_, _) => Task.FromResult("{\"by\":\"y\"}"));
        var request = new ContractNetRequest { Capability = "task.do", Scoring = ScoringRule.Given };
        request.Bids.Add(new Bid { Bidder = "x", Score = 1 });
        request.Bids.Add(new Bid { Bidder = "y", Score = 9 });

        var result = await core.Coordinator.ContractNetAsync(request, "boss");

        Assert.Equal("y", result.Winner);
    }

    [Fact]
    public void Shared_coordinator_is_one_per_bus()
    {
        using var bus = new EventBus();
        var broker = new ActionBroker();
        Assert.Same(Coordinator.For(bus, broker), Coordinator.For(bus, broker));
    }
}
