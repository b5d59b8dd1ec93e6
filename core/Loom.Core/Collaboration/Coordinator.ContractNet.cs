using System.Text.Json;
using Google.Protobuf;
using Loom.Core.Collaboration.Internal;
using Loom.Protocol.V1;

namespace Loom.Core.Collaboration;

public sealed partial class Coordinator
{
    /// <summary>
    /// Runs a contract-net exchange: a call for proposals on <see cref="ContractNetRequest.Topic"/>
    /// (default <c>thread.{id}.broadcast</c>), bids (replies) collected until the bid deadline,
    /// <see cref="ContractNetRequest.MaxBids"/> valid bids, or every known bidder; bids ranked by the
    /// scoring rule; the best bidder executes <see cref="ContractNetRequest.Capability"/> (called on
    /// that agent only); when it fails or times out, the next bidder does. Every step is recorded on
    /// <c>thread.{id}.broadcast</c> with the header <c>loom-collab</c> = cfp, bid, award, fallback or
    /// result.
    /// </summary>
    /// <exception cref="InvalidParamsException">A field is wrong (the path names it).</exception>
    public async Task<ContractNetResult> ContractNetAsync(ContractNetRequest request, string caller, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        caller = string.IsNullOrEmpty(caller) ? "anonymous" : caller;
        var opId = NewOpId(request.OpId, "/op_id");
        var threadId = request.ThreadId.Length != 0 ? request.ThreadId : opId;
        if (threadId.Contains('.', StringComparison.Ordinal) || !Topics.IsValidTopic("thread." + threadId + ".broadcast"))
        {
            throw new InvalidParamsException($"Thread id '{threadId}' is invalid: one topic token of A-Z a-z 0-9 _ - :.", "/thread_id");
        }

        var thread = "thread." + threadId + ".broadcast";
        var topic = request.Topic.Length != 0 ? request.Topic : thread;
        if (!Topics.IsValidTopic(topic))
        {
            Topics.ValidateTopic(topic);
        }

        if (request.Capability.Length == 0)
        {
            throw new InvalidParamsException("A contract-net needs capability: what the winner executes.", "/capability");
        }

        if (!Enum.IsDefined(request.Scoring))
        {
            throw new InvalidParamsException($"Unknown scoring rule {(int)request.Scoring}.", "/scoring");
        }

        var pointer = request.Scoring switch
        {
            ScoringRule.Fastest => "/latency_ms",
            ScoringRule.FieldMin or ScoringRule.FieldMax => request.ScorePointer,
            _ => "/cost",
        };
        if (request.Scoring is ScoringRule.FieldMin or ScoringRule.FieldMax && (pointer.Length == 0 || !JsonPath.IsValidPointer(pointer)))
        {
            throw new InvalidParamsException($"score_pointer '{pointer}' is not a JSON pointer to the scored number, e.g. \"/price\".", "/score_pointer");
        }

        if (request.Scoring == ScoringRule.Given && request.Bids.Count == 0)
        {
            throw new InvalidParamsException("SCORING_RULE_GIVEN needs the bids, scored by the caller.", "/bids");
        }

        var timeout = Timeout(request.TimeoutMs, _options.DefaultContractNetTimeout, "/timeout_ms");
        var bidTimeout = request.BidTimeoutMs == 0 ? _options.DefaultBidTimeout : TimeSpan.FromMilliseconds(request.BidTimeoutMs);
        if (bidTimeout > timeout)
        {
            bidTimeout = timeout;
        }

        var start = _time.GetTimestamp();
        var until = _time.GetUtcNow() + timeout;
        Interlocked.Increment(ref _started);
        using var deadline = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        var result = new ContractNetResult { OpId = opId, ThreadId = threadId };
        var bids = new List<Bid>();
        var known = new List<string>();
        var outcome = CollabOutcome.Unspecified;
        try
        {
            if (request.Scoring == ScoringRule.Given)
            {
                foreach (var given in request.Bids)
                {
                    var bid = given.Clone();
                    bid.Valid = double.IsFinite(bid.Score);
                    bid.Reason = bid.Valid ? "" : "the score is not a finite number";
                    bids.Add(bid);
                    await RecordBidAsync(thread, threadId, opId, bid).ConfigureAwait(false);
                }
            }
            else
            {
                known = request.Bidders.Count != 0 ? Distinct(request.Bidders) : SubscribersOf(topic, caller);
                await CollectBidsAsync(request, opId, threadId, thread, topic, caller, pointer, known, bids, bidTimeout, linked.Token).ConfigureAwait(false);
            }

            var ranked = Rank(bids, request.Scoring);
            result.Bids.Add(ranked);
            result.NoBid.Add(known.Where(k => !bids.Exists(b => b.Bidder == k)));
            var candidates = ranked.Where(b => b.Valid).ToList();
            if (candidates.Count == 0)
            {
                outcome = CollabOutcome.NoBids;
            }
            else
            {
                outcome = await ExecuteAsync(request, opId, threadId, thread, caller, candidates, result, until, linked.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            outcome = cancellationToken.IsCancellationRequested ? CollabOutcome.Cancelled : CollabOutcome.Timeout;
        }

        if (result.Bids.Count == 0 && bids.Count != 0)
        {
            result.Bids.Add(Rank(bids, request.Scoring));
        }

        result.Outcome = outcome;
        result.ElapsedMs = Elapsed(start);
        CollabLog.Ended(_logger, "contract-net", opId, caller, outcome.ToString(), result.ElapsedMs);
        await PublishRecordAsync(thread, "result", threadId, opId, caller, w =>
        {
            w.WriteString("outcome", OutcomeName(outcome));
            w.WriteString("winner", result.Winner);
            w.WriteNumber("bids", result.Bids.Count);
            w.WriteNumber("attempts", result.Attempts.Count);
            w.WriteNumber("elapsed_ms", result.ElapsedMs);
            if (!result.OutputJson.IsEmpty)
            {
                WriteRaw(w, "output", result.OutputJson);
            }
        }).ConfigureAwait(false);
        return result;
    }

    private async Task CollectBidsAsync(ContractNetRequest request, string opId, string threadId, string thread, string topic, string caller, string pointer, List<string> known, List<Bid> bids, TimeSpan bidTimeout, CancellationToken cancellationToken)
    {
        var op = new PendingOp(opId, _options.MaxPendingReplies, _time.GetTimestamp());
        if (!TryTrack(opId, op))
        {
            throw new InvalidParamsException($"Operation id '{opId}' is already in flight; use a unique op_id per operation.", "/op_id");
        }

        using var bidDeadline = new CancellationTokenSource(bidTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, bidDeadline.Token);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var valid = 0;
        try
        {
            var task = request.Task.IsEmpty ? ByteString.CopyFromUtf8("{}") : request.Task;
            await PublishRequestAsync(topic, task, JsonContentType, new Dictionary<string, string>(StringComparer.Ordinal) { ["loom-capability"] = request.Capability }, threadId, opId, caller, "cfp", bidTimeout, linked.Token).ConfigureAwait(false);
            if (topic != thread)
            {
                await PublishRecordAsync(thread, "cfp", threadId, opId, caller, w =>
                {
                    w.WriteString("topic", topic);
                    w.WriteString("capability", request.Capability);
                    WriteRaw(w, "task", task);
                }).ConfigureAwait(false);
            }

            bool Enough() => (request.MaxBids != 0 && valid >= request.MaxBids) || (known.Count != 0 && known.TrueForAll(seen.Contains));
            while (!Enough() && await op.WaitAsync(linked.Token).ConfigureAwait(false))
            {
                while (!Enough() && op.TryRead(out var reply))
                {
                    if (!seen.Add(reply.Responder))
                    {
                        Interlocked.Increment(ref _duplicates);
                        continue;
                    }

                    var bid = new Bid { Bidder = reply.Responder, Payload = reply.Payload, LatencyMs = reply.LatencyMs };
                    if (JsonPath.Number(reply.Payload.Memory, pointer, out var reason) is { } score)
                    {
                        bid.Score = score;
                        bid.Valid = true;
                        valid++;
                    }
                    else
                    {
                        bid.Reason = reason;
                    }

                    bids.Add(bid);
                    await RecordBidAsync(thread, threadId, opId, bid).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (bidDeadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            // The bid deadline: award among the bids so far.
        }
        finally
        {
            _ops.TryRemove(opId, out _);
            CountLate(op);
        }
    }

    private ValueTask RecordBidAsync(string thread, string threadId, string opId, Bid bid) =>
        PublishRecordAsync(thread, "bid", threadId, opId, bid.Bidder, w =>
        {
            w.WriteString("bidder", bid.Bidder);
            w.WriteBoolean("valid", bid.Valid);
            if (bid.Valid)
            {
                w.WriteNumber("score", bid.Score);
            }
            else
            {
                w.WriteString("reason", bid.Reason);
            }

            if (!bid.Payload.IsEmpty)
            {
                WriteRaw(w, "bid", bid.Payload);
            }
        });

    private async Task<CollabOutcome> ExecuteAsync(ContractNetRequest request, string opId, string threadId, string thread, string caller, List<Bid> candidates, ContractNetResult result, DateTimeOffset until, CancellationToken cancellationToken)
    {
        var attempts = request.MaxAttempts == 0 ? candidates.Count : (int)Math.Min(request.MaxAttempts, (uint)candidates.Count);
        var input = !request.InputJson.IsEmpty ? request.InputJson : request.Task.IsEmpty ? ByteString.CopyFromUtf8("{}") : request.Task;
        for (var i = 0; i < attempts; i++)
        {
            var bid = candidates[i];
            await PublishRecordAsync(thread, "award", threadId, opId, caller, w =>
            {
                w.WriteString("winner", bid.Bidder);
                w.WriteNumber("score", bid.Score);
                w.WriteNumber("rank", i + 1);
                w.WriteString("capability", request.Capability);
            }).ConfigureAwait(false);

            var left = until - _time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                return CollabOutcome.Timeout;
            }

            var perAttempt = request.ExecutionTimeoutMs == 0 ? left : TimeSpan.FromMilliseconds(Math.Min(request.ExecutionTimeoutMs, left.TotalMilliseconds));
            var attemptStart = _time.GetTimestamp();
            var outcome = await _broker.InvokeAsync(
                new ActionRequest
                {
                    Capability = request.Capability,
                    Version = request.Version.Length == 0 ? null : request.Version,
                    InputJson = input.Memory,
                    Timeout = perAttempt,
                    Caller = caller,
                    ThreadId = threadId,
                    TargetAgent = bid.Bidder,
                    CallId = opId + "-award-" + (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture),
                },
                cancellationToken).ConfigureAwait(false);
            var attempt = new Attempt { Agent = bid.Bidder, Succeeded = outcome.Succeeded, DurationMs = Elapsed(attemptStart) };
            result.Attempts.Add(attempt);
            if (outcome.Error is null)
            {
                result.Winner = bid.Bidder;
                result.OutputJson = ByteString.CopyFrom(outcome.OutputJson.Span);
                return CollabOutcome.Completed;
            }

            attempt.Error = outcome.Error;
            cancellationToken.ThrowIfCancellationRequested();
            CollabLog.Fallback(_logger, opId, bid.Bidder, ErrorCodes.Name(outcome.Error.Code));
            await PublishRecordAsync(thread, "fallback", threadId, opId, caller, w =>
            {
                w.WriteString("failed", bid.Bidder);
                w.WriteString("code", ErrorCodes.Name(outcome.Error.Code));
                w.WriteString("message", outcome.Error.Message);
                w.WriteString("next", i + 1 < attempts ? candidates[i + 1].Bidder : "");
            }).ConfigureAwait(false);
        }

        return CollabOutcome.Failed;
    }

    /// <summary>Valid bids best first (ties by arrival), then invalid ones.</summary>
    private static List<Bid> Rank(List<Bid> bids, ScoringRule rule)
    {
        var higherWins = rule is ScoringRule.FieldMax or ScoringRule.Given;
        var valid = bids.Where(b => b.Valid).Select((b, i) => (b, i))
            .OrderBy(x => higherWins ? -x.b.Score : x.b.Score).ThenBy(x => x.i).Select(x => x.b);
        return valid.Concat(bids.Where(b => !b.Valid)).ToList();
    }

    private static void WriteRaw(Utf8JsonWriter writer, string name, ByteString json)
    {
        writer.WritePropertyName(name);
        try
        {
            using var doc = JsonDocument.Parse(json.Memory);
            doc.RootElement.WriteTo(writer);
        }
        catch (JsonException)
        {
            writer.WriteStringValue(json.ToBase64());
        }
    }
}
