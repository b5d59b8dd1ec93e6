using System.Collections.Concurrent;
using Loom.Core.Collaboration.Internal;
using Loom.Protocol.V1;

namespace Loom.Core.Collaboration;

public sealed partial class Coordinator
{
    private readonly ConcurrentDictionary<string, BarrierState> _barriers = new(StringComparer.Ordinal);
    private readonly Lock _barrierGate = new();

    /// <summary>
    /// Arrives at a barrier (unless <see cref="BarrierRequest.Observe"/>) and waits until it is
    /// complete: every named participant arrived, or <see cref="BarrierRequest.Count"/> distinct
    /// arrivals. The first call names the expectation (participants or count); later calls may
    /// repeat it or leave it out. A completed barrier is gone: the same id starts a new one. A
    /// barrier nobody waits for any more is forgotten when the longest deadline given to it passes.
    /// </summary>
    /// <exception cref="InvalidParamsException">A field is wrong, the expectation differs from the barrier's, or the participant is not one of the named ones.</exception>
    public async Task<BarrierResult> BarrierAsync(BarrierRequest request, string caller, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        caller = string.IsNullOrEmpty(caller) ? "anonymous" : caller;
        if (request.BarrierId.Length is 0 or > 128 || request.BarrierId.Contains('.', StringComparison.Ordinal) || !Topics.IsValidTopic("x." + request.BarrierId))
        {
            throw new InvalidParamsException($"Barrier id '{request.BarrierId}' is invalid: 1-128 characters of A-Z a-z 0-9 _ - :.", "/barrier_id");
        }

        if (request.Participants.Count != 0 && request.Count != 0)
        {
            throw new InvalidParamsException("A barrier waits for named participants or for a count of arrivals, not both.", "/count");
        }

        var timeout = Timeout(request.TimeoutMs, _options.DefaultTimeout, "/timeout_ms");
        var participant = request.Participant.Length != 0 ? request.Participant : caller;
        var start = _time.GetTimestamp();
        var now = _time.GetUtcNow();
        Interlocked.Increment(ref _started);
        BarrierState state;
        bool arrivedNow = false, completedNow = false;
        lock (_barrierGate)
        {
            Sweep(now);
            if (!_barriers.TryGetValue(request.BarrierId, out state!))
            {
                if (request.Participants.Count == 0 && request.Count == 0)
                {
                    throw new InvalidParamsException($"Barrier '{request.BarrierId}' does not exist yet; the first call names the participants or the count to wait for.", "/participants");
                }

                if (_barriers.Count >= _options.MaxBarriers)
                {
                    throw new ResourceExhaustedException($"{_options.MaxBarriers} barriers are alive; complete or let some expire first.");
                }

                state = new BarrierState(request.BarrierId, Distinct(request.Participants), (int)request.Count, request.ThreadId);
                _barriers[request.BarrierId] = state;
            }
            else if (!state.SameExpectation(request))
            {
                throw new InvalidParamsException($"Barrier '{request.BarrierId}' already waits for {state.Describe()}; a call may repeat that or name nothing.", request.Count != 0 ? "/count" : "/participants");
            }

            if (!request.Observe && state.Named.Count != 0 && !state.Named.Contains(participant, StringComparer.Ordinal))
            {
                throw new InvalidParamsException($"'{participant}' is not a participant of barrier '{request.BarrierId}' ({state.Describe()}); arrive as one of them or observe.", "/participant");
            }

            state.Extend(now + timeout);
            if (!request.Observe)
            {
                arrivedNow = state.Arrive(participant);
            }

            if (state.IsComplete)
            {
                completedNow = state.Complete();
                _barriers.TryRemove(new KeyValuePair<string, BarrierState>(state.Id, state));
            }
            else if (!request.NoWait)
            {
                state.Waiters++;
            }
        }

        var threadId = request.ThreadId.Length != 0 ? request.ThreadId : state.ThreadId;
        if (arrivedNow)
        {
            await RecordAsync("barrier", "arrived", threadId, state.Id, participant, w =>
            {
                w.WriteString("participant", participant);
                w.WriteNumber("arrived", state.Snapshot().Arrived.Length);
                w.WriteNumber("expected", state.Expected);
            }).ConfigureAwait(false);
        }

        if (completedNow)
        {
            await RecordBarrierEndAsync(state, threadId, caller, CollabOutcome.Completed).ConfigureAwait(false);
        }

        if (state.IsComplete || request.NoWait)
        {
            return state.ToResult(state.IsComplete ? CollabOutcome.Completed : CollabOutcome.Pending, Elapsed(start));
        }

        var outcome = CollabOutcome.Completed;
        try
        {
            await state.Completed.WaitAsync(timeout, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            outcome = CollabOutcome.Timeout;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            outcome = CollabOutcome.Cancelled;
        }
        finally
        {
            lock (_barrierGate)
            {
                state.Waiters--;
            }
        }

        if (outcome == CollabOutcome.Completed)
        {
            return state.ToResult(CollabOutcome.Completed, Elapsed(start));
        }

        var result = state.ToResult(outcome, Elapsed(start));
        CollabLog.Ended(_logger, "barrier", state.Id, participant, outcome.ToString(), result.ElapsedMs);
        await RecordAsync("barrier", OutcomeName(outcome), threadId, state.Id, caller, w =>
        {
            w.WriteString("waiter", participant);
            WriteArray(w, "arrived", result.Arrived);
            WriteArray(w, "missing", result.Missing);
            w.WriteNumber("expected", result.Expected);
        }).ConfigureAwait(false);
        return result;
    }

    private ValueTask RecordBarrierEndAsync(BarrierState state, string threadId, string caller, CollabOutcome outcome)
    {
        var snapshot = state.ToResult(outcome, 0);
        CollabLog.Ended(_logger, "barrier", state.Id, caller, outcome.ToString(), 0);
        return RecordAsync("barrier", OutcomeName(outcome), threadId, state.Id, caller, w =>
        {
            WriteArray(w, "arrived", snapshot.Arrived);
            WriteArray(w, "missing", snapshot.Missing);
            w.WriteNumber("expected", snapshot.Expected);
        });
    }

    /// <summary>Forgets barriers nobody waits for whose longest deadline has passed. Under the gate.</summary>
    private void Sweep(DateTimeOffset now)
    {
        foreach (var (id, state) in _barriers)
        {
            if (state.Waiters == 0 && state.Expires <= now)
            {
                _barriers.TryRemove(id, out _);
            }
        }
    }

    /// <summary>The barriers alive now: id, arrivals and the expectation (for diagnostics and tests).</summary>
    public IReadOnlyList<BarrierResult> Barriers()
    {
        lock (_barrierGate)
        {
            return _barriers.Values.Select(s => s.ToResult(CollabOutcome.Pending, 0)).ToArray();
        }
    }
}
