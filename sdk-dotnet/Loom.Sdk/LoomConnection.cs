using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf;
using Loom.Core;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Sdk;

/// <summary>
/// One agent's connection to a bridge: RegisterAgent, then one EventStream with one read loop and
/// one write loop. Everything sent goes through one bounded queue; the write loop drains all that
/// is pending into one frame per write. Heartbeats flow both ways; a stream that breaks (or a
/// bridge that goes silent for three intervals) is re-established with jittered exponential
/// backoff, registering again with the same agent id, subscriptions and capabilities. Requests in
/// flight on a broken stream fail with a retryable UNAVAILABLE error; nothing waits forever.
/// </summary>
public sealed partial class LoomConnection : IAsyncDisposable, IAgentTransport
{
    private const string SessionHeader = "loom-session-id";
    private const int FrameHeadroomBytes = 64 * 1024;

    private readonly LoomConnectionOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly GrpcChannel _channel;
    private readonly bool _ownsChannel;
    private readonly CallInvoker _invoker;
    private readonly Bridge.BridgeClient _bridge;
    private readonly Channel<ClientMessage> _outbound;
    private readonly ConcurrentDictionary<string, PendingOperation> _pending = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, InflightCall> _inflight = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LoomCapability> _capabilities = new(StringComparer.Ordinal);
    private readonly List<CapabilityDescriptor> _descriptors = [];
    private readonly Lock _gate = new();
    private readonly List<SubscriptionEntry> _entries = [];
    private readonly ReplyRouter _replies;
    private readonly IdGenerator _ids = new();
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Channel<ConnectionStatusChange> _statusChanges =
        Channel.CreateBounded<ConnectionStatusChange>(new BoundedChannelOptions(64) { FullMode = BoundedChannelFullMode.DropOldest });

    private Dictionary<string, SubscriptionEntry[]> _byBridgeId = new(StringComparer.Ordinal);
    private StreamSession? _session;
    private Task _supervisor = Task.CompletedTask;
    private TaskCompletionSource? _frozen;
    private ConnectionStatus _status = ConnectionStatus.Connecting;
    private Limits _limits = new();
    private int _generation;
    private int _started;
    private int _disposed;
    private volatile bool _closing;
    private volatile bool _killed;
    private long _lastWriteTimestamp;
    private string? _lastValidTopic;
    private ulong _heartbeatSequence;
    private long _framesSent;
    private long _messagesSent;
    private long _framesReceived;
    private long _messagesReceived;
    private long _reconnects;
    private long _unrouted;
    private long _lateResponses;
    private long _publishErrors;
    private long _lostOnBreak;
    private long _unsentOnClose;
    private long? _lostAt;

