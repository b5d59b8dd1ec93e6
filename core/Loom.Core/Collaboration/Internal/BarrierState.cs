using Loom.Protocol.V1;

namespace Loom.Core.Collaboration.Internal;

/// <summary>One barrier: who is expected, who arrived (in order), and the waiters' completion.</summary>
internal sealed class BarrierState(string id, List<string> named, int count, string threadId)
{
    private readonly List<string> _arrived = [];
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Id { get; } = id;

    public List<string> Named { get; } = named;

    public int Count { get; } = count;

    public string ThreadId { get; } = threadId;

    /// <summary>Calls waiting now (under the coordinator's barrier gate).</summary>
    public int Waiters { get; set; }

    /// <summary>When an unwaited barrier may be forgotten: the latest deadline given to it.</summary>
    public DateTimeOffset Expires { get; private set; }

    public Task Completed => _completed.Task;

    public int Expected => Named.Count != 0 ? Named.Count : Count;

    public bool IsComplete
    {
        get
        {
            lock (_arrived)
            {
                return _completed.Task.IsCompleted
                    || (Named.Count != 0 ? Named.TrueForAll(_arrived.Contains) : _arrived.Count >= Count);
            }
        }
    }

    public void Extend(DateTimeOffset deadline)
    {
        if (deadline > Expires)
        {
            Expires = deadline;
        }
    }

    /// <summary>Records an arrival; false when this participant had already arrived.</summary>
    public bool Arrive(string participant)
    {
        lock (_arrived)
        {
            if (_arrived.Contains(participant, StringComparer.Ordinal))
            {
                return false;
            }

            _arrived.Add(participant);
            return true;
        }
    }

    /// <summary>Releases the waiters; true the first time.</summary>
    public bool Complete() => _completed.TrySetResult();

    public bool SameExpectation(BarrierRequest request)
    {
        if (request.Participants.Count == 0 && request.Count == 0)
        {
            return true;
        }

        if (Named.Count != 0)
        {
            var given = request.Participants.Distinct(StringComparer.Ordinal).ToHashSet(StringComparer.Ordinal);
            return request.Count == 0 && given.SetEquals(Named);
        }

        return request.Participants.Count == 0 && request.Count == Count;
    }

    public string Describe() => Named.Count != 0 ? $"participants {string.Join(", ", Named)}" : $"{Count} arrivals";

    public (string[] Arrived, string[] Missing) Snapshot()
    {
        lock (_arrived)
        {
            var arrived = _arrived.ToArray();
            var missing = Named.Where(n => !_arrived.Contains(n, StringComparer.Ordinal)).ToArray();
            return (arrived, missing);
        }
    }

    public BarrierResult ToResult(CollabOutcome outcome, uint elapsedMs)
    {
        var (arrived, missing) = Snapshot();
        var result = new BarrierResult
        {
            BarrierId = Id,
            Outcome = outcome,
            Expected = (uint)Expected,
            ElapsedMs = elapsedMs,
        };
        result.Arrived.Add(arrived);
        result.Missing.Add(missing);
        return result;
    }
}
