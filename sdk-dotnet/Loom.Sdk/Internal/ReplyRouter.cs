using System.Collections.Concurrent;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>
/// Request/reply over pub/sub: every agent listens on its inbox <c>_inbox.&lt;agent&gt;.&gt;</c>; a
/// request carries <c>reply_to = _inbox.&lt;agent&gt;.&lt;id&gt;</c> and a fresh correlation id; the reply
/// echoes the correlation id. Replies nobody waits for any more are dropped and counted.
/// </summary>
internal sealed class ReplyRouter(string agentId, IdGenerator ids, TimeProvider time)
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<Envelope>> _pending = new(StringComparer.Ordinal);
    private long _lateReplies;

    public string InboxPrefix { get; } = "_inbox." + InboxToken(agentId);

    public string InboxPattern => InboxPrefix + ".>";

    public long LateReplies => Interlocked.Read(ref _lateReplies);

    public int Pending => _pending.Count;

    /// <summary>A topic token for an agent id (dots would add tokens).</summary>
    public static string InboxToken(string agentId) => agentId.Replace('.', '_');

    /// <summary>Prepares the request envelope and registers the waiter.</summary>
    public TaskCompletionSource<Envelope> Begin(Envelope request)
    {
        var id = ids.Next();
        request.CorrelationId = id;
        request.ReplyTo = InboxPrefix + "." + id;
        var tcs = new TaskCompletionSource<Envelope>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        return tcs;
    }

    public async Task<Envelope> AwaitAsync(Envelope request, TaskCompletionSource<Envelope> tcs, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            return await tcs.Task.WaitAsync(timeout, time, cancellationToken);
        }
        catch (TimeoutException ex)
        {
            throw new LoomTimeoutException($"No reply to the request on '{request.Topic}' within {timeout.TotalMilliseconds:0} ms.", ex);
        }
        finally
        {
            _pending.TryRemove(request.CorrelationId, out _);
        }
    }

    public void Abandon(Envelope request) => _pending.TryRemove(request.CorrelationId, out _);

    /// <summary>Registers the request, publishes it with <paramref name="publish"/>, and waits for its reply.</summary>
    public async Task<Envelope> RequestAsync(Envelope request, Func<Envelope, CancellationToken, ValueTask> publish, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        var waiter = Begin(request);
        try
        {
            await publish(request, cancellationToken);
        }
        catch
        {
            Abandon(request);
            throw;
        }

        return await AwaitAsync(request, waiter, timeout, cancellationToken);
    }

    /// <summary>Completes the waiter of a reply delivered to the inbox; false (and counted) when none waits.</summary>
    public bool Complete(Envelope reply)
    {
        var id = reply.CorrelationId;
        if (string.IsNullOrEmpty(id) && reply.Topic.StartsWith(InboxPrefix + ".", StringComparison.Ordinal))
        {
            id = reply.Topic[(InboxPrefix.Length + 1)..];
        }

        if (!string.IsNullOrEmpty(id) && _pending.TryRemove(id, out var tcs))
        {
            tcs.TrySetResult(reply);
            return true;
        }

        Interlocked.Increment(ref _lateReplies);
        return false;
    }

    public void FailAll(Exception error)
    {
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var tcs))
            {
                tcs.TrySetException(error);
            }
        }
    }
}