    /// <summary>Creates a connection; call <see cref="ConnectAsync(CancellationToken)"/> to register and open the stream.</summary>
    /// <param name="address">The bridge's gRPC address, e.g. <c>http://127.0.0.1:7070</c>.</param>
    /// <param name="options">Settings; null for the defaults.</param>
    /// <param name="capabilities">Capabilities this agent provides (registered with every registration).</param>
    public LoomConnection(Uri address, LoomConnectionOptions? options = null, IEnumerable<LoomCapability>? capabilities = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        Address = address;
        _options = options ?? new LoomConnectionOptions();
        _time = _options.TimeProvider ?? TimeProvider.System;
        _logger = _options.LoggerFactory?.CreateLogger<LoomConnection>() ?? (ILogger)NullLogger.Instance;
        AgentId = string.IsNullOrEmpty(_options.AgentId) ? IdGenerator.NewAgentId(_options.Name) : _options.AgentId;
        Namespace = string.IsNullOrEmpty(_options.Namespace) ? "default" : _options.Namespace;
        foreach (var capability in capabilities ?? [])
        {
            ArgumentNullException.ThrowIfNull(capability);
            if (!_capabilities.TryAdd(capability.Descriptor.Name, capability))
            {
                throw new InvalidParamsException($"Capability '{capability.Descriptor.Name}' is given twice; one agent provides each capability once.", "/capabilities");
            }

            _descriptors.Add(capability.Descriptor);
        }

        _outbound = Channel.CreateBounded<ClientMessage>(new BoundedChannelOptions(Math.Max(16, _options.OutboundQueueCapacity))
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _replies = new ReplyRouter(AgentId, _ids, _time);
        var inbox = new SubscriptionEntry(new Subscription { Pattern = _replies.InboxPattern, Qos = QosClass.Normal }, OnInboxDelivery, AgentId, _time, _logger);
        _entries.Add(inbox);
        _ownsChannel = _options.Channel is null;
        _channel = _options.Channel ?? GrpcChannel.ForAddress(ChannelSecurity.Address(address, _options), _options.ChannelOptions ?? ChannelSecurity.Apply(CreateChannelOptions(), address, _options));
        _invoker = _options.Interceptors is { Count: > 0 } interceptors ? _channel.Intercept([.. interceptors]) : _channel.CreateCallInvoker();
        _bridge = new Bridge.BridgeClient(_invoker);
        Collaboration = new Protocol.V1.Collaboration.CollaborationClient(_invoker);
    }

    /// <summary>
    /// The channel options a connection uses by default: messages up to 4 MiB both ways, HTTP/2
    /// keepalive pings every 30 s (10 s to answer) while calls are open, a 10 s connect timeout,
    /// and a further HTTP/2 connection when one runs out of streams. Start from these to share one
    /// channel among many agents (<see cref="LoomConnectionOptions.Channel"/>) or to add TLS and credentials.
    /// </summary>
    public static GrpcChannelOptions CreateChannelOptions() => new()
    {
        MaxReceiveMessageSize = 4 * 1024 * 1024,
        MaxSendMessageSize = 4 * 1024 * 1024,
        HttpHandler = new SocketsHttpHandler
        {
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        },
        DisposeHttpClient = true,
    };

    /// <summary>Creates a connection and connects it (registers and opens the stream).</summary>
    public static async Task<LoomConnection> ConnectAsync(Uri address, LoomConnectionOptions? options = null, IEnumerable<LoomCapability>? capabilities = null, CancellationToken cancellationToken = default)
    {
        var connection = new LoomConnection(address, options, capabilities);
        try
        {
            await connection.ConnectAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>The bridge address.</summary>
    public Uri Address { get; }

    /// <summary>This agent's id (stable across reconnects).</summary>
    public string AgentId { get; }

    /// <summary>This agent's namespace (its default memory namespace).</summary>
    public string Namespace { get; }

    /// <summary>The current session id; empty while not connected.</summary>
    public string SessionId => Status == ConnectionStatus.Connected ? Volatile.Read(ref _session)?.SessionId ?? "" : "";

    /// <summary>The bridge's limits from the last registration.</summary>
    public Limits Limits => Volatile.Read(ref _limits);

    /// <summary>The current status.</summary>
    public ConnectionStatus Status
    {
        get
        {
            lock (_gate)
            {
                return _status;
            }
        }
    }

    /// <summary>Raised on every status change, synchronously on the connection's own task; keep handlers short.</summary>
    public event EventHandler<ConnectionStatusChange>? StatusChanged;

    /// <summary>Status changes as a stream (bounded to the last 64; one reader).</summary>
    public ChannelReader<ConnectionStatusChange> StatusChanges => _statusChanges.Reader;

    /// <summary>Counters since the connection was created.</summary>
    public LoomConnectionStatistics Statistics
    {
        get
        {
            long dropped;
            lock (_gate)
            {
                dropped = _entries.Sum(e => e.Dropped);
            }

            return new LoomConnectionStatistics
            {
                FramesSent = Interlocked.Read(ref _framesSent),
                MessagesSent = Interlocked.Read(ref _messagesSent),
                FramesReceived = Interlocked.Read(ref _framesReceived),
                MessagesReceived = Interlocked.Read(ref _messagesReceived),
                Reconnects = Interlocked.Read(ref _reconnects),
                DeliveriesDropped = dropped,
                DeliveriesUnrouted = Interlocked.Read(ref _unrouted),
                LateReplies = _replies.LateReplies,
                LateResponses = Interlocked.Read(ref _lateResponses),
                PublishErrors = Interlocked.Read(ref _publishErrors),
                LostOnBreak = Interlocked.Read(ref _lostOnBreak),
                UnsentOnClose = Interlocked.Read(ref _unsentOnClose),
                OutboundQueueDepth = _outbound.Reader.Count,
            };
        }
    }

    TimeProvider IAgentTransport.Time => _time;

    internal string InboxPattern => _replies.InboxPattern;

    /// <summary>The client of loom.v1.Collaboration on this connection's channel.</summary>
    internal Protocol.V1.Collaboration.CollaborationClient Collaboration { get; }

    private bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    // -------------------------------------------------------------------------------------------
    // Connecting and reconnecting
    // -------------------------------------------------------------------------------------------

    /// <summary>Registers with the bridge and opens the event stream. Fails with a typed error (UNAVAILABLE when unreachable).</summary>
    public async Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (Interlocked.Exchange(ref _started, 1) == 1)
        {
            throw new InvalidOperationException("ConnectAsync was already called on this connection; it reconnects by itself.");
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
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
            throw ErrorMapping.FromTransport(ex, Address);
        }

        SetStatus(ConnectionStatus.Connected, null, session.SessionId);
        SubscribeMissing();
        AttachConsumers();
        _supervisor = Task.Run(() => SuperviseAsync(session), CancellationToken.None);
    }

    private async Task<StreamSession> EstablishAsync(CancellationToken cancellationToken)
    {
        // The registration carries every subscription and capability, and its answer confirms them
        // (with the subscriptions' ids): all are in place before anything queued is written. One
        // added while the registration was on its way is carried by one more registration.
        var response = await _bridge.RegisterAgentAsync(BuildRegistration(), deadline: (_time.GetUtcNow() + _options.ConnectTimeout).UtcDateTime, cancellationToken: cancellationToken);
        var bridgeKnewUs = response.Reconnected;
        for (var round = 1; round < 3 && !CoversAllEntries(response); round++)
        {
            response = await _bridge.RegisterAgentAsync(BuildRegistration(), deadline: (_time.GetUtcNow() + _options.ConnectTimeout).UtcDateTime, cancellationToken: cancellationToken);
        }

        var limits = response.Limits ?? new Limits();
        Volatile.Write(ref _limits, limits);
        var maxMessages = limits.MaxBatchMessages > 0 ? (int)Math.Min(limits.MaxBatchMessages, (uint)Math.Max(1, _options.MaxFrameMessages)) : Math.Max(1, _options.MaxFrameMessages);
        var maxBytes = Math.Max(1024, _options.MaxFrameBytes);
        if (limits.MaxMessageBytes > FrameHeadroomBytes * 2)
        {
            maxBytes = (int)Math.Min(maxBytes, limits.MaxMessageBytes - FrameHeadroomBytes);
        }

        var interval = response.HeartbeatIntervalMs > 0 ? TimeSpan.FromMilliseconds(response.HeartbeatIntervalMs) : TimeSpan.FromSeconds(5);
        var stale = BindSubscriptions(response);
        var session = new StreamSession(Interlocked.Increment(ref _generation), response, interval, maxMessages, maxBytes, _time.GetTimestamp());
        try
        {
            // Frames are read one at a time and only their envelopes are kept, so delivery wrappers are reused.
            var eventStream = new Method<FrameEncoder, ServerFrame>(MethodType.DuplexStreaming, Bridge.Descriptor.FullName, "EventStream", FrameMarshallers.Encoded, FrameMarshallers.Decoded(new ServerFrameDecoder()));
            session.Call = _invoker.AsyncDuplexStreamingCall(eventStream, null, new CallOptions(new Metadata { { SessionHeader, response.SessionId } }, cancellationToken: session.Token));
            await session.Call.ResponseHeadersAsync.WaitAsync(_options.ConnectTimeout, _time, cancellationToken);
        }
        catch
        {
            await CloseSessionAsync(session);
            throw;
        }

        session.Touch(_time.GetTimestamp());
        var lostAt = _lostAt;
        _lostAt = null;
        // Below the bridge's expiry (3 silent heartbeat intervals): nothing, not even a ping, is written meanwhile.
        if (lostAt is { } lost && !bridgeKnewUs && TimeSpan.FromTicks(Math.Min(RestartSettle(_time.GetElapsedTime(lost)).Ticks, (interval * 2).Ticks)) is var settle && settle > TimeSpan.Zero)
        {
            // The bridge restarted (or dropped this agent): other agents' subscriptions are gone
            // until they register again, and what this one queued meanwhile would reach nobody.
            Log.HoldingAfterRestart(_logger, AgentId, _outbound.Reader.Count, (long)settle.TotalMilliseconds);
            session.HoldFor(settle, _time);
        }

        Volatile.Write(ref _session, session);
        session.ReadLoop = Task.Run(() => ReadLoopAsync(session), CancellationToken.None);
        session.WriteLoop = Task.Run(() => WriteLoopAsync(session), CancellationToken.None);
        session.HeartbeatLoop = Task.Run(() => HeartbeatLoopAsync(session), CancellationToken.None);

        // Subscriptions the bridge still holds that this agent dropped meanwhile.
        foreach (var id in stale)
        {
            _outbound.Writer.TryWrite(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = _ids.Next(), SubscriptionId = id } });
        }

        Log.Registered(_logger, AgentId, response.SessionId, response.Reconnected, response.Subscriptions.Count, _descriptors.Count, (long)interval.TotalMilliseconds);
        return session;
    }

