using Grpc.Core;
using Grpc.Net.Client;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// The life of a connection: RegisterAgent and the EventStream of each session (one at a time),
/// the status machine, reconnection with jittered exponential backoff after a stream breaks, the
/// settle after a bridge restart, and the ordering that puts subscriptions in place before anything
/// queued is written. Also the close: pushed calls finish, the queue drains, the stream half-closes.
/// </summary>
internal sealed class Supervisor
{
    private const string SessionHeader = "loom-session-id";
    private const int FrameHeadroomBytes = 64 * 1024;

    private readonly ConnectionState _state;
    private readonly Uri _address;
    private readonly GrpcChannel _channel;
    private readonly bool _ownsChannel;
    private readonly CallInvoker _invoker;
    private readonly Bridge.BridgeClient _bridge;
    private readonly Writer _writer;
    private readonly Reader _reader;
    private readonly Heartbeat _heartbeat;
    private readonly SubscriptionRouter _router;
    private readonly PendingCalls _pending;
    private readonly CallRunner _calls;
    private readonly DurableStreams _durable;
    private readonly ReplyRouter _replies;
    private readonly TestGate _gate;
    private StreamSession? _session;
    private Task _loop = Task.CompletedTask;
    private Limits _limits = new();
    private int _generation;
    private int _started;
    private volatile bool _killed;
    private long _reconnects;
    private long? _lostAt;

    public Supervisor(ConnectionState state, Uri address, GrpcChannel channel, bool ownsChannel, CallInvoker invoker, Writer writer, Reader reader, Heartbeat heartbeat,
        SubscriptionRouter router, PendingCalls pending, CallRunner calls, DurableStreams durable, ReplyRouter replies, TestGate gate)
    {
        _state = state;
        _address = address;
        _channel = channel;
        _ownsChannel = ownsChannel;
        _invoker = invoker;
        _bridge = new Bridge.BridgeClient(invoker);
        _writer = writer;
        _reader = reader;
        _heartbeat = heartbeat;
        _router = router;
        _pending = pending;
        _calls = calls;
        _durable = durable;
        _replies = replies;
        _gate = gate;
    }

    public StreamSession? Session => Volatile.Read(ref _session);

    public Limits Limits => Volatile.Read(ref _limits);

    public long Reconnects => Interlocked.Read(ref _reconnects);

    private LoomConnectionOptions Options => _state.Options;

