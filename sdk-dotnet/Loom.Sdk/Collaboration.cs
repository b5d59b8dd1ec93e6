using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Core.Collaboration;
using Grpc.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk;

/// <summary>
/// Collaboration operations for agents and connections: <c>GatherAsync</c> (request/reply,
/// fan-out/fan-in with first, first-k, majority or all), <c>BarrierAsync</c> and
/// <c>ContractNetAsync</c>. They run in the core (over the <c>loom.v1.Collaboration</c> service for
/// remote agents, directly for in-process ones), so they behave the same from every language.
/// Outcomes are values (<see cref="GatherResult"/>, <see cref="BarrierResult"/>,
/// <see cref="ContractNetResult"/>): timeouts and failures of responders are reported, not thrown.
/// Invalid requests throw <see cref="InvalidParamsException"/>; cancellation throws
/// <see cref="OperationCanceledException"/>.
/// </summary>
public static class CollaborationExtensions
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(5);

    // ---------------------------------------------------------------------------------------
    // Gather
    // ---------------------------------------------------------------------------------------

    /// <summary>Runs a gather (request/reply or fan-out/fan-in) and returns who answered, timed out and failed.</summary>
    public static Task<GatherResult> GatherAsync(this ILoomContext context, GatherRequest request, CancellationToken cancellationToken = default) =>
        GatherAsync(TransportOf(context), request, cancellationToken);

    /// <summary>
    /// Fan-out to a topic with a JSON payload, joined by <paramref name="strategy"/> (k for FIRST_K).
    /// </summary>
    public static Task<GatherResult> FanOutAsync<T>(this ILoomContext context, string topic, T payload, JoinStrategy strategy, TimeSpan timeout, uint k = 0, string? threadId = null, CancellationToken cancellationToken = default) =>
        GatherAsync(TransportOf(context), TopicRequest(topic, payload, strategy, timeout, k, threadId, context.JsonOptions), cancellationToken);

    /// <summary>
    /// Majority with a comparison defined by a local function: gathers with strategy ALL (every
    /// known responder, or the deadline), then groups the successful replies by
    /// <paramref name="key"/> (replies whose key is null abstain) and agrees on the first group, in
    /// arrival order, that reaches the quorum (<c>request.Quorum</c>, or more than half of the
    /// known responders). Same result shape as the core's MAJORITY; unlike it, it cannot stop at
    /// the quorum before the others answer.
    /// </summary>
    public static Task<GatherResult> MajorityAsync<TKey>(this ILoomContext context, GatherRequest request, Func<Reply, TKey?> key, CancellationToken cancellationToken = default) =>
        MajorityAsync(TransportOf(context), request, key, cancellationToken);

    // ---------------------------------------------------------------------------------------
    // Barrier
    // ---------------------------------------------------------------------------------------

    /// <summary>Arrives at a barrier (or observes it) and waits until it is complete or the deadline; reports who arrived.</summary>
    public static Task<BarrierResult> BarrierAsync(this ILoomContext context, BarrierRequest request, CancellationToken cancellationToken = default) =>
        BarrierAsync(TransportOf(context), request, cancellationToken);

    // ---------------------------------------------------------------------------------------
    // Contract-net
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Runs a contract-net. With <paramref name="scorer"/> (higher wins), bids are collected with a
    /// gather on the call-for-proposals topic (strategy ALL, or FIRST_K = max_bids, within the bid
    /// timeout), scored here, and handed to the core with SCORING_RULE_GIVEN for the award,
    /// execution and fallback; without it the request's scoring rule applies in the core.
    /// </summary>
    public static Task<ContractNetResult> ContractNetAsync(this ILoomContext context, ContractNetRequest request, Func<Bid, double>? scorer = null, CancellationToken cancellationToken = default) =>
        ContractNetAsync(TransportOf(context), request, scorer, cancellationToken);

    // ---------------------------------------------------------------------------------------
    // Threads
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Joins a conversation: subscribes <paramref name="handler"/> to <c>thread.{id}.&gt;</c>
    /// (<c>broadcast</c> and <c>reply</c> by convention, and the contract-net records). Dispose the
    /// result to leave.
    /// </summary>
    /// <exception cref="InvalidParamsException">The thread id is not one topic token.</exception>
    public static Task<LoomSubscription> JoinThreadAsync(this ILoomContext context, string threadId, Func<Envelope, CancellationToken, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        return context.SubscribeAsync(ThreadPattern(threadId), handler, null, cancellationToken);
    }

    /// <summary>Where a context's operations go: the agent's transport, or the connection itself.</summary>
    private static IAgentTransport TransportOf(ILoomContext context) => context switch
    {
        null => throw new ArgumentNullException(nameof(context)),
        AgentContext agent => agent.Transport,
        LoomConnection connection => connection,
        _ => throw new InvalidOperationException($"Collaboration operations need the SDK's own context (an AgentContext or a LoomConnection), not {context.GetType().Name}."),
    };

    /// <summary>The broadcast topic of a thread: <c>thread.{id}.broadcast</c>.</summary>
    public static string ThreadTopic(string threadId, string kind = "broadcast") => $"thread.{CheckThread(threadId)}.{kind}";

    private static string ThreadPattern(string threadId) => $"thread.{CheckThread(threadId)}.>";

    private static string CheckThread(string threadId)
    {
        ArgumentNullException.ThrowIfNull(threadId);
        if (threadId.Length == 0 || threadId.Contains('.', StringComparison.Ordinal) || !Topics.IsValidTopic("thread." + threadId))
        {
            throw new InvalidParamsException($"Thread id '{threadId}' is invalid: one topic token of A-Z a-z 0-9 _ - :.", "/thread_id");
        }

        return threadId;
    }

    // ---------------------------------------------------------------------------------------
    // Workers
    // ---------------------------------------------------------------------------------------

    /// <summary>Whether an event is a call for proposals of a contract-net (answer it with a bid through <c>ReplyAsync</c>).</summary>
    public static bool IsCallForProposals(this Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        return envelope.ReplyTo.Length != 0 && envelope.Headers.TryGetValue(Coordinator.KindHeader, out var kind) && kind == "cfp";
    }

    /// <summary>Whether an event is a collaboration record (cfp/bid/award/... on a thread) rather than a request to answer.</summary>
    public static bool IsCollaborationRecord(this Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        return envelope.ReplyTo.Length == 0 && envelope.Headers.ContainsKey(Coordinator.KindHeader);
    }

    /// <summary>A reply's payload as <typeparamref name="T"/> (JSON).</summary>
    public static T? PayloadAs<T>(this Reply reply, JsonSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reply);
        return JsonSerializer.Deserialize<T>(reply.Payload.Span, options ?? JsonSerializerOptions.Web);
    }

    // ---------------------------------------------------------------------------------------

    private static GatherRequest TopicRequest<T>(string topic, T payload, JoinStrategy strategy, TimeSpan timeout, uint k, string? threadId, JsonSerializerOptions json)
    {
        ArgumentNullException.ThrowIfNull(topic);
        return new GatherRequest
        {
            Topic = topic,
            Payload = Payloads.TryGetBytes(payload, out var raw) ? ByteString.CopyFrom(raw.Span) : UnsafeByteOperations.UnsafeWrap(JsonSerializer.SerializeToUtf8Bytes(payload, json)),
            Strategy = strategy,
            K = k,
            TimeoutMs = Millis(timeout),
            ThreadId = threadId ?? "",
        };
    }

    private static uint Millis(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero)
        {
            throw new InvalidParamsException($"A timeout must be positive; got {timeout}.", "/timeout_ms");
        }

        return (uint)Math.Clamp(Math.Ceiling(timeout.TotalMilliseconds), 1, uint.MaxValue);
    }

    private static Task<GatherResult> GatherAsync(IAgentTransport transport, GatherRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return RunAsync(transport, static (client, options, r) => client.GatherAsync(r, options), request, request.TimeoutMs, TimeSpan.FromSeconds(30), s => request.SessionId = s,
            (c, caller, ct) => c.GatherAsync(request, caller, ct), r => r.Outcome, cancellationToken);
    }

    private static Task<BarrierResult> BarrierAsync(IAgentTransport transport, BarrierRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        return RunAsync(transport, static (client, options, r) => client.BarrierAsync(r, options), request, request.TimeoutMs, TimeSpan.FromSeconds(30), s => request.SessionId = s,
            (c, caller, ct) => c.BarrierAsync(request, caller, ct), r => r.Outcome, cancellationToken);
    }

    private static async Task<GatherResult> MajorityAsync<TKey>(IAgentTransport transport, GatherRequest request, Func<Reply, TKey?> key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(key);
        var all = request.Clone();
        all.Strategy = JoinStrategy.All;
        var result = await GatherAsync(transport, all, cancellationToken);
        ApplyMajority(result, request.Quorum, key);
        return result;
    }

    /// <summary>The local-comparison majority over a finished gather (shared with the tests).</summary>
    internal static void ApplyMajority<TKey>(GatherResult result, uint quorum, Func<Reply, TKey?> key)
    {
        var needed = quorum != 0 ? (int)quorum : ((int)result.Expected / 2) + 1;
        result.Quorum = (uint)needed;
        var groups = new List<(TKey Key, List<Reply> Replies)>();
        foreach (var reply in result.Replies)
        {
            if (reply.Error is not null || key(reply) is not { } k)
            {
                continue;
            }

            var index = groups.FindIndex(g => EqualityComparer<TKey>.Default.Equals(g.Key, k));
            if (index < 0)
            {
                groups.Add((k, [reply]));
                continue;
            }

            groups[index].Replies.Add(reply);
            if (groups[index].Replies.Count >= needed)
            {
                break;
            }
        }

        var agreed = groups.FirstOrDefault(g => g.Replies is not null && g.Replies.Count >= needed);
        if (agreed.Replies is not null)
        {
            result.Outcome = CollabOutcome.Completed;
            result.AgreedValue = agreed.Replies[0].Payload;
            result.Agreeing.Clear();
            result.Agreeing.Add(agreed.Replies.Select(r => r.Responder));
        }
        else if (result.Outcome == CollabOutcome.Completed || result.Outcome == CollabOutcome.Failed)
        {
            result.Outcome = CollabOutcome.NoQuorum;
        }
    }

    private static async Task<ContractNetResult> ContractNetAsync(IAgentTransport transport, ContractNetRequest request, Func<Bid, double>? scorer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (scorer is null)
        {
            return await RunAsync(transport, static (client, options, r) => client.ContractNetAsync(r, options), request, request.TimeoutMs, TimeSpan.FromSeconds(60), s => request.SessionId = s,
                (c, caller, ct) => c.ContractNetAsync(request, caller, ct), r => r.Outcome, cancellationToken);
        }

        var opId = request.OpId.Length != 0 ? request.OpId : Guid.NewGuid().ToString("N");
        var threadId = request.ThreadId.Length != 0 ? request.ThreadId : opId;
        var cfp = new GatherRequest
        {
            OpId = opId + "-cfp",
            ThreadId = threadId,
            Topic = request.Topic.Length != 0 ? request.Topic : $"thread.{threadId}.broadcast",
            Payload = request.Task.IsEmpty ? ByteString.CopyFromUtf8("{}") : request.Task,
            Strategy = request.MaxBids != 0 ? JoinStrategy.FirstK : JoinStrategy.All,
            K = request.MaxBids,
            TimeoutMs = request.BidTimeoutMs != 0 ? request.BidTimeoutMs : 2000,
        };
        cfp.Agents.Add(request.Bidders);
        cfp.Headers[Coordinator.KindHeader] = "cfp";
        cfp.Headers["loom-capability"] = request.Capability;
        var gathered = await GatherAsync(transport, cfp, cancellationToken);
        var award = request.Clone();
        award.OpId = opId;
        award.ThreadId = threadId;
        award.Scoring = ScoringRule.Given;
        award.Bids.Clear();
        foreach (var reply in gathered.Replies.Where(r => r.Error is null))
        {
            var bid = new Bid { Bidder = reply.Responder, Payload = reply.Payload, LatencyMs = reply.LatencyMs };
            try
            {
                bid.Score = scorer(bid);
            }
            catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException or KeyNotFoundException)
            {
                bid.Score = double.NaN;
            }

            award.Bids.Add(bid);
        }

        if (award.Bids.Count == 0)
        {
            var none = new ContractNetResult { OpId = opId, ThreadId = threadId, Outcome = CollabOutcome.NoBids, ElapsedMs = gathered.ElapsedMs };
            none.NoBid.Add(gathered.TimedOut);
            return none;
        }

        var result = await RunAsync(transport, static (client, options, r) => client.ContractNetAsync(r, options), award, award.TimeoutMs, TimeSpan.FromSeconds(60), s => award.SessionId = s,
            (c, caller, ct) => c.ContractNetAsync(award, caller, ct), r => r.Outcome, cancellationToken);
        result.NoBid.Add(gathered.TimedOut);
        return result;
    }

    private static async Task<TResult> RunAsync<TRequest, TResult>(
        IAgentTransport transport,
        Func<Protocol.V1.Collaboration.CollaborationClient, CallOptions, TRequest, AsyncUnaryCall<TResult>> remote,
        TRequest request,
        uint timeoutMs,
        TimeSpan fallback,
        Action<string> setSession,
        Func<Coordinator, string, CancellationToken, Task<TResult>> local,
        Func<TResult, CollabOutcome> outcomeOf,
        CancellationToken cancellationToken)
        where TRequest : IMessage<TRequest>
        where TResult : IMessage<TResult>
    {
        ArgumentNullException.ThrowIfNull(transport);
        switch (transport)
        {
            case InProcessTransport inProcess:
                {
                    var result = await local(Coordinator.For(inProcess.Bus, inProcess.Broker), inProcess.AgentId, cancellationToken);
                    if (outcomeOf(result) == CollabOutcome.Cancelled)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                    }

                    return result;
                }

            case LoomConnection connection:
                {
                    if (connection.Status != ConnectionStatus.Connected)
                    {
                        throw ErrorMapping.NotConnected(connection.Status);
                    }

                    setSession(connection.SessionId);
                    var timeout = timeoutMs == 0 ? fallback : TimeSpan.FromMilliseconds(timeoutMs);
                    try
                    {
                        return await remote(connection.Collaboration, new CallOptions(deadline: DateTime.UtcNow + timeout + Grace, cancellationToken: cancellationToken), request);
                    }
                    catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
                    {
                        throw ErrorMapping.FromStatus(ex, connection.Address);
                    }
                    catch (RpcException) when (cancellationToken.IsCancellationRequested)
                    {
                        throw new OperationCanceledException(cancellationToken);
                    }
                    catch (HttpRequestException ex)
                    {
                        throw ErrorMapping.FromTransport(ex, connection.Address);
                    }
                }

            default:
                throw new InvalidOperationException($"Collaboration operations are not available on {transport.GetType().Name}.");
        }
    }
}