    private RegisterAgentRequest BuildRegistration()
    {
        var request = new RegisterAgentRequest
        {
            AgentId = AgentId,
            Name = _options.Name,
            Namespace = _options.Namespace,
            Sdk = _options.Sdk,
            HeartbeatIntervalMs = _options.HeartbeatInterval is { } hb ? (uint)Math.Clamp(hb.TotalMilliseconds, 1, uint.MaxValue) : 0,
        };
        if (_options.Metadata is not null)
        {
            foreach (var (key, value) in _options.Metadata)
            {
                request.Metadata[key] = value;
            }
        }

        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                if (!request.Subscriptions.Any(entry.SameBridgeSubscription))
                {
                    request.Subscriptions.Add(entry.Spec);
                }
            }
        }

        request.Capabilities.Add(_descriptors);
        return request;
    }

    private bool CoversAllEntries(RegisterAgentResponse response)
    {
        lock (_gate)
        {
            return _entries.TrueForAll(e => response.Subscriptions.Any(e.SameBridgeSubscription));
        }
    }

    /// <summary>
    /// How long to hold the queue after a bridge restart: a peer with the same reconnect settings,
    /// disconnected at the same moment, retries within its current delay; the delays double, so that
    /// is at most about the outage plus the first delay (twice the outage to cover the jitter of the
    /// delays before), capped at the largest delay, plus the jitter of the delay itself.
    /// </summary>
    private TimeSpan RestartSettle(TimeSpan outage)
    {
        if (_options.RestartSettle is { } configured)
        {
            return configured > TimeSpan.Zero ? configured : TimeSpan.Zero;
        }

        var initial = _options.ReconnectInitialDelay;
        var largest = _options.ReconnectMaxDelay > initial ? _options.ReconnectMaxDelay : initial;
        var delay = (outage * 2) + initial;
        return ((delay < largest ? delay : largest) * (1 + _options.ReconnectJitter)) + TimeSpan.FromMilliseconds(50);
    }

    /// <summary>Binds local subscriptions to the ids of a (re-)registration; returns bridge ids nobody here wants.</summary>
    private List<string> BindSubscriptions(RegisterAgentResponse response)
    {
        var stale = new List<string>();
        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                entry.BridgeId = null;
            }

            foreach (var held in response.Subscriptions)
            {
                var wanted = false;
                foreach (var entry in _entries)
                {
                    if (entry.SameBridgeSubscription(held))
                    {
                        entry.BridgeId = held.SubscriptionId;
                        wanted = true;
                    }
                }

                if (!wanted)
                {
                    stale.Add(held.SubscriptionId);
                }
            }

            RebuildRoutesLocked();
        }

        return stale;
    }

    /// <summary>Subscribes what was added while a registration was on its way (called once the status is Connected).</summary>
    private void SubscribeMissing()
    {
        foreach (var entry in EntriesWithoutBridgeId())
        {
            var correlationId = _ids.Next();
            _pending[correlationId] = new PendingOperation(PendingKind.Subscribe, entry);
            _outbound.Writer.TryWrite(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = correlationId, Subscription = entry.Spec } });
        }
    }

    private List<SubscriptionEntry> EntriesWithoutBridgeId()
    {
        lock (_gate)
        {
            var missing = new List<SubscriptionEntry>();
            foreach (var entry in _entries)
            {
                if (entry.BridgeId is null && !missing.Exists(m => m.SameBridgeSubscription(entry.Spec)))
                {
                    missing.Add(entry);
                }
            }

            return missing;
        }
    }

    private void RebuildRoutesLocked()
    {
        var routes = new Dictionary<string, SubscriptionEntry[]>(StringComparer.Ordinal);
        foreach (var entry in _entries)
        {
            if (entry.BridgeId is { } id)
            {
                routes[id] = routes.TryGetValue(id, out var existing) ? [.. existing, entry] : [entry];
            }
        }

        Volatile.Write(ref _byBridgeId, routes);
    }

    private async Task SuperviseAsync(StreamSession first)
    {
        var session = first;
        try
        {
            while (true)
            {
                var error = await session.Ended;
                await CloseSessionAsync(session);
                if (_closing || _lifetime.IsCancellationRequested)
                {
                    return;
                }

                var why = error switch
                {
                    null => "the bridge ended the stream",
                    RpcException status => $"{status.StatusCode}: {status.Status.Detail}",
                    _ => error.Message,
                };
                _lostAt = _time.GetTimestamp();
                Log.StreamLost(_logger, AgentId, why);
                SetStatus(ConnectionStatus.Reconnecting, error, "");
                OnStreamLost(session.Generation, ErrorMapping.ConnectionLost(why));

                var attempt = 0;
                while (true)
                {
                    var delay = Backoff.Delay(attempt, _options.ReconnectInitialDelay, _options.ReconnectMaxDelay, _options.ReconnectJitter);
                    await Task.Delay(delay, _time, _lifetime.Token);
                    try
                    {
                        session = await EstablishAsync(_lifetime.Token);
                        break;
                    }
                    catch (OperationCanceledException) when (_lifetime.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        attempt++;
                        Log.ReconnectFailed(_logger, AgentId, attempt, (long)delay.TotalMilliseconds, ErrorMapping.FromTransport(ex, Address).Message);
                    }
                }

                if (_closing)
                {
                    session.Cancel();
                    await CloseSessionAsync(session);
                    return;
                }

                Interlocked.Increment(ref _reconnects);
                SetStatus(ConnectionStatus.Connected, null, session.SessionId);
                SubscribeMissing();
                AttachConsumers();
            }
        }
        catch (OperationCanceledException) when (_lifetime.IsCancellationRequested)
        {
            // Disposed while waiting to reconnect.
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.SupervisorFailed(_logger, AgentId, ex);
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
            await Task.WhenAll(session.ReadLoop, session.WriteLoop, session.HeartbeatLoop).WaitAsync(TimeSpan.FromSeconds(5), _time);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            Log.LoopsDidNotStop(_logger, AgentId);
        }

        if (session.Call is { } call)
        {
            // Cancels the call if it is still open; the stream is gone either way.
            call.Dispose();
        }
    }

    /// <summary>A broken stream: what waited on it fails (retryable), calls pushed on it stop.</summary>
    private void OnStreamLost(int generation, LoomException error)
    {
        foreach (var id in _pending.Keys)
        {
            if (_pending.TryRemove(id, out var op))
            {
                op.TrySetException(error);
            }
        }

        _replies.FailAll(error);
        foreach (var (id, call) in _inflight)
        {
            if (call.Generation <= generation && _inflight.TryRemove(new KeyValuePair<string, InflightCall>(id, call)))
            {
                call.Cancel();
            }
        }

        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                entry.BridgeId = null;
            }

            RebuildRoutesLocked();
        }
    }

    private void SetStatus(ConnectionStatus status, Exception? error, string sessionId)
    {
        ConnectionStatusChange change;
        lock (_gate)
        {
            if (_status == status || _status == ConnectionStatus.Closed)
            {
                return;
            }

            change = new ConnectionStatusChange(status, _status, error, _time.GetUtcNow(), sessionId);
            _status = status;
        }

        _statusChanges.Writer.TryWrite(change);
        Log.StatusChanged(_logger, AgentId, change.Previous, status);
        try
        {
            StatusChanged?.Invoke(this, change);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.StatusHandlerFailed(_logger, AgentId, ex);
        }
    }

    // -------------------------------------------------------------------------------------------
    // The loops
    // -------------------------------------------------------------------------------------------

    private async Task ReadLoopAsync(StreamSession session)
    {
        var call = session.Call!;
        var token = session.Token;
        try
        {
            while (await call.ResponseStream.MoveNext(token))
            {
                if (Volatile.Read(ref _frozen) is { } frozen)
                {
                    await frozen.Task.WaitAsync(token);
                }

                session.Touch(_time.GetTimestamp());
                var frame = call.ResponseStream.Current;
                Interlocked.Increment(ref _framesReceived);
                Interlocked.Add(ref _messagesReceived, frame.Messages.Count);
                foreach (var message in frame.Messages)
                {
                    await HandleAsync(message, session, token);
                }
            }

            session.End(_closing ? null : new LoomException(ErrorCode.Unavailable, "The bridge ended the stream."));
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            session.End(null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            session.End(ex);
        }
    }

    private async ValueTask HandleAsync(ServerMessage message, StreamSession session, CancellationToken token)
    {
        switch (message.KindCase)
        {
            case ServerMessage.KindOneofCase.Deliver when message.Deliver.Consumer.Length > 0:
                await RouteConsumerDeliveryAsync(message.Deliver, token);
                break;
            case ServerMessage.KindOneofCase.PublishAck:
                CompletePending(message.PublishAck.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.Consumer:
                if (message.Consumer.CorrelationId.Length > 0 && _pending.TryRemove(message.Consumer.CorrelationId, out var consumerOp))
                {
                    consumerOp.TrySetResult(message);
                }

                break;
            case ServerMessage.KindOneofCase.Read:
                CompletePending(message.Read.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.Deliver:
                if (Volatile.Read(ref _byBridgeId).TryGetValue(message.Deliver.SubscriptionId, out var entries))
                {
                    foreach (var entry in entries)
                    {
                        await entry.EnqueueAsync(message.Deliver.Envelope, token);
                    }
                }
                else
                {
                    Interlocked.Increment(ref _unrouted);
                    Log.DeliveryUnrouted(_logger, AgentId, message.Deliver.SubscriptionId);
                }

                break;
            case ServerMessage.KindOneofCase.Call:
                StartPushedCall(message.Call, session);
                break;
            case ServerMessage.KindOneofCase.Result:
                CompletePending(message.Result.CallId, message);
                break;
            case ServerMessage.KindOneofCase.Ack:
                OnAck(message);
                break;
            case ServerMessage.KindOneofCase.Heartbeat:
                break;
            case ServerMessage.KindOneofCase.Error:
                OnErrorReply(message);
                break;
            case ServerMessage.KindOneofCase.Memory:
                CompletePending(message.Memory.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.Cancel:
                if (_inflight.TryRemove(message.Cancel.CallId, out var cancelled))
                {
                    cancelled.Cancel();
                }

                break;
            default:
                Log.UnknownServerMessage(_logger, AgentId, (int)message.KindCase);
                break;
        }
    }

    private void CompletePending(string correlationId, ServerMessage message)
    {
        if (_pending.TryRemove(correlationId, out var op))
        {
            op.TrySetResult(message);
        }
        else
        {
            Interlocked.Increment(ref _lateResponses);
            Log.LateResponse(_logger, AgentId, message.KindCase.ToString(), correlationId);
        }
    }

    private void OnAck(ServerMessage message)
    {
        if (!_pending.TryRemove(message.Ack.CorrelationId, out var op))
        {
            return; // e.g. the ack of an unsubscribe for a subscription dropped while disconnected
        }

        if (op.Kind == PendingKind.Subscribe && op.Entry is { } entry)
        {
            var wanted = false;
            lock (_gate)
            {
                // Bind before any delivery of this subscription is read (they follow the ack).
                foreach (var e in _entries)
                {
                    if (ReferenceEquals(e, entry) || (e.BridgeId is null && e.SameBridgeSubscription(entry.Spec)))
                    {
                        e.BridgeId = message.Ack.SubscriptionId;
                    }

                    wanted |= e.BridgeId == message.Ack.SubscriptionId;
                }

                RebuildRoutesLocked();
            }

            if (!wanted && op.Abandoned)
            {
                _outbound.Writer.TryWrite(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = _ids.Next(), SubscriptionId = message.Ack.SubscriptionId } });
            }
        }

        op.TrySetResult(message);
    }

    private void OnErrorReply(ServerMessage message)
    {
        var reply = message.Error;
        if (!string.IsNullOrEmpty(reply.CorrelationId) && _pending.TryRemove(reply.CorrelationId, out var op))
        {
            op.TrySetResult(message);
            return;
        }

        var error = reply.Error ?? new Error { Code = ErrorCode.Internal, Message = "(no error)" };
        if (string.IsNullOrEmpty(reply.CorrelationId))
        {
            Log.SessionError(_logger, AgentId, ErrorCodes.Name(error.Code), error.Message);
        }
        else
        {
            // Publishes are fire and forget; their errors name the envelope id.
            Interlocked.Increment(ref _publishErrors);
            Log.PublishRejected(_logger, AgentId, reply.CorrelationId, ErrorCodes.Name(error.Code), error.Message);
        }
    }

    private async Task WriteLoopAsync(StreamSession session)
    {
        var reader = _outbound.Reader;
        var call = session.Call!;
        var token = session.Token;
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
                    await call.RequestStream.CompleteAsync().WaitAsync(_options.DisposeTimeout, _time, token);
                    return;
                }

                if (Volatile.Read(ref _frozen) is { } frozen)
                {
                    await frozen.Task.WaitAsync(token);
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

                Volatile.Write(ref _lastWriteTimestamp, _time.GetTimestamp());
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
                Log.LostOnBreak(_logger, AgentId, taken);
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
        ClientMessage.KindOneofCase.Call => !_pending.ContainsKey(message.Call.CallId),
        ClientMessage.KindOneofCase.Memory => !_pending.ContainsKey(message.Memory.CorrelationId),
        _ => false,
    };

    private async Task HeartbeatLoopAsync(StreamSession session)
    {
        var interval = session.HeartbeatInterval;
        var token = session.Token;
        try
        {
            using var timer = new PeriodicTimer(interval, _time);
            while (await timer.WaitForNextTickAsync(token))
            {
                if (Volatile.Read(ref _frozen) is not null)
                {
                    continue;
                }

                var silent = _time.GetElapsedTime(session.LastReceived);
                if (silent > interval * 3)
                {
                    session.End(new LoomException(ErrorCode.Unavailable, $"Nothing arrived from the bridge for {silent.TotalMilliseconds:0} ms (3 heartbeat intervals of {interval.TotalMilliseconds:0} ms)."));
                    return;
                }

                // Any frame keeps the session alive; ping only when the stream has been quiet.
                if (_time.GetElapsedTime(Volatile.Read(ref _lastWriteTimestamp)) >= interval / 2)
                {
                    var ping = new HeartbeatPing { Sequence = Interlocked.Increment(ref _heartbeatSequence), SentUnixMs = _time.GetUtcNow().ToUnixTimeMilliseconds() };
                    _outbound.Writer.TryWrite(new ClientMessage { Heartbeat = ping });
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The session ended.
        }
    }

    // -------------------------------------------------------------------------------------------
    // Calls pushed by the bridge (this agent as a provider)
    // -------------------------------------------------------------------------------------------

    private void StartPushedCall(ActionCall call, StreamSession session)
    {
        if (!_capabilities.TryGetValue(call.Capability, out var capability))
        {
            var missing = new ActionResult
            {
                CallId = call.CallId,
                Provider = AgentId,
                Error = new CapabilityNotFoundException($"Agent '{AgentId}' does not provide '{call.Capability}'.").ToError(),
            };
            _outbound.Writer.TryWrite(new ClientMessage { Result = missing });
            return;
        }

        CancellationTokenSource cancellation;
        if (call.DeadlineUnixMs > 0)
        {
            var remaining = DateTimeOffset.FromUnixTimeMilliseconds(call.DeadlineUnixMs) - _time.GetUtcNow();
            cancellation = new CancellationTokenSource(remaining > TimeSpan.FromMilliseconds(1) ? remaining : TimeSpan.FromMilliseconds(1), _time);
        }
        else
        {
            cancellation = new CancellationTokenSource(_options.DefaultCallTimeout, _time);
        }

        var inflight = new InflightCall(cancellation, session.Generation);
        if (!_inflight.TryAdd(call.CallId, inflight))
        {
            cancellation.Dispose();
            Log.DuplicatePushedCall(_logger, AgentId, call.CallId);
            return;
        }

        // Off the read loop (a handler must never block it), but queued locally: the read loop's
        // thread picks it up as soon as it waits for the next frame, without waking another thread.
        ThreadPool.UnsafeQueueUserWorkItem(
            static state => _ = state.Connection.RunPushedCallAsync(state.Call, state.Capability, state.Inflight),
            (Connection: this, Call: call, Capability: capability, Inflight: inflight),
            preferLocal: true);
    }

    private async Task RunPushedCallAsync(ActionCall call, LoomCapability capability, InflightCall inflight)
    {
        var started = _time.GetTimestamp();
        var token = inflight.Cancellation.Token;
        var result = new ActionResult { CallId = call.CallId, Provider = AgentId };
        using var activity = Tracing.OnPushedCall(call);
        try
        {
            var invocation = new ActionInvocation
            {
                CallId = call.CallId,
                Capability = call.Capability,
                InputJson = call.InputJson.Memory,
                Deadline = call.DeadlineUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(call.DeadlineUnixMs) : _time.GetUtcNow() + _options.DefaultCallTimeout,
                Caller = call.Caller,
                ThreadId = call.ThreadId,
                Traceparent = call.Traceparent,
                Headers = call.Headers,
            };
            var output = await capability.Handler(invocation, token);
            result.OutputJson = UnsafeByteOperations.UnsafeWrap(output);
        }
        catch (LoomException ex)
        {
            result.Error = ex.ToError();
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            result.Error = new LoomTimeoutException($"'{call.Capability}' on agent '{AgentId}' did not finish before the call's deadline.").ToError();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.CapabilityFailed(_logger, AgentId, call.Capability, ex);
            result.Error = new ToolErrorException(ex.Message).ToError();
        }

        result.DurationUs = (ulong)(_time.GetElapsedTime(started).Ticks / 10);
        if (activity is not null && result.Error is { } failed)
        {
            activity.SetTag("error.type", ErrorCodes.Name(failed.Code));
            activity.SetStatus(System.Diagnostics.ActivityStatusCode.Error, failed.Message);
        }

        try
        {
            // Not in the map any more: the bridge cancelled it or its stream broke; nobody waits.
            if (_inflight.TryRemove(new KeyValuePair<string, InflightCall>(call.CallId, inflight)))
            {
                await EnqueueAsync(new ClientMessage { Result = result }, _lifetime.Token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            Log.ResultDropped(_logger, AgentId, call.CallId, "the connection is closing");
        }
        finally
        {
            inflight.Cancellation.Dispose();
        }
    }

    // -------------------------------------------------------------------------------------------
    // Sending
    // -------------------------------------------------------------------------------------------

    private ValueTask EnqueueAsync(ClientMessage message, CancellationToken cancellationToken) =>
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

    /// <summary>
    /// Publishes an envelope. Completes once it is queued (waits while the outbound queue is full);
    /// the bridge reports rejections asynchronously (logged and counted in <see cref="Statistics"/>).
    /// Envelopes queued while reconnecting are sent after the connection is back.
    /// </summary>
    /// <exception cref="InvalidParamsException">The topic is not a valid concrete topic.</exception>
    /// <exception cref="ResourceExhaustedException">The payload is larger than the bridge accepts.</exception>
    public ValueTask PublishAsync(Envelope envelope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var topic = envelope.Topic;
        if (!ReferenceEquals(topic, _lastValidTopic))
        {
            // Publishers tend to reuse one topic string: validate each new instance once.
            Topics.ValidateTopic(topic);
            _lastValidTopic = topic;
        }
        var maxPayload = Volatile.Read(ref _limits).MaxPayloadBytes;
        if (maxPayload > 0 && envelope.Payload.Length > maxPayload)
        {
            throw new ResourceExhaustedException($"Payload of {envelope.Payload.Length} bytes on topic '{envelope.Topic}' exceeds the bridge's limit of {maxPayload} bytes.");
        }

        if (envelope.Id.Length == 0)
        {
            envelope.Id = _ids.Next();
        }

        Tracing.OnPublish(envelope);
        return EnqueueAsync(new ClientMessage { Publish = envelope }, cancellationToken);
    }

    /// <summary>
    /// Publishes a request with a fresh correlation id and <c>reply_to</c> on this agent's inbox,
    /// and waits for the reply.
    /// </summary>
    /// <exception cref="LoomTimeoutException">No reply within <paramref name="timeout"/> (a reply after that is dropped and counted).</exception>
    public Task<Envelope> RequestAsync(Envelope request, TimeSpan timeout, CancellationToken cancellationToken = default)
        => _replies.RequestAsync(request, PublishAsync, timeout, cancellationToken);

    private void OnInboxDelivery(Envelope reply)
    {
        if (!_replies.Complete(reply))
        {
            Log.LateReply(_logger, AgentId, reply.Topic, reply.CorrelationId);
        }
    }

    /// <summary>
    /// Subscribes to a pattern (<c>*</c> one token, <c>&gt;</c> the rest). The handler runs in order,
    /// off the read loop. Subscriptions survive reconnects. Dispose the result to unsubscribe.
    /// </summary>
    public async Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        Topics.ValidatePattern(pattern);
        options ??= SubscribeOptions.Default;
        var spec = options.ToProto(pattern);
        var entry = new SubscriptionEntry(spec, handler, options.LocalQueueCapacity ?? _options.DeliveryQueueCapacity, AgentId, _time, _logger);
        entry.Start();
        bool needsRequest;
        lock (_gate)
        {
            _entries.Add(entry);
            var twin = _entries.Find(e => !ReferenceEquals(e, entry) && e.BridgeId is not null && e.SameBridgeSubscription(spec));
            if (twin is not null)
            {
                entry.BridgeId = twin.BridgeId;
                RebuildRoutesLocked();
            }

            needsRequest = twin is null;
        }

        var handle = new LoomSubscription(pattern, () => entry.BridgeId, () => entry.Delivered, () => entry.Dropped, () => UnsubscribeAsync(entry));
        if (!needsRequest || Status != ConnectionStatus.Connected)
        {
            // Not connected: the next registration carries it.
            return handle;
        }

        var correlationId = _ids.Next();
        var op = new PendingOperation(PendingKind.Subscribe, entry);
        _pending[correlationId] = op;
        ServerMessage reply;
        try
        {
            await EnqueueAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = correlationId, Subscription = spec } }, cancellationToken);
            reply = await op.Task.WaitAsync(_options.RequestTimeout, _time, cancellationToken);
        }
        catch (LoomException ex) when (ex.Code == ErrorCode.Unavailable && !IsDisposed)
        {
            // The stream broke meanwhile; the re-registration carries the subscription.
            return handle;
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or ObjectDisposedException)
        {
            // Left in the map: if the ack still comes, the read loop unsubscribes what nobody wants.
            op.Abandoned = true;
            await RemoveEntryAsync(entry);
            if (ex is TimeoutException)
            {
                throw new LoomTimeoutException($"The bridge did not acknowledge the subscription to '{pattern}' within {_options.RequestTimeout.TotalMilliseconds:0} ms.", ex);
            }

            throw;
        }

        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            await RemoveEntryAsync(entry);
            throw LoomException.FromError(reply.Error.Error);
        }

        return handle;
    }

    private async Task RemoveEntryAsync(SubscriptionEntry entry)
    {
        lock (_gate)
        {
            _entries.Remove(entry);
            RebuildRoutesLocked();
        }

        await entry.StopAsync(TimeSpan.Zero);
    }

    private async ValueTask UnsubscribeAsync(SubscriptionEntry entry)
    {
        string? bridgeId;
        bool last;
        lock (_gate)
        {
            _entries.Remove(entry);
            bridgeId = entry.BridgeId;
            last = !_entries.Exists(e => e.SameBridgeSubscription(entry.Spec));
            RebuildRoutesLocked();
        }

        await entry.StopAsync(_options.DisposeTimeout);
        if (!last || bridgeId is null || IsDisposed || Status != ConnectionStatus.Connected)
        {
            // Not connected: the next registration leaves it out (and drops it if the bridge kept it).
            return;
        }

        var correlationId = _ids.Next();
        var op = new PendingOperation(PendingKind.Unsubscribe);
        _pending[correlationId] = op;
        try
        {
            await EnqueueAsync(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = correlationId, SubscriptionId = bridgeId } }, CancellationToken.None)
                .AsTask().WaitAsync(_options.RequestTimeout, _time);
            var reply = await op.Task.WaitAsync(_options.RequestTimeout, _time);
            if (reply.KindCase == ServerMessage.KindOneofCase.Error)
            {
                Log.UnsubscribeFailed(_logger, AgentId, entry.Pattern, reply.Error.Error?.Message ?? "");
            }
        }
        catch (Exception ex) when (ex is TimeoutException or LoomException or ObjectDisposedException)
        {
            Log.UnsubscribeFailed(_logger, AgentId, entry.Pattern, ex.Message);
        }
        finally
        {
            _pending.TryRemove(correlationId, out _);
        }
    }

    /// <summary>
    /// Calls a capability through the bridge and returns its UTF-8 JSON output. The timeout is
    /// <c>call.timeout_ms</c>, or <see cref="LoomConnectionOptions.DefaultCallTimeout"/> when 0.
    /// </summary>
    /// <exception cref="LoomException">The typed failure: INVALID_PARAMS (with the path), CAPABILITY_NOT_FOUND,
    /// PROVIDER_UNAVAILABLE, TOOL_ERROR, TIMEOUT, or UNAVAILABLE when the connection is down or breaks.</exception>
    public async Task<ReadOnlyMemory<byte>> CallAsync(ActionCall call, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(call);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (string.IsNullOrEmpty(call.CallId))
        {
            call.CallId = _ids.Next();
        }

        using var activity = Tracing.OnCall(call);
        try
        {
            return await CallCoreAsync(call, cancellationToken);
        }
        catch (Exception ex) when (activity is not null)
        {
            activity.SetStatus(System.Diagnostics.ActivityStatusCode.Error, ex.Message);
            throw;
        }
    }

    private async Task<ReadOnlyMemory<byte>> CallCoreAsync(ActionCall call, CancellationToken cancellationToken)
    {

        var timeout = call.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(call.TimeoutMs) : _options.DefaultCallTimeout;
        call.TimeoutMs = (uint)Math.Clamp(timeout.TotalMilliseconds, 1, uint.MaxValue);
        var reply = await SendAndWaitAsync(PendingKind.Call, call.CallId, new ClientMessage { Call = call }, timeout + Grace(timeout), () =>
        {
            _outbound.Writer.TryWrite(new ClientMessage { Cancel = new CancelCall { CallId = call.CallId } });
            return new LoomTimeoutException($"Call to '{call.Capability}' got no result within {timeout.TotalMilliseconds:0} ms.");
        }, cancellationToken);
        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            throw LoomException.FromError(reply.Error.Error);
        }

        var result = reply.Result;
        if (result.OutcomeCase == ActionResult.OutcomeOneofCase.Error)
        {
            throw LoomException.FromError(result.Error);
        }

        return result.OutputJson.Memory;
    }

    /// <summary>Runs one memory operation in the agent's namespace (or the request's).</summary>
    /// <exception cref="LoomException">The typed failure (INVALID_PARAMS, RESOURCE_EXHAUSTED, UNAVAILABLE...).</exception>
    public async Task<MemoryResponse> MemoryAsync(MemoryRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        request.CorrelationId = _ids.Next();
        var reply = await SendAndWaitAsync(PendingKind.Memory, request.CorrelationId, new ClientMessage { Memory = request }, _options.RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not answer the memory {request.OpCase} within {_options.RequestTimeout.TotalMilliseconds:0} ms."), cancellationToken);
        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            throw LoomException.FromError(reply.Error.Error);
        }

        var response = reply.Memory;
        if (response.Error is { } error && error.Code != ErrorCode.Unspecified)
        {
            throw LoomException.FromError(error);
        }

        return response;
    }

    private async Task<ServerMessage> SendAndWaitAsync(PendingKind kind, string correlationId, ClientMessage message, TimeSpan timeout, Func<LoomException> onTimeout, CancellationToken cancellationToken)
    {
        var status = Status;
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
            status = Status;
            if (status != ConnectionStatus.Connected)
            {
                throw ErrorMapping.NotConnected(status);
            }

            await EnqueueAsync(message, cancellationToken);
            return await op.Task.WaitAsync(timeout, _time, cancellationToken);
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
                _outbound.Writer.TryWrite(new ClientMessage { Cancel = new CancelCall { CallId = correlationId } });
            }

            throw;
        }
        finally
        {
            _pending.TryRemove(correlationId, out _);
        }
    }

    /// <summary>Extra local wait past a call's timeout, so the bridge's own TIMEOUT result normally arrives first.</summary>
    private static TimeSpan Grace(TimeSpan timeout) => TimeSpan.FromMilliseconds(Math.Min(1000, 100 + (timeout.TotalMilliseconds * 0.05)));

    // -------------------------------------------------------------------------------------------
    // Shutdown and test hooks
    // -------------------------------------------------------------------------------------------

    /// <summary>
    /// Closes the connection within <see cref="LoomConnectionOptions.DisposeTimeout"/>: capability
    /// calls in flight finish, queued messages are written, then the stream is half-closed (the
    /// bridge takes that as the agent leaving). What is still waiting fails with CANCELLED.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        var started = _time.GetTimestamp();
        TimeSpan Remaining()
        {
            var left = _options.DisposeTimeout - _time.GetElapsedTime(started);
            return left > TimeSpan.Zero ? left : TimeSpan.Zero;
        }

        _closing = true;
        var session = Volatile.Read(ref _session);
        var graceful = !_killed && Volatile.Read(ref _frozen) is null && session is not null && Status == ConnectionStatus.Connected;
        if (graceful)
        {
            try
            {
                // 1. Calls this agent is answering finish, so their results go out.
                while (!_inflight.IsEmpty && Remaining() > TimeSpan.Zero && !session!.Ended.IsCompleted)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(5), _time);
                }

                // 2. The write loop drains the queue (held or not), then half-closes.
                session!.Release();
                _outbound.Writer.TryComplete();
                await session!.WriteLoop.WaitAsync(Remaining(), _time);

                // 3. The bridge flushes what it holds for us and ends the stream with OK.
                await session.Ended.WaitAsync(Remaining(), _time);
            }
            catch (TimeoutException)
            {
                Log.DisposeTimedOut(_logger, AgentId, (long)_options.DisposeTimeout.TotalMilliseconds);
            }
        }

        _outbound.Writer.TryComplete();
        await _lifetime.CancelAsync();
        session?.Cancel();
        try
        {
            await _supervisor.WaitAsync(TimeSpan.FromSeconds(5), _time);
        }
        catch (TimeoutException)
        {
            Log.LoopsDidNotStop(_logger, AgentId);
        }

        if (session is not null)
        {
            await CloseSessionAsync(session);
        }

        // What the write loop never took: the publisher learns of it here, not from silence.
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
            Log.UnsentOnClose(_logger, AgentId, unsent);
        }

        var closed = new LoomException(ErrorCode.Cancelled, "The connection was closed.");
        OnStreamLost(int.MaxValue, closed);
        SubscriptionEntry[] entries;
        lock (_gate)
        {
            entries = [.. _entries];
        }

        await Task.WhenAll(entries.Select(e => e.StopAsync(Remaining())));
        if (_ownsChannel)
        {
            _channel.Dispose();
        }
        SetStatus(ConnectionStatus.Closed, null, "");
        _statusChanges.Writer.TryComplete();
    }

    /// <summary>Test hook: ends the stream and the TCP connection abruptly, without a half-close, as a killed process would. No reconnect.</summary>
    internal void KillForTest()
    {
        _killed = true;
        _closing = true;
        Volatile.Read(ref _session)?.Call?.Dispose();
        if (_ownsChannel)
        {
            _channel.Dispose();
        }

        _lifetime.Cancel();
        SetStatus(ConnectionStatus.Closed, new LoomException(ErrorCode.Unavailable, "Killed by a test."), "");
        OnStreamLost(int.MaxValue, new LoomException(ErrorCode.Unavailable, "The connection was killed."));
    }

    /// <summary>Test hook: the process hangs: nothing is read or written (no heartbeats), but the connection stays open.</summary>
    internal void FreezeForTest() =>
        Interlocked.CompareExchange(ref _frozen, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), null);

    /// <summary>Test hook: breaks the current stream (a network blip); the connection reconnects.</summary>
    internal void BreakStreamForTest() => Volatile.Read(ref _session)?.Call?.Dispose();
}