    /// <summary>Registers and opens the first stream; then supervises it (and its successors) on a task of its own.</summary>
    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _started, 1) == 1)
        {
            throw new InvalidOperationException("ConnectAsync was already called on this connection; it reconnects by itself.");
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _state.Lifetime.Token);
        StreamSession session;
        try
        {
            session = await EstablishAsync(linked.Token);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex)
        {
            throw ErrorMapping.FromTransport(ex, _address);
        }

        OnConnected(session);
        _loop = Task.Run(() => SuperviseAsync(session), CancellationToken.None);
    }

    /// <summary>Connected (again): subscriptions added meanwhile and consumers go out before anything else queued after them.</summary>
    private void OnConnected(StreamSession session)
    {
        _state.SetStatus(ConnectionStatus.Connected, null, session.SessionId);
        _router.SubscribeMissing();
        _durable.AttachAll();
    }

    private async Task<StreamSession> EstablishAsync(CancellationToken cancellationToken)
    {
        var time = _state.Time;
        // The registration carries every subscription and capability, and its answer confirms them
        // (with the subscriptions' ids): all are in place before anything queued is written. One
        // added while the registration was on its way is carried by one more registration.
        var response = await _bridge.RegisterAgentAsync(BuildRegistration(), deadline: (time.GetUtcNow() + Options.ConnectTimeout).UtcDateTime, cancellationToken: cancellationToken);
        var bridgeKnewUs = response.Reconnected;
        for (var round = 1; round < 3 && !_router.CoveredBy(response); round++)
        {
            response = await _bridge.RegisterAgentAsync(BuildRegistration(), deadline: (time.GetUtcNow() + Options.ConnectTimeout).UtcDateTime, cancellationToken: cancellationToken);
        }

        var limits = response.Limits ?? new Limits();
        Volatile.Write(ref _limits, limits);
        var maxMessages = limits.MaxBatchMessages > 0 ? (int)Math.Min(limits.MaxBatchMessages, (uint)Math.Max(1, Options.MaxFrameMessages)) : Math.Max(1, Options.MaxFrameMessages);
        var maxBytes = Math.Max(1024, Options.MaxFrameBytes);
        if (limits.MaxMessageBytes > FrameHeadroomBytes * 2)
        {
            maxBytes = (int)Math.Min(maxBytes, limits.MaxMessageBytes - FrameHeadroomBytes);
        }

        var interval = response.HeartbeatIntervalMs > 0 ? TimeSpan.FromMilliseconds(response.HeartbeatIntervalMs) : TimeSpan.FromSeconds(5);
        var stale = _router.Bind(response);
        var session = new StreamSession(Interlocked.Increment(ref _generation), response, interval, maxMessages, maxBytes, time.GetTimestamp());
        try
        {
            // Frames are read one at a time and only their envelopes are kept, so delivery wrappers are reused.
            var eventStream = new Method<FrameEncoder, ServerFrame>(MethodType.DuplexStreaming, Bridge.Descriptor.FullName, "EventStream", FrameMarshallers.Encoded, FrameMarshallers.Decoded(new ServerFrameDecoder()));
            session.Call = _invoker.AsyncDuplexStreamingCall(eventStream, null, new CallOptions(new Metadata { { SessionHeader, response.SessionId } }, cancellationToken: session.Token));
            await session.Call.ResponseHeadersAsync.WaitAsync(Options.ConnectTimeout, time, cancellationToken);
        }
        catch
        {
            await CloseSessionAsync(session);
            throw;
        }

        session.Touch(time.GetTimestamp());
        var lostAt = _lostAt;
        _lostAt = null;
        // Below the bridge's expiry (3 silent heartbeat intervals): nothing, not even a ping, is written meanwhile.
        if (lostAt is { } lost && !bridgeKnewUs && TimeSpan.FromTicks(Math.Min(RestartSettle(time.GetElapsedTime(lost)).Ticks, (interval * 2).Ticks)) is var settle && settle > TimeSpan.Zero)
        {
            // The bridge restarted (or dropped this agent): other agents' subscriptions are gone
            // until they register again, and what this one queued meanwhile would reach nobody.
            Log.HoldingAfterRestart(_state.Logger, _state.AgentId, _writer.Depth, (long)settle.TotalMilliseconds);
            session.HoldFor(settle, time);
        }

        Volatile.Write(ref _session, session);
        session.ReadLoop = Task.Run(() => _reader.RunAsync(session), CancellationToken.None);
        session.WriteLoop = Task.Run(() => _writer.RunAsync(session), CancellationToken.None);
        session.HeartbeatLoop = Task.Run(() => _heartbeat.RunAsync(session), CancellationToken.None);

        // Subscriptions the bridge still holds that this agent dropped meanwhile.
        foreach (var id in stale)
        {
            _writer.TryWrite(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = _state.Ids.Next(), SubscriptionId = id } });
        }

        Log.Registered(_state.Logger, _state.AgentId, response.SessionId, response.Reconnected, response.Subscriptions.Count, _calls.Descriptors.Count, (long)interval.TotalMilliseconds);
        return session;
    }

    private RegisterAgentRequest BuildRegistration()
    {
        var request = new RegisterAgentRequest
        {
            AgentId = _state.AgentId,
            Name = Options.Name,
            Namespace = Options.Namespace,
            Sdk = Options.Sdk,
            HeartbeatIntervalMs = Options.HeartbeatInterval is { } hb ? (uint)Math.Clamp(hb.TotalMilliseconds, 1, uint.MaxValue) : 0,
        };
        if (Options.Metadata is not null)
        {
            foreach (var (key, value) in Options.Metadata)
            {
                request.Metadata[key] = value;
            }
        }

        _router.AddTo(request);
        request.Capabilities.Add(_calls.Descriptors);
        return request;
    }

    /// <summary>
    /// How long to hold the queue after a bridge restart: a peer with the same reconnect settings,
    /// disconnected at the same moment, retries within its current delay; the delays double, so that
    /// is at most about the outage plus the first delay (twice the outage to cover the jitter of the
    /// delays before), capped at the largest delay, plus the jitter of the delay itself.
    /// </summary>
    private TimeSpan RestartSettle(TimeSpan outage)
    {
        if (Options.RestartSettle is { } configured)
        {
            return configured > TimeSpan.Zero ? configured : TimeSpan.Zero;
        }

        var initial = Options.ReconnectInitialDelay;
        var largest = Options.ReconnectMaxDelay > initial ? Options.ReconnectMaxDelay : initial;
        var delay = (outage * 2) + initial;
        return ((delay < largest ? delay : largest) * (1 + Options.ReconnectJitter)) + TimeSpan.FromMilliseconds(50);
    }

    private async Task SuperviseAsync(StreamSession first)
    {
        var session = first;
        var lifetime = _state.Lifetime;
        try
        {
            while (true)
            {
                var error = await session.Ended;
                await CloseSessionAsync(session);
                if (_state.Closing || lifetime.IsCancellationRequested)
                {
                    return;
                }

                var why = error switch
                {
                    null => "the bridge ended the stream",
                    RpcException status => $"{status.StatusCode}: {status.Status.Detail}",
                    _ => error.Message,
                };
                _lostAt = _state.Time.GetTimestamp();
                Log.StreamLost(_state.Logger, _state.AgentId, why);
                _state.SetStatus(ConnectionStatus.Reconnecting, error, "");
                OnStreamLost(session.Generation, ErrorMapping.ConnectionLost(why));

                var attempt = 0;
                while (true)
                {
                    var delay = Backoff.Delay(attempt, Options.ReconnectInitialDelay, Options.ReconnectMaxDelay, Options.ReconnectJitter);
                    await Task.Delay(delay, _state.Time, lifetime.Token);
                    try
                    {
                        session = await EstablishAsync(lifetime.Token);
                        break;
                    }
                    catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        attempt++;
                        Log.ReconnectFailed(_state.Logger, _state.AgentId, attempt, (long)delay.TotalMilliseconds, ErrorMapping.FromTransport(ex, _address).Message);
                    }
                }

                if (_state.Closing)
                {
                    session.Cancel();
                    await CloseSessionAsync(session);
                    return;
                }

                Interlocked.Increment(ref _reconnects);
                OnConnected(session);
            }
        }
        catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
        {
            // Disposed while waiting to reconnect.
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.SupervisorFailed(_state.Logger, _state.AgentId, ex);
        }
    }

    private async Task CloseSessionAsync(StreamSession session)
    {
        session.Cancel();
        if (!session.TryBeginClose())
        {
            return;
        }

        try
        {
            await Task.WhenAll(session.ReadLoop, session.WriteLoop, session.HeartbeatLoop).WaitAsync(TimeSpan.FromSeconds(5), _state.Time);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            Log.LoopsDidNotStop(_state.Logger, _state.AgentId);
        }

        if (session.Call is { } call)
        {
            // Cancels the call if it is still open; the stream is gone either way.
            call.Dispose();
        }
    }

    /// <summary>A broken stream: what waited on it fails (retryable), calls pushed on it stop, subscriptions wait for the next registration.</summary>
    private void OnStreamLost(int generation, LoomException error)
    {
        _pending.FailAll(error);
        _replies.FailAll(error);
        _calls.CancelUpTo(generation);
        _router.Unbind();
    }

    /// <summary>
    /// Closes within <see cref="LoomConnectionOptions.DisposeTimeout"/>: pushed calls in flight
    /// finish, queued messages are written, then the stream is half-closed. What still waits fails with CANCELLED.
    /// </summary>
    public async ValueTask CloseAsync()
    {
        var time = _state.Time;
        var started = time.GetTimestamp();
        TimeSpan Remaining()
        {
            var left = Options.DisposeTimeout - time.GetElapsedTime(started);
            return left > TimeSpan.Zero ? left : TimeSpan.Zero;
        }

        _state.Closing = true;
        var session = Volatile.Read(ref _session);
        var graceful = !_killed && !_gate.IsFrozen && session is not null && _state.IsConnected;
        if (graceful)
        {
            try
            {
                // 1. Calls this agent is answering finish, so their results go out.
                while (!_calls.IsIdle && Remaining() > TimeSpan.Zero && !session!.Ended.IsCompleted)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(5), time);
                }

                // 2. The write loop drains the queue (held or not), then half-closes.
                session!.Release();
                _writer.Complete();
                await session!.WriteLoop.WaitAsync(Remaining(), time);

                // 3. The bridge flushes what it holds for us and ends the stream with OK.
                await session.Ended.WaitAsync(Remaining(), time);
            }
            catch (TimeoutException)
            {
                Log.DisposeTimedOut(_state.Logger, _state.AgentId, (long)Options.DisposeTimeout.TotalMilliseconds);
            }
        }

        _writer.Complete();
        await _state.Lifetime.CancelAsync();
        session?.Cancel();
        try
        {
            await _loop.WaitAsync(TimeSpan.FromSeconds(5), time);
        }
        catch (TimeoutException)
        {
            Log.LoopsDidNotStop(_state.Logger, _state.AgentId);
        }

        if (session is not null)
        {
            await CloseSessionAsync(session);
        }

        // What the write loop never took: the publisher learns of it here, not from silence.
        _writer.DrainUnsent();
        OnStreamLost(int.MaxValue, new LoomException(ErrorCode.Cancelled, "The connection was closed."));
        await _router.StopAllAsync(Remaining());
        if (_ownsChannel)
        {
            _channel.Dispose();
        }

        _state.SetStatus(ConnectionStatus.Closed, null, "");
        _state.CompleteChanges();
    }

    /// <summary>Test hook: ends the stream and the TCP connection abruptly, without a half-close, as a killed process would. No reconnect.</summary>
    public void Kill()
    {
        _killed = true;
        _state.Closing = true;
        Volatile.Read(ref _session)?.Call?.Dispose();
        if (_ownsChannel)
        {
            _channel.Dispose();
        }

        _state.Lifetime.Cancel();
        _state.SetStatus(ConnectionStatus.Closed, new LoomException(ErrorCode.Unavailable, "Killed by a test."), "");
        OnStreamLost(int.MaxValue, new LoomException(ErrorCode.Unavailable, "The connection was killed."));
    }

    /// <summary>Test hook: breaks the current stream (a network blip); the connection reconnects.</summary>
    public void BreakStream() => Volatile.Read(ref _session)?.Call?.Dispose();
}
