using System.Threading.Channels;
using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// The bounded outbound queue and the single write loop of a stream: everything sent goes through
/// the queue; the loop drains what is pending into one frame per write (bounded by the session's
/// message and byte limits). Calls and memory requests whose waiter gave up are not sent.
/// </summary>
internal sealed class Writer
{
    private readonly ConnectionState _state;
    private readonly PendingCalls _pending;
    private readonly TestGate _gate;
    private readonly Channel<ClientMessage> _outbound;
    private long _lastWriteTimestamp;
    private long _framesSent;
    private long _messagesSent;
    private long _lostOnBreak;
    private long _unsentOnClose;

    public Writer(ConnectionState state, PendingCalls pending, TestGate gate)
    {
        _state = state;
        _pending = pending;
        _gate = gate;
        _outbound = Channel.CreateBounded<ClientMessage>(new BoundedChannelOptions(Math.Max(16, state.Options.OutboundQueueCapacity))
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public long FramesSent => Interlocked.Read(ref _framesSent);

    public long MessagesSent => Interlocked.Read(ref _messagesSent);

    public long LostOnBreak => Interlocked.Read(ref _lostOnBreak);

    public long UnsentOnClose => Interlocked.Read(ref _unsentOnClose);

    public int Depth => _outbound.Reader.Count;

    /// <summary>When the last frame was written (for the heartbeat: ping only a quiet stream).</summary>
    public long LastWriteTimestamp => Volatile.Read(ref _lastWriteTimestamp);

    /// <summary>Queues without waiting; false when the queue is full or closed.</summary>
    public bool TryWrite(ClientMessage message) => _outbound.Writer.TryWrite(message);

    /// <summary>Queues, waiting while the queue is full.</summary>
    /// <exception cref="ObjectDisposedException">The connection is closed.</exception>
    public ValueTask EnqueueAsync(ClientMessage message, CancellationToken cancellationToken) =>
        _outbound.Writer.TryWrite(message) ? ValueTask.CompletedTask : EnqueueSlowAsync(message, cancellationToken);

    private async ValueTask EnqueueSlowAsync(ClientMessage message, CancellationToken cancellationToken)
    {
        try
        {
            await _outbound.Writer.WriteAsync(message, cancellationToken);
        }
        catch (ChannelClosedException ex)
        {
            throw new ObjectDisposedException("The connection is closed.", ex);
        }
    }

    /// <summary>No more messages: the write loop writes what is queued, then half-closes.</summary>
    public void Complete() => _outbound.Writer.TryComplete();

    /// <summary>At close: empties the queue, counting (and logging) what the write loop never took.</summary>
    public void DrainUnsent()
    {
        long unsent = 0;
        while (_outbound.Reader.TryRead(out var left))
        {
            // Calls and memory requests are not counted: their waiters fail with CANCELLED.
            if (left.KindCase is not (ClientMessage.KindOneofCase.Heartbeat or ClientMessage.KindOneofCase.Call or ClientMessage.KindOneofCase.Memory))
            {
                unsent++;
            }
        }

        if (unsent > 0)
        {
            Interlocked.Add(ref _unsentOnClose, unsent);
            Log.UnsentOnClose(_state.Logger, _state.AgentId, unsent);
        }
    }

    /// <summary>The write loop of one session; ends when the session does (or half-closes when the queue is completed).</summary>
    public async Task RunAsync(StreamSession session)
    {
        var reader = _outbound.Reader;
        var call = session.Call!;
        var token = session.Token;
        var time = _state.Time;
        var taken = 0;
        var encoder = new FrameEncoder(); // each envelope sized and written once
        try
        {
            if (session.Held)
            {
                await session.Released.WaitAsync(token);
            }

            while (true)
            {
                if (!await reader.WaitToReadAsync(token))
                {
                    // DisposeAsync completed the queue and everything in it is written: half-close,
                    // which the bridge takes as the agent leaving.
                    await call.RequestStream.CompleteAsync().WaitAsync(_state.Options.DisposeTimeout, time, token);
                    return;
                }

                if (_gate.Frozen is { } frozen)
                {
                    await frozen.WaitAsync(token);
                    continue;
                }

                var bytes = 0;
                try
                {
                    while (encoder.Count < session.MaxFrameMessages && reader.TryPeek(out var next))
                    {
                        var size = EstimateSize(next);
                        if (encoder.Count > 0 && bytes + size > session.MaxFrameBytes)
                        {
                            break;
                        }

                        reader.TryRead(out _);
                        if (IsStale(next))
                        {
                            continue;
                        }

                        taken++; // off the queue: lost if the frame is not written
                        if (next.KindCase == ClientMessage.KindOneofCase.Publish)
                        {
                            encoder.AddPublish(next.Publish);
                        }
                        else
                        {
                            encoder.AddMessage(next);
                        }

                        bytes += size;
                    }

                    var count = encoder.Count;
                    if (count == 0)
                    {
                        continue;
                    }

                    await call.RequestStream.WriteAsync(encoder, token);
                    taken = 0;
                    Interlocked.Increment(ref _framesSent);
                    Interlocked.Add(ref _messagesSent, count);
                }
                finally
                {
                    encoder.Reset();
                }

                Volatile.Write(ref _lastWriteTimestamp, time.GetTimestamp());
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The session ended.
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            session.End(ex);
        }
        finally
        {
            if (taken > 0)
            {
                Interlocked.Add(ref _lostOnBreak, taken);
                Log.LostOnBreak(_state.Logger, _state.AgentId, taken);
            }
        }
    }

    private static int EstimateSize(ClientMessage message) => message.KindCase switch
    {
        ClientMessage.KindOneofCase.Publish => message.Publish.Payload.Length + message.Publish.Topic.Length + message.Publish.ReplyTo.Length
            + message.Publish.CorrelationId.Length + message.Publish.Id.Length + (message.Publish.Headers.Count * 64) + 64,
        ClientMessage.KindOneofCase.Call => message.Call.InputJson.Length + message.Call.Capability.Length + 128,
        ClientMessage.KindOneofCase.Result => message.Result.OutputJson.Length + (message.Result.Error?.Message.Length ?? 0) + 96,
        ClientMessage.KindOneofCase.Heartbeat => 24,
        _ => message.CalculateSize() + 8,
    };

    /// <summary>A call or memory request whose waiter gave up (timeout, cancel, broken stream) need not be sent.</summary>
    private bool IsStale(ClientMessage message) => message.KindCase switch
    {
        ClientMessage.KindOneofCase.Call => !_pending.Contains(message.Call.CallId),
        ClientMessage.KindOneofCase.Memory => !_pending.Contains(message.Memory.CorrelationId),
        _ => false,
    };
}
