using System.Text.Json;
using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Core.Collaboration.Internal;

/// <summary>
/// The join of one gather: replies by responder (the first counts, later ones are duplicates),
/// and whether the strategy is satisfied, or can no longer be.
/// </summary>
internal sealed class JoinState
{
    private readonly GatherRequest _request;
    private readonly List<string> _known;
    private readonly HashSet<string> _seen = new(StringComparer.Ordinal);
    private readonly List<Reply> _replies = [];
    private readonly List<string> _answered = [];
    private readonly List<string> _failed = [];
    private readonly List<string> _timedOut = [];
    private readonly Dictionary<JsonElement, List<string>> _votes = new(JsonValueComparer.Instance);
    private readonly int _quorum;

    // Who may count: the named agents (any strategy), or for MAJORITY the known responders too. A reply from
    // anyone else (an agent id made up to sway a vote) is ignored.
    private readonly HashSet<string>? _eligible;
    private JsonElement? _agreed;
    private List<string>? _agreeing;

    public JoinState(GatherRequest request, List<string> known)
    {
        _request = request;
        _known = known;
        _quorum = request.Quorum != 0 ? (int)request.Quorum : (known.Count / 2) + 1;
        if (request.Agents.Count != 0 || (request.Strategy == JoinStrategy.Majority && known.Count != 0))
        {
            _eligible = new HashSet<string>(known, StringComparer.Ordinal);
        }
    }

    /// <summary>Replies ignored because their responder is not one the gather waits for.</summary>
    public int Ignored { get; private set; }

    public bool Done { get; private set; }

    public CollabOutcome Outcome { get; private set; }

    /// <summary>Adds a reply; false for a duplicate (a responder that already answered).</summary>
    public bool Add(Reply reply)
    {
        if (_eligible is not null && !_eligible.Contains(reply.Responder))
        {
            Ignored++;
            return true;
        }

        if (!_seen.Add(reply.Responder))
        {
            return false;
        }

        _replies.Add(reply);
        if (reply.Error is { } error)
        {
            (error.Code is ErrorCode.Timeout ? _timedOut : _failed).Add(reply.Responder);
        }
        else
        {
            _answered.Add(reply.Responder);
            if (_request.Strategy == JoinStrategy.Majority && JsonPath.Select(reply.Payload.Memory, _request.ComparePointer) is { } value)
            {
                if (!_votes.TryGetValue(value, out var voters))
                {
                    voters = [];
                    _votes[value] = voters;
                }

                voters.Add(reply.Responder);
                if (voters.Count >= _quorum && _agreed is null)
                {
                    _agreed = value;
                    _agreeing = voters;
                }
            }
        }

        Evaluate();
        return true;
    }

    /// <summary>Decides whether the strategy is satisfied, or can no longer be because every known responder is in.</summary>
    public void Evaluate()
    {
        if (Done)
        {
            return;
        }

        var successes = _answered.Count;
        var satisfied = _request.Strategy switch
        {
            JoinStrategy.FirstK => successes >= _request.K,
            JoinStrategy.Majority => _agreed is not null,
            JoinStrategy.All => _timedOut.Count == 0 && _known.TrueForAll(_seen.Contains),
            _ => successes >= 1,
        };
        if (satisfied)
        {
            Done = true;
            Outcome = CollabOutcome.Completed;
            return;
        }

        if (_known.Count != 0 && _known.TrueForAll(_seen.Contains))
        {
            Done = true;
            // A capability call that timed out ran into the operation's own deadline.
            Outcome = _timedOut.Count != 0 ? CollabOutcome.Timeout
                : _request.Strategy == JoinStrategy.Majority ? CollabOutcome.NoQuorum
                : CollabOutcome.Failed;
        }
    }

    public GatherResult ToResult(string opId, CollabOutcome outcome, uint elapsedMs)
    {
        var result = new GatherResult
        {
            OpId = opId,
            Outcome = outcome,
            Expected = (uint)_known.Count,
            ElapsedMs = elapsedMs,
        };
        result.Replies.Add(_replies);
        result.Answered.Add(_answered);
        result.Failed.Add(_failed);
        result.TimedOut.Add(_timedOut);
        result.TimedOut.Add(_known.Where(k => !_seen.Contains(k)));
        if (_request.Strategy == JoinStrategy.Majority)
        {
            result.Quorum = (uint)_quorum;
            if (_agreed is { } agreed)
            {
                result.AgreedValue = ByteString.CopyFromUtf8(agreed.GetRawText());
                result.Agreeing.Add(_agreeing!);
            }
        }

        return result;
    }
}
