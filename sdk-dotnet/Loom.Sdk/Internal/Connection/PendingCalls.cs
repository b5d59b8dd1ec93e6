using System.Collections.Concurrent;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// The correlation table of requests sent on the stream that await their answer (calls, memory,
/// subscribe/unsubscribe acks, publish acks, consumer and stream replies): the waiter applies the
/// deadline; a broken stream fails them all with a retryable UNAVAILABLE.
/// </summary>
internal sealed class PendingCalls(ConnectionState state)
{
    private readonly ConcurrentDictionary<string, PendingOperation> _pending = new(StringComparer.Ordinal);
    private long _lateResponses;

    /// <summary>Set once by the facade (the writer is built after this table).</summary>
    public Writer Writer { get; set; } = null!;

    public long LateResponses => Interlocked.Read(ref _lateResponses);

    public bool Contains(string correlationId) => _pending.ContainsKey(correlationId);

    public void Add(string correlationId, PendingOperation op) => _pending[correlationId] = op;

    public bool TryRemove(string correlationId, out PendingOperation op) => _pending.TryRemove(correlationId, out op!);

    /// <summary>Completes the waiter of <paramref name="correlationId"/>; an answer nobody waits for is counted.</summary>
    public void Complete(string correlationId, ServerMessage message)
    {
        if (_pending.TryRemove(correlationId, out var op))
        {
            op.TrySetResult(message);
        }
        else
        {
            Interlocked.Increment(ref _lateResponses);
            Log.LateResponse(state.Logger, state.AgentId, message.KindCase.ToString(), correlationId);
        }
    }

    /// <summary>Fails every waiter (a broken stream or a closed connection).</summary>
    public void FailAll(LoomException error)
    {
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var op))
            {
                op.TrySetException(error);
            }
        }
    }

    /// <summary>
    /// Queues <paramref name="message"/> and waits for the answer with the same id. Fails at once
    /// with UNAVAILABLE when not connected; <paramref name="onTimeout"/> names what timed out.
    /// </summary>
    public async Task<ServerMessage> SendAndWaitAsync(PendingKind kind, string correlationId, ClientMessage message, TimeSpan timeout, Func<LoomException> onTimeout, CancellationToken cancellationToken)
    {
        var status = state.Status;
        if (status != ConnectionStatus.Connected)
        {
            throw ErrorMapping.NotConnected(status);
        }

        var op = new PendingOperation(kind);
        if (!_pending.TryAdd(correlationId, op))
        {
            throw new InvalidParamsException($"Id '{correlationId}' is already in flight; use a unique id per request.", "/call_id");
        }

        try
        {
            // A stream that broke between the check above and the add has already failed what was pending.
            status = state.Status;
            if (status != ConnectionStatus.Connected)
            {
                throw ErrorMapping.NotConnected(status);
            }

            await Writer.EnqueueAsync(message, cancellationToken);
            return await op.Task.WaitAsync(timeout, state.Time, cancellationToken);
        }
        catch (TimeoutException ex)
        {
            _pending.TryRemove(correlationId, out _);
            var error = onTimeout();
            throw new LoomTimeoutException(error.Message, ex);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            if (_pending.TryRemove(correlationId, out _) && kind == PendingKind.Call)
            {
                Writer.TryWrite(new ClientMessage { Cancel = new CancelCall { CallId = correlationId } });
            }

            throw;
        }
        finally
        {
            _pending.TryRemove(correlationId, out _);
        }
    }
}
