using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using Google.Protobuf;
using Loom.Bridge.Internal.Metrics;
using Loom.Bridge.Internal.Streams;
using Loom.Core;
using Grpc.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

/// <summary>
/// The bridge's side of one agent: its subscriptions, its capabilities (it is their provider),
/// the calls it has in flight both ways, and at most one attached EventStream with one read
/// loop and one write loop. A session outlives a broken stream until its heartbeats lapse, so
/// an agent that reconnects in time finds its queued deliveries.
/// </summary>
internal sealed partial class AgentSession : ICapabilityProvider, ISubscriptionSignal
{
    private readonly BridgeOptions _options;
    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly MemoryStore _memory;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly object _gate = new();

    // Control messages (acks, errors, results, pushed calls, memory replies, pings): bounded.
    private readonly Channel<ServerMessage> _control;

    // Wakes the write loop; capacity 1 so repeated signals coalesce.
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite, SingleReader = true });

    // Calls the bridge pushed to this agent, by the bridge-assigned call id.
    private readonly ConcurrentDictionary<string, TaskCompletionSource<ReadOnlyMemory<byte>>> _pushedCalls = new(StringComparer.Ordinal);

    // Calls this agent made, by its call id, so it can cancel them.
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _outgoingCalls = new(StringComparer.Ordinal);

    private EventSubscription[] _subscriptions = [];
    private List<CapabilityRegistration> _capabilities = [];
    private AttachedStream? _stream;
    private Task? _streamTask;
    private ITimer? _heartbeatTimer;
    private long _pushedCallSequence;
    private long _lastSeenTimestamp;
    private int _waitingInBridge;
    private ulong _heartbeatSequence;
    private int _expired;

    public AgentSession(
        RegisterAgentRequest request,
        string agentId,
        string sessionId,
        TimeSpan heartbeatInterval,
        BridgeOptions options,
        EventBus bus,
        ActionBroker broker,
        MemoryStore memory,
        TimeProvider time,
        ILogger logger)
    {
        _options = options;
        _bus = bus;
        _broker = broker;
        _memory = memory;
        _time = time;
        _logger = logger;
        AgentId = agentId;
        SessionId = sessionId;
        HeartbeatInterval = heartbeatInterval;
        Name = request.Name;
        Namespace = string.IsNullOrEmpty(request.Namespace) ? "default" : request.Namespace;
        Sdk = request.Sdk;
        Metadata = new Dictionary<string, string>(request.Metadata, StringComparer.Ordinal);
        ConnectedAt = time.GetUtcNow();
        _control = Channel.CreateBounded<ServerMessage>(new BoundedChannelOptions(options.OutboundQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
        });
        Touch();
    }

    public string AgentId { get; }

    /// <summary>The identity (token subject or client certificate name) this agent id is bound to; null for an anonymous registration.</summary>
    public string? Identity { get; set; }

    /// <summary>What this agent may do (compiled once per registration); unrestricted with auth off.</summary>
    public PermissionPolicy Policy { get; set; } = PermissionPolicy.Unrestricted;

    /// <summary>Where refusals and limit hits are recorded (null: auditing is off).</summary>
    public AuditLog? Audit { get; set; }

    /// <summary>The peer that registered it (gRPC's peer string, e.g. <c>ipv4:127.0.0.1:51000</c>), for the audit log.</summary>
    public string? Remote { get; set; }

    /// <summary>The per-identity limits in force (null: none).</summary>
    public IdentityQuotas.Quota? Quota { get; set; }

    /// <summary>Counts and audits a request refused by a per-identity limit, and hands the refusal back.</summary>
    public ResourceExhaustedException LimitHit(string kind, string action, string? resource, ResourceExhaustedException refusal)
    {
        Metrics?.RateLimited(kind);
        Audit?.Record(new AuditRecord(AuditRecord.Limit, action, "limited") { Identity = Identity, AgentId = AgentId, Session = SessionId, Resource = resource, Reason = refusal.Message, Remote = Remote });
        return refusal;
    }

    /// <summary>The most subscriptions it may hold: the bridge's limit, or its identity's when lower.</summary>
    private (int Max, bool Identity) SubscriptionLimit =>
        Quota?.Limits.MaxSubscriptions is { } own && own < _options.MaxSubscriptionsPerSession ? (own, true) : (_options.MaxSubscriptionsPerSession, false);

    private ResourceExhaustedException TooManySubscriptions(int max, int wanted, string? resource) =>
        LimitHit("max_subscriptions", "subscribe", resource, new ResourceExhaustedException($"Identity '{Identity}' may hold at most {max} subscriptions ({Quota!.SubscriptionSource}.max_subscriptions); this asks for {wanted}. Unsubscribe from one first, or raise the limit."));

    /// <summary>Null when the policy allows it; otherwise the refusal, counted.</summary>
    private PermissionDeniedException? Refused(PermissionAction action, string target)
    {
        var policy = Policy;
        if (policy.Check(action, target) is not { } refusal)
        {
            return null;
        }

        Metrics?.PermissionDenied(action);
        Audit?.Record(new AuditRecord(AuditRecord.Refusal, PermissionPolicy.NameOf(action), "denied") { Identity = Identity, AgentId = AgentId, Session = SessionId, Resource = target, Reason = refusal.Message, Remote = Remote });
        return refusal;
    }

    public string Name { get; private set; }

    public string Namespace { get; }

    public string Sdk { get; private set; }

    public IReadOnlyDictionary<string, string> Metadata { get; private set; }

    public DateTimeOffset ConnectedAt { get; }

    public string SessionId { get; private set; }

    public TimeSpan HeartbeatInterval { get; private set; }

    public bool IsExpired => Volatile.Read(ref _expired) == 1;

    /// <summary>Calls pushed to this agent or made by it that have not finished.</summary>
    public bool HasWorkInFlight => !_pushedCalls.IsEmpty || !_outgoingCalls.IsEmpty;

    /// <summary>Called after the agent's subscriptions change on the stream (to refresh the directory).</summary>
    public Action<AgentSession>? SubscriptionsChanged { get; init; }

    /// <summary>The durable streams (null when none is configured: the publish path then costs one null check).</summary>
    public StreamHost? Streams { get; init; }

    /// <summary>Durable consumers attached through this session (detached when it expires).</summary>
    private readonly List<DurableConsumer> _consumers = [];

    /// <summary>Durable publishes of this session not yet persisted; past the bound its read loop waits.</summary>
    private int _durableInFlight;
    private const int MaxDurableInFlight = 16_384;

    /// <summary>Where drops and stream openings are counted (none in unit tests).</summary>
    public BridgeMetrics? Metrics { get; init; }

    /// <summary>Limits on the warnings a client can trigger (shared by every session; none in unit tests).</summary>
    public BridgeWarnings? Warnings { get; init; }

    /// <summary>Heartbeats already counted as missed in the current silence (the registry's sweep owns it).</summary>
    public int MissedHeartbeatsReported { get; set; }

    /// <summary>Control messages waiting for the write loop.</summary>
    public int ControlQueueDepth => _control.Reader.Count;

    /// <summary>Set while the bridge shuts down: new calls are refused.</summary>
    public Func<bool> IsShuttingDown { get; init; } = static () => false;

    public bool HasStream => Volatile.Read(ref _stream) is not null;

    string ICapabilityProvider.ProviderId => AgentId;

    string ICapabilityProvider.AgentId => AgentId;

    bool ICapabilityProvider.IsLocal => false;

    public IReadOnlyList<EventSubscription> Subscriptions => Volatile.Read(ref _subscriptions);

    public IReadOnlyList<string> CapabilityNames
    {
        get
        {
            lock (_gate)
            {
                return _capabilities.ConvertAll(c => c.Descriptor.Name);
            }
        }
    }

    /// <summary>Time since the agent was last heard from; zero while the bridge itself holds its read loop.</summary>
    public TimeSpan SinceLastSeen => Volatile.Read(ref _waitingInBridge) != 0 ? TimeSpan.Zero : _time.GetElapsedTime(Volatile.Read(ref _lastSeenTimestamp));

    public void Touch() => Volatile.Write(ref _lastSeenTimestamp, _time.GetTimestamp());

    /// <summary>True once the agent opened a stream or sent a heartbeat after registering.</summary>
    public bool Contacted { get; private set; }

    /// <summary>Records contact from the agent (a frame, a unary heartbeat, a stream opening).</summary>
    public void MarkContact()
    {
        Contacted = true;
        Touch();
    }

    public AgentInfo ToAgentInfo() => new(
        AgentId,
        Name,
        Namespace,
        SessionId,
        Array.ConvertAll(Volatile.Read(ref _subscriptions), s => s.Pattern),
        CapabilityNames,
        Metadata,
        ConnectedAt,
        Sdk);

    // ---------------------------------------------------------------------------------------
    // Registration
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Applies a (re-)registration: adds subscriptions not already held (same pattern and QoS),
    /// and replaces the capability set. All or nothing: on a bad entry nothing changes.
    /// </summary>
    public void ApplyRegistration(RegisterAgentRequest request, string sessionId, TimeSpan heartbeatInterval)
    {
        lock (_gate)
        {
            var added = new List<EventSubscription>();
            var newCapabilities = new List<CapabilityRegistration>();
            var oldCapabilities = _capabilities;
            try
            {
                var current = _subscriptions;
                var distinct = request.Subscriptions.Count(s => !Array.Exists(current, c => SameSubscription(c, s)));
                if (SubscriptionLimit is (var max, true) && current.Length + distinct > max)
                {
                    throw TooManySubscriptions(max, current.Length + distinct, request.Subscriptions.Count > 0 ? request.Subscriptions[^1].Pattern : null);
                }

                if (current.Length + distinct > _options.MaxSubscriptionsPerSession)
                {
                    throw new ResourceExhaustedException($"An agent may hold at most {_options.MaxSubscriptionsPerSession} subscriptions; this registration asks for {current.Length + distinct}.");
                }

                for (var i = 0; i < request.Subscriptions.Count; i++)
                {
                    var wanted = request.Subscriptions[i];
                    if (Array.Exists(current, c => SameSubscription(c, wanted)) || added.Exists(c => SameSubscription(c, wanted)))
                    {
                        continue;
                    }

                    added.Add(SubscribeCore(wanted, $"/subscriptions/{i}"));
                }

                // Capabilities: the registration is authoritative. Unregister the old set first so a
                // capability registered again by the same provider is not a duplicate.
                foreach (var old in oldCapabilities)
                {
                    old.Dispose();
                }

                for (var i = 0; i < request.Capabilities.Count; i++)
                {
                    try
                    {
                        newCapabilities.Add(_broker.Register(request.Capabilities[i], this));
                    }
                    catch (LoomException ex)
                    {
                        throw new InvalidParamsException($"capabilities[{i}] ('{request.Capabilities[i].Name}'): {ex.Message}", $"/capabilities/{i}{ex.Path}");
                    }
                }
            }
            catch
            {
                foreach (var s in added)
                {
                    s.Dispose();
                }

                foreach (var c in newCapabilities)
                {
                    c.Dispose();
                }

                // Put the previous capability set back as it was.
                var restored = new List<CapabilityRegistration>(oldCapabilities.Count);
                foreach (var old in oldCapabilities)
                {
                    restored.Add(_broker.Register(old.Descriptor, this));
                }

                _capabilities = restored;
                throw;
            }

            if (added.Count > 0)
            {
                _subscriptions = [.. _subscriptions, .. added];
            }

            _capabilities = newCapabilities;
            SessionId = sessionId;
            Contacted = false;
            GracefullyClosed = false;
            HeartbeatInterval = heartbeatInterval;
            Name = request.Name;
            Sdk = request.Sdk;
            Metadata = new Dictionary<string, string>(request.Metadata, StringComparer.Ordinal);
        }

        Touch();
    }

    private static bool SameSubscription(EventSubscription held, Protocol.V1.Subscription wanted) =>
        string.Equals(held.Pattern, wanted.Pattern, StringComparison.Ordinal) && held.Qos == Normalize(wanted.Qos);

    private static QosClass Normalize(QosClass qos) => qos == QosClass.Unspecified ? QosClass.Normal : qos;

    private EventSubscription SubscribeCore(Protocol.V1.Subscription wanted, string path)
    {
        try
        {
            var options = new SubscriptionOptions(
                Normalize(wanted.Qos),
                wanted.Overflow,
                checked((int)Math.Min(wanted.QueueCapacity, 1_000_000)),
                wanted.BlockTimeoutMs == 0 ? null : TimeSpan.FromMilliseconds(wanted.BlockTimeoutMs),
                AgentId);
            return _bus.Subscribe(wanted.Pattern, options, this);
        }
        catch (LoomException ex)
        {
            throw new InvalidParamsException($"subscription pattern '{wanted.Pattern}' is invalid: {ex.Message}", path);
        }
    }

    public IEnumerable<Protocol.V1.Subscription> DescribeSubscriptions()
    {
        foreach (var s in Volatile.Read(ref _subscriptions))
        {
            yield return new Protocol.V1.Subscription
            {
                Pattern = s.Pattern,
                Qos = s.Qos,
                Overflow = s.Overflow,
                QueueCapacity = (uint)s.Capacity,
                SubscriptionId = s.Id,
            };
        }
    }

    // ---------------------------------------------------------------------------------------
    // The stream
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Serves one EventStream until the client ends it, it breaks, a newer stream replaces it,
    /// or the session expires. One read loop (this method) and one write loop (a task).
    /// </summary>
    public async Task RunStreamAsync(IAsyncStreamReader<ClientFrame> reader, IServerStreamWriter<FrameEncoder> writer, CancellationToken requestAborted)
    {
        if (IsExpired)
        {
            throw StatusMapping.Status(StatusCode.Unauthenticated, $"Session '{SessionId}' has expired; register again.", ErrorCode.SessionNotFound);
        }

        MarkContact();
        GracefullyClosed = false;
        Metrics?.StreamOpened();
        _broker.MarkHealthy(AgentId);
        var streamCts = CancellationTokenSource.CreateLinkedTokenSource(requestAborted);
        var attached = new AttachedStream(streamCts);
        var previous = Interlocked.Exchange(ref _stream, attached);
        if (previous is not null)
        {
            // A newer stream replaces the old one; the old one's pending pushed calls fail.
            previous.End(StatusCode.Cancelled, "This stream was replaced by a newer stream of the same agent.");
            await WaitQuietly(_streamTask, _options.ShutdownTimeout);
        }

        var streamDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _streamTask, streamDone.Task);
        var token = streamCts.Token;
        StartHeartbeats();
        var writeLoop = Task.Run(() => WriteLoopAsync(writer, attached, token), CancellationToken.None);
        var gracefulEnd = false;
        try
        {
            while (await reader.MoveNext(token))
            {
                Touch();
                var frame = reader.Current;
                if (frame.Messages.Count > _options.MaxBatchMessages * 4)
                {
                    throw StatusMapping.Status(StatusCode.ResourceExhausted, $"A frame carried {frame.Messages.Count} messages; the limit is {_options.MaxBatchMessages * 4}.", ErrorCode.ResourceExhausted);
                }

                foreach (var message in frame.Messages)
                {
                    var handled = HandleAsync(message, token);
                    if (handled.IsCompletedSuccessfully)
                    {
                        continue;
                    }

                    // The bridge, not the agent, holds this read loop (a blocking subscriber's full
                    // queue): the agent's heartbeats wait unread behind it, so it counts as alive meanwhile.
                    Interlocked.Increment(ref _waitingInBridge);
                    try
                    {
                        await handled;
                    }
                    finally
                    {
                        Interlocked.Decrement(ref _waitingInBridge);
                        Touch();
                    }
                }
            }

            gracefulEnd = true;

            // The client half-closed: flush what is queued for it (bounded), then end with OK.
            attached.Draining = true;
            Wake();
            await WaitQuietly(writeLoop, TimeSpan.FromSeconds(1));
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Replaced, expired, shutting down, or the client went away.
        }
        catch (IOException) when (requestAborted.IsCancellationRequested)
        {
            // Client reset: no status can be written.
        }
        finally
        {
            await streamCts.CancelAsync();
            await WaitQuietly(writeLoop, _options.ShutdownTimeout);
            Interlocked.CompareExchange(ref _stream, null, attached);
            StopHeartbeats();
            OnStreamDetached();
            streamCts.Dispose();
            streamDone.TrySetResult();
        }

        if (gracefulEnd)
        {
            GracefullyClosed = true;
        }
        else if (!requestAborted.IsCancellationRequested && attached.EndReason is { } reason)
        {
            throw StatusMapping.Status(attached.EndStatus, reason, attached.EndStatus == StatusCode.Cancelled ? ErrorCode.Cancelled : ErrorCode.Unavailable);
        }
    }

    /// <summary>Ends the attached stream, if any, with a status that says why.</summary>
    public void DetachStream(StatusCode status, string reason) => Volatile.Read(ref _stream)?.End(status, reason);

    private sealed class AttachedStream(CancellationTokenSource cts)
    {
        /// <summary>Set when the client half-closed: the write loop ends once its queues are empty.</summary>
        public volatile bool Draining;

        public string? EndReason { get; private set; }

        public StatusCode EndStatus { get; private set; }

        public void End(StatusCode status, string reason)
        {
            EndStatus = status;
            EndReason = reason;
            try
            {
                cts.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Already over.
            }
        }
    }

    /// <summary>True once the client ended its stream cleanly: the agent has left.</summary>
    public bool GracefullyClosed { get; private set; }

    private static async Task WaitQuietly(Task? task, TimeSpan bound)
    {
        if (task is null)
        {
            return;
        }

        try
        {
            await task.WaitAsync(bound);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or IOException or RpcException or InvalidOperationException)
        {
            // The loop ended badly or late; either way it is over for us.
        }
    }

    private void OnStreamDetached()
    {
        // Whatever was queued for the old stream answered requests of that stream; the agent
        // re-issues what it still needs after reconnecting. Pushed calls fail so callers can retry.
        var discarded = 0;
        while (_control.Reader.TryRead(out _))
        {
            discarded++;
        }

        if (discarded > 0)
        {
            Metrics?.ControlDropped("any", "stream_ended", discarded);
        }

        // Until a stream is back, route calls to other providers instead of queueing them here.
        _broker.MarkUnhealthy(AgentId);
        FailPushedCalls("the provider's stream ended");
        foreach (var (id, cts) in _outgoingCalls)
        {
            if (_outgoingCalls.TryRemove(id, out _))
            {
                cts.Cancel();
            }
        }
    }

    private void FailPushedCalls(string why)
    {
        foreach (var id in _pushedCalls.Keys)
        {
            if (_pushedCalls.TryRemove(id, out var pending))
            {
                pending.TrySetException(new ProviderUnavailableException($"Agent '{AgentId}' can no longer answer: {why}."));
            }
        }
    }

    private void StartHeartbeats()
    {
        StopHeartbeats();
        _heartbeatTimer = _time.CreateTimer(
            static state =>
            {
                var self = (AgentSession)state!;
                var ping = new ServerMessage { Heartbeat = new HeartbeatPing { Sequence = ++self._heartbeatSequence, SentUnixMs = self._time.GetUtcNow().ToUnixTimeMilliseconds() } };
                if (self._control.Writer.TryWrite(ping))
                {
                    self.Wake();
                }
                else
                {
                    self.Metrics?.ControlDropped("heartbeat", "queue_full");
                }
            },
            this,
            HeartbeatInterval,
            HeartbeatInterval);
    }

    private void StopHeartbeats()
    {
        Interlocked.Exchange(ref _heartbeatTimer, null)?.Dispose();
    }

    private async Task WriteLoopAsync(IServerStreamWriter<FrameEncoder> writer, AttachedStream attached, CancellationToken token)
    {
        var rotation = 0;
        List<Activity>? spans = null;

        // A frame never exceeds the agent's message limit (the transport would end the stream): what
        // does not fit waits here for the next frame, which it opens.
        var limit = _options.MaxMessageBytes;
        ServerMessage? heldControl = null;
        var heldControlSize = 0;
        HeldDelivery? heldDelivery = null;

        // Frames are encoded by hand: each envelope sized and written once, a fan-out's envelope encoded once for all.
        var encoder = new FrameEncoder();
        try
        {
            while (!token.IsCancellationRequested)
            {
                if (heldControl is not null)
                {
                    encoder.AddMessage(heldControl, heldControlSize);
                    heldControl = null;
                }
                else if (heldDelivery is { } held)
                {
                    AddDelivery(encoder, held, ref spans);
                    heldDelivery = null;
                }

                var full = false;
                while (!full && encoder.Count < _options.MaxBatchMessages && encoder.Length < _options.MaxBatchBytes && _control.Reader.TryRead(out var control))
                {
                    var message = control;
                    var size = message.CalculateSize();
                    if (FrameEncoder.EntryLength(size) > limit)
                    {
                        if (Oversized(message, size) is not { } notice || FrameEncoder.EntryLength(notice.CalculateSize()) > limit)
                        {
                            continue;
                        }

                        (message, size) = (notice, notice.CalculateSize());
                    }

                    if (encoder.Length + FrameEncoder.EntryLength(size) <= limit)
                    {
                        encoder.AddMessage(message, size);
                    }
                    else
                    {
                        (heldControl, heldControlSize, full) = (message, size, true);
                    }
                }

                var subscriptions = Volatile.Read(ref _subscriptions);
                var tracing = LoomTelemetry.Source.HasListeners();
                var readsAudit = Policy.ReadsAudit;
                if (subscriptions.Length > 0 && !full)
                {
                    rotation = (rotation + 1) % subscriptions.Length;
                    for (var k = 0; k < subscriptions.Length && !full && encoder.Count < _options.MaxBatchMessages && encoder.Length < _options.MaxBatchBytes; k++)
                    {
                        var subscription = subscriptions[(rotation + k) % subscriptions.Length];
                        while (!full && encoder.Count < _options.MaxBatchMessages && encoder.Length < _options.MaxBatchBytes && subscription.TryRead(out var envelope))
                        {
                            if (!readsAudit && AuditLog.IsAuditTopic(envelope.Topic))
                            {
                                continue; // audit events reach audit readers only, whatever their wildcard matched
                            }

                            Activity? span = null;
                            if (tracing && (span = StartDeliverSpan(envelope, subscription)) is not null)
                            {
                                // Envelopes are shared by every subscriber: this one carries its own delivery's context.
                                envelope = envelope.Clone();
                                envelope.Traceparent = LoomTelemetry.TraceparentOf(span);
                                envelope.Tracestate = span.TraceStateString ?? string.Empty;
                            }

                            var shared = envelope.TryGetSharedEncoding(out var encoding);
                            var delivery = new HeldDelivery(subscription.Id, envelope, shared ? encoding.Length : EnvelopeCodec.Size(envelope), shared ? encoding : null, span);
                            var length = FrameEncoder.DeliveryLength(delivery.SubscriptionId, delivery.Size);
                            if (encoder.Length + length <= limit)
                            {
                                AddDelivery(encoder, delivery, ref spans);
                            }
                            else if (length > limit)
                            {
                                // Publishes are sized against the limit, so only a bug gets here: dropped, counted, never sent.
                                Metrics?.ControlDropped("deliver", "too_large");
                                Log.OversizedMessage(_logger, AgentId, "deliver", length, limit);
                                span?.Stop();
                            }
                            else
                            {
                                (heldDelivery, full) = (delivery, true);
                            }
                        }
                    }
                }

                if (encoder.Count > 0)
                {
                    try
                    {
                        await writer.WriteAsync(encoder, token);
                    }
                    finally
                    {
                        encoder.Reset();
                        EndSpans(spans);
                    }

                    continue;
                }

                if (attached.Draining)
                {
                    // The client half-closed and everything queued for it is written.
                    return;
                }

                await _wake.Reader.ReadAsync(token);
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or RpcException)
        {
            if (Warnings?.WriteFailed.TryEnter() ?? true)
            {
                Log.WriteLoopFailed(_logger, AgentId, LogText.Clean(ex.Message, LogText.Long));
            }

            DetachStream(StatusCode.Unavailable, "Writing to the stream failed.");
        }
        finally
        {
            encoder.Reset();
            heldDelivery?.Span?.Stop();
        }
    }

    /// <summary>A delivery sized for a frame: its shared encoding if any, and its delivery span if traced.</summary>
    private readonly record struct HeldDelivery(string SubscriptionId, Envelope Envelope, int Size, byte[]? Encoding, Activity? Span);

    private static void AddDelivery(FrameEncoder encoder, HeldDelivery delivery, ref List<Activity>? spans)
    {
        encoder.AddDelivery(delivery.SubscriptionId, delivery.Envelope, delivery.Size, delivery.Encoding);
        if (delivery.Span is not null)
        {
            (spans ??= []).Add(delivery.Span);
        }
    }

    private static string Shortened(string text) =>
        text.Length <= 512 ? text : string.Concat(text.AsSpan(0, 512), $"… ({text.Length} characters in all; cut short to fit the message limit)");

    /// <summary>
    /// A control message over the limit by itself. Every source sizes what it queues, so only a bug or
    /// an echo of what the agent sent gets here; the message is not sent (that would end the stream):
    /// returns what to send instead, if anything, and tells whoever waits for a pushed call.
    /// </summary>
    private ServerMessage? Oversized(ServerMessage message, int size)
    {
        var kind = message.KindCase.ToString().ToLowerInvariant();
        Metrics?.ControlDropped(kind, "too_large");
        Log.OversizedMessage(_logger, AgentId, kind, size, _options.MaxMessageBytes);
        var why = $"The {kind} message for agent '{AgentId}' is {size} bytes, over the {_options.MaxMessageBytes}-byte message limit (max_message_bytes).";
        ServerMessage? notice = message.KindCase switch
        {
            ServerMessage.KindOneofCase.Result => new ServerMessage { Result = new ActionResult { CallId = message.Result.CallId, Provider = message.Result.Provider, Error = new ResourceExhaustedException(why).ToError() } },
            ServerMessage.KindOneofCase.Memory => new ServerMessage { Memory = new MemoryResponse { CorrelationId = message.Memory.CorrelationId, Error = new ResourceExhaustedException(why).ToError() } },

            // An error that echoes what the agent sent (ids, names) is cut short: the agent still learns what failed.
            ServerMessage.KindOneofCase.Error => new ServerMessage
            {
                Error = new ErrorReply
                {
                    CorrelationId = message.Error.CorrelationId,
                    Error = new Error
                    {
                        Code = message.Error.Error?.Code ?? ErrorCode.Internal,
                        Message = Shortened(message.Error.Error?.Message ?? string.Empty),
                        Retryable = message.Error.Error?.Retryable ?? false,
                    },
                },
            },
            _ => null,
        };
        if (message.KindCase == ServerMessage.KindOneofCase.Call && _pushedCalls.TryRemove(message.Call.CallId, out var pending))
        {
            pending.TrySetException(new ResourceExhaustedException(why));
        }

        return notice;
    }

    private Activity? StartDeliverSpan(Envelope envelope, EventSubscription subscription)
    {
        var saved = Activity.Current;
        var span = LoomTelemetry.Source.StartActivity("deliver " + subscription.MetricGroup, ActivityKind.Producer, LoomTelemetry.ParentOf(envelope.Traceparent, envelope.Tracestate));
        Activity.Current = saved;
        if (span is not null)
        {
            span.SetTag("messaging.system", "loom");
            span.SetTag("messaging.operation.type", "send");
            span.SetTag("messaging.destination.name", envelope.Topic);
            span.SetTag("messaging.destination.subscription.name", subscription.Pattern);
            span.SetTag("messaging.message.id", envelope.Id);
            span.SetTag("loom.subscriber", AgentId);
        }

        return span;
    }

    private static void EndSpans(List<Activity>? spans)
    {
        if (spans is null || spans.Count == 0)
        {
            return;
        }

        foreach (var span in spans)
        {
            span.Stop();
        }

        spans.Clear();
    }

    private void Wake() => _wake.Writer.TryWrite(true);

    void ISubscriptionSignal.OnAvailable(EventSubscription subscription) => Wake();

    /// <summary>Queues a control message; waits (bounded) when the queue is full.</summary>
    private async ValueTask EnqueueAsync(ServerMessage message, CancellationToken token)
    {
        if (!_control.Writer.TryWrite(message))
        {
            using var bound = CancellationTokenSource.CreateLinkedTokenSource(token);
            bound.CancelAfter(_options.OutboundQueueFullTimeout);
            try
            {
                await _control.Writer.WriteAsync(message, bound.Token);
            }
            catch (OperationCanceledException) when (!token.IsCancellationRequested)
            {
                if (Warnings?.SlowReader.TryEnter() ?? true)
                {
                    Log.SlowReader(_logger, AgentId, _options.OutboundQueueCapacity);
                }

                throw StatusMapping.Status(
                    StatusCode.ResourceExhausted,
                    $"The agent did not read its stream for {_options.OutboundQueueFullTimeout.TotalSeconds:0.#} s while {_options.OutboundQueueCapacity} replies were waiting; read the stream while sending requests.",
                    ErrorCode.ResourceExhausted);
            }
        }

        Wake();
    }

    private ValueTask ReplyErrorAsync(string correlationId, LoomException error, CancellationToken token) =>
        EnqueueAsync(new ServerMessage { Error = new ErrorReply { CorrelationId = correlationId, Error = error.ToError() } }, token);

    // ---------------------------------------------------------------------------------------
    // Inbound messages
    // ---------------------------------------------------------------------------------------

    private async ValueTask HandleAsync(ClientMessage message, CancellationToken token)
    {
        switch (message.KindCase)
        {
            case ClientMessage.KindOneofCase.Publish:
                await PublishAsync(message.Publish, acked: false, token);
                break;
            case ClientMessage.KindOneofCase.PublishAcked:
                await PublishAsync(message.PublishAcked.Envelope ?? new Envelope(), acked: true, token);
                break;
            case ClientMessage.KindOneofCase.Consumer:
                await ConsumerRequestAsync(message.Consumer, token);
                break;
            case ClientMessage.KindOneofCase.Read:
                await ReadStreamAsync(message.Read, token);
                break;
            case ClientMessage.KindOneofCase.StreamAdmin:
                await StreamAdminAsync(message.StreamAdmin, token);
                break;
            case ClientMessage.KindOneofCase.Subscribe:
                await SubscribeAsync(message.Subscribe, token);
                break;
            case ClientMessage.KindOneofCase.Unsubscribe:
                await UnsubscribeAsync(message.Unsubscribe, token);
                break;
            case ClientMessage.KindOneofCase.Call:
                await StartCallAsync(message.Call, token);
                break;
            case ClientMessage.KindOneofCase.Result:
                CompletePushedCall(message.Result);
                break;
            case ClientMessage.KindOneofCase.Heartbeat:
                break; // Touch() already ran for the frame.
            case ClientMessage.KindOneofCase.Memory:
                await EnqueueAsync(new ServerMessage { Memory = MemoryRefused(message.Memory) ?? Bounded(message.Memory, ExecuteMemory(message.Memory)) }, token);
                break;
            case ClientMessage.KindOneofCase.Cancel:
                if (_outgoingCalls.TryRemove(message.Cancel.CallId, out var cts))
                {
                    await cts.CancelAsync();
                }

                break;
            default:
                await ReplyErrorAsync(string.Empty, new InvalidParamsException($"Unknown client message kind {(int)message.KindCase}; this bridge speaks loom.v1."), token);
                break;
        }
    }

    /// <summary>Runs a memory request, its writes counted against the identity's max_memory_bytes (a refusal counted and audited).</summary>
    private MemoryResponse ExecuteMemory(MemoryRequest request)
    {
        if (Quota?.Memory is not { } quota)
        {
            return _memory.Execute(request, Namespace);
        }

        var before = quota.Refused;
        var response = _memory.Execute(request, Namespace, quota);
        if (quota.Refused != before && response.Error is { } error)
        {
            LimitHit("max_memory_bytes", "memory_write", string.IsNullOrEmpty(request.Namespace) ? Namespace : request.Namespace, new ResourceExhaustedException(error.Message));
        }

        return response;
    }

    /// <summary>The refusal of a memory request its identity may not make (get and list read; set, delete and compare-and-set write); null when allowed.</summary>
    private MemoryResponse? MemoryRefused(MemoryRequest request)
    {
        if (Policy.IsUnrestricted)
        {
            return null;
        }

        var action = request.OpCase is MemoryRequest.OpOneofCase.Get or MemoryRequest.OpOneofCase.List ? PermissionAction.MemoryRead : PermissionAction.MemoryWrite;
        var ns = string.IsNullOrEmpty(request.Namespace) ? Namespace : request.Namespace;
        return Refused(action, ns) is { } refusal
            ? new MemoryResponse { CorrelationId = request.CorrelationId, Error = refusal.ToError() }
            : null;
    }

    /// <summary>
    /// A memory answer the agent could not receive is refused in its place (RESOURCE_EXHAUSTED):
    /// sent, it would end the stream. A list's refusal says how many entries would fit.
    /// </summary>
    private MemoryResponse Bounded(MemoryRequest request, MemoryResponse response)
    {
        var limit = _options.MaxForwardedBytes;
        var size = response.CalculateSize();
        if (size <= limit)
        {
            return response;
        }

        Metrics?.ControlDropped("memory", "too_large");
        var over = $"{size} bytes, over the {limit}-byte limit of what the bridge sends (max_message_bytes, {_options.MaxMessageBytes}, less room for framing)";
        string message;
        if (request.OpCase == MemoryRequest.OpOneofCase.List)
        {
            var used = 64 + Encoding.UTF8.GetByteCount(response.CorrelationId); // the refusal's own fields, generously
            var fits = 0;
            foreach (var entry in response.Entries)
            {
                used += FrameEncoder.EntryLength(entry.CalculateSize());
                if (used > limit)
                {
                    break;
                }

                fits++;
            }

            message = fits > 0
                ? $"The answer to this memory list ({response.Entries.Count} entries) is {over}. The first {fits} entries fit: ask again with limit {fits}, or with a longer prefix."
                : $"The answer to this memory list is {over}, and its first entry alone does not fit: read the keys one by one, or lower memory.max_value_bytes below max_message_bytes.";
        }
        else
        {
            var applied = request.OpCase == MemoryRequest.OpOneofCase.Set || (request.OpCase == MemoryRequest.OpOneofCase.CompareAndSet && response.Found)
                ? " The write itself took effect."
                : string.Empty;
            message = $"The answer to this memory {request.OpCase.ToString().ToLowerInvariant()} is {over}: its value cannot be sent over this bridge; keep memory.max_value_bytes below max_message_bytes.{applied}";
        }

        return new MemoryResponse { CorrelationId = response.CorrelationId, Error = new ResourceExhaustedException(message).ToError() };
    }

    private async ValueTask PublishAsync(Envelope envelope, bool acked, CancellationToken token)
    {
        if (string.IsNullOrEmpty(envelope.Id))
        {
            // Assigned before any check so an error can name the envelope it refers to.
            envelope.Id = Guid.NewGuid().ToString("N");
        }

        if (envelope.Payload.Length > _options.MaxPayloadBytes)
        {
            await ReplyErrorAsync(envelope.Id, new ResourceExhaustedException($"Payload of {envelope.Payload.Length} bytes on topic '{envelope.Topic}' exceeds the limit of {_options.MaxPayloadBytes} bytes."), token);
            return;
        }

        if (Refused(PermissionAction.Publish, envelope.Topic) is { } refusal)
        {
            await ReplyErrorAsync(envelope.Id, refusal, token);
            return;
        }

        if (Quota?.Publish(envelope.Id, envelope.Topic) is { } limited)
        {
            await ReplyErrorAsync(envelope.Id, LimitHit("publishes_per_second", "publish", envelope.Topic, limited), token);
            return;
        }

        envelope.Sender = AgentId;
        if (Streams?.Capture(envelope.Topic) is { } stream)
        {
            await PublishDurableAsync(envelope, stream, acked, token);
            return;
        }

        if (acked)
        {
            await ReplyErrorAsync(envelope.Id, new InvalidParamsException($"No durable stream captures topic '{envelope.Topic}', so a publish to it cannot be acknowledged: add a stream whose subjects match it (loom.yaml streams:, or create one from an agent or POST /v1/streams), or publish without an acknowledgement."), token);
            return;
        }

        await PublishOnBusAsync(envelope, token);
    }

    private async ValueTask PublishOnBusAsync(Envelope envelope, CancellationToken token)
    {
        try
        {
            var result = await _bus.PublishAsync(envelope, token);
            switch (result.Status)
            {
                case PublishStatus.TtlExpired:
                    await ReplyErrorAsync(envelope.Id, new TtlExpiredException($"Envelope '{envelope.Id}' on topic '{envelope.Topic}' expired before it was published."), token);
                    break;
                case PublishStatus.HopLimitExceeded:
                    await ReplyErrorAsync(envelope.Id, new LoomException(ErrorCode.HopLimitExceeded, $"Envelope '{envelope.Id}' on topic '{envelope.Topic}' passed the hop limit; is there a forwarding loop?"), token);
                    break;
                case PublishStatus.TooLarge:
                    await ReplyErrorAsync(envelope.Id, TooLarge(envelope), token);
                    break;
                case PublishStatus.MemoryLimit:
                    await ReplyErrorAsync(envelope.Id, new ResourceExhaustedException($"Envelope '{envelope.Id}' on topic '{envelope.Topic}' was refused: the bridge holds {_bus.QueuedBytes / (1024 * 1024)} MiB of queued events, its limit of {_bus.MaxQueuedBytes / (1024 * 1024)} MiB (max_queued_bytes), because subscribers read slower than publishers write. Retry later or publish slower."), token);
                    break;
                default:
                    break;
            }
        }
        catch (LoomException ex)
        {
            await ReplyErrorAsync(envelope.Id, ex, token);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Durable streams (docs/durability.md)
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Stores the event in its stream (the sequence is taken now, so one session's publishes keep
    /// their order), publishes it on the bus, and answers an acknowledged publish once the store
    /// is persisted, without holding up the read loop (up to <see cref="MaxDurableInFlight"/>).
    /// </summary>
    private async ValueTask PublishDurableAsync(Envelope envelope, DurableStream stream, bool acked, CancellationToken token)
    {
        if (_bus.Options.MaxEnvelopeBytes > 0 && envelope.CalculateSize() > _bus.Options.MaxEnvelopeBytes)
        {
            await ReplyErrorAsync(envelope.Id, TooLarge(envelope), token);
            return;
        }

        Task<long> stored;
        bool duplicate;
        try
        {
            (stored, duplicate) = stream.Append(envelope);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or ArgumentOutOfRangeException)
        {
            await ReplyErrorAsync(envelope.Id, new LoomException(ErrorCode.Unavailable, $"Envelope '{envelope.Id}' on topic '{envelope.Topic}' could not be stored in stream '{stream.Name}': {ex.Message}"), token);
            return;
        }

        if (!duplicate)
        {
            try
            {
                await _bus.PublishAsync(envelope, token); // live subscribers as before; the stored copy is what counts
            }
            catch (LoomException)
            {
                // Stored: durable consumers get it even when the ephemeral bus refused it.
            }
        }

        if (Interlocked.Increment(ref _durableInFlight) > MaxDurableInFlight)
        {
            await CompleteDurableAsync(stored, envelope.Id, envelope.Topic, stream.Name, duplicate, acked, token);
        }
        else
        {
            _ = CompleteDurableAsync(stored, envelope.Id, envelope.Topic, stream.Name, duplicate, acked, token);
        }
    }

    private async Task CompleteDurableAsync(Task<long> stored, string id, string topic, string streamName, bool duplicate, bool acked, CancellationToken token)
    {
        try
        {
            var sequence = await stored.WaitAsync(token);
            if (acked)
            {
                await EnqueueAsync(new ServerMessage { PublishAck = new PublishAck { CorrelationId = id, Stream = streamName, Sequence = (ulong)sequence, Duplicate = duplicate } }, token);
            }
        }
        catch (OperationCanceledException)
        {
            // The stream ended; the publisher learns nothing and retries with the same id.
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            if (acked)
            {
                await ReplyErrorAsync(id, new LoomException(ErrorCode.Unavailable, $"Envelope '{id}' on topic '{topic}' could not be persisted in stream '{streamName}': {ex.Message}"), token).AsTask().ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }
        catch (RpcException)
        {
            // The agent stopped reading its stream; it is ended by the write loop.
        }
        finally
        {
            Interlocked.Decrement(ref _durableInFlight);
        }
    }

    private ResourceExhaustedException TooLarge(Envelope envelope)
    {
        long headerChars = 0;
        foreach (var (key, value) in envelope.Headers)
        {
            headerChars += key.Length + value.Length;
        }

        return new ResourceExhaustedException(
            $"Envelope '{envelope.Id}' on topic '{envelope.Topic}' is {envelope.CalculateSize()} bytes encoded ({envelope.Payload.Length} bytes of payload, {envelope.Headers.Count} headers of {headerChars} characters), "
            + $"over the {_bus.Options.MaxEnvelopeBytes}-byte limit of an envelope (max_message_bytes, {_options.MaxMessageBytes}, less room for delivery): no subscriber could receive it. "
            + "Put less in its headers and payload, or store large data elsewhere (memory, a file, a URL) and publish a reference.");
    }

    private async ValueTask SubscribeAsync(SubscribeRequest request, CancellationToken token)
    {
        if (request.Subscription is null)
        {
            await ReplyErrorAsync(request.CorrelationId, new InvalidParamsException("subscribe needs a subscription with a pattern.", "/subscription"), token);
            return;
        }

        if (Refused(PermissionAction.Subscribe, request.Subscription.Pattern) is { } refusal)
        {
            await ReplyErrorAsync(request.CorrelationId, refusal, token);
            return;
        }

        EventSubscription? subscription = null;
        LoomException? failure = null;
        lock (_gate)
        {
            subscription = Array.Find(_subscriptions, s => SameSubscription(s, request.Subscription));
            if (subscription is null && SubscriptionLimit is (var max, true) && _subscriptions.Length >= max)
            {
                failure = TooManySubscriptions(max, _subscriptions.Length + 1, request.Subscription.Pattern);
            }
            else if (subscription is null && _subscriptions.Length >= _options.MaxSubscriptionsPerSession)
            {
                failure = new ResourceExhaustedException($"An agent may hold at most {_options.MaxSubscriptionsPerSession} subscriptions; unsubscribe from one first.");
            }
            else if (subscription is null)
            {
                try
                {
                    subscription = SubscribeCore(request.Subscription, "/subscription/pattern");
                    _subscriptions = [.. _subscriptions, subscription];
                }
                catch (LoomException ex)
                {
                    failure = ex;
                }
            }
        }

        if (failure is not null || subscription is null)
        {
            await ReplyErrorAsync(request.CorrelationId, failure ?? new InvalidParamsException("subscribe failed."), token);
            return;
        }

        SubscriptionsChanged?.Invoke(this);
        await EnqueueAsync(new ServerMessage { Ack = new Ack { CorrelationId = request.CorrelationId, SubscriptionId = subscription.Id } }, token);
    }

    private async ValueTask UnsubscribeAsync(UnsubscribeRequest request, CancellationToken token)
    {
        EventSubscription? removed;
        lock (_gate)
        {
            removed = Array.Find(_subscriptions, s => string.Equals(s.Id, request.SubscriptionId, StringComparison.Ordinal));
            if (removed is not null)
            {
                _subscriptions = Array.FindAll(_subscriptions, s => !ReferenceEquals(s, removed));
            }
        }

        if (removed is null)
        {
            await ReplyErrorAsync(request.CorrelationId, new InvalidParamsException($"This agent holds no subscription '{request.SubscriptionId}'.", "/subscription_id"), token);
            return;
        }

        removed.Dispose();
        SubscriptionsChanged?.Invoke(this);
        await EnqueueAsync(new ServerMessage { Ack = new Ack { CorrelationId = request.CorrelationId, SubscriptionId = removed.Id } }, token);
    }

    private async ValueTask StartCallAsync(ActionCall call, CancellationToken token)
    {
        if (string.IsNullOrEmpty(call.CallId))
        {
            await ReplyErrorAsync(string.Empty, new InvalidParamsException("An action call needs a call_id to correlate its result.", "/call_id"), token);
            return;
        }

        if (IsShuttingDown())
        {
            await EnqueueResultAsync(call.CallId, new LoomException(ErrorCode.Unavailable, "The bridge is shutting down; retry with another bridge."), token);
            return;
        }

        if (Refused(PermissionAction.Call, call.Capability) is { } refusal)
        {
            await EnqueueResultAsync(call.CallId, refusal, token);
            return;
        }

        if (Quota?.Call(call.Capability) is { } limited)
        {
            await EnqueueResultAsync(call.CallId, LimitHit("calls_per_second", "call", call.Capability, limited), token);
            return;
        }

        if (_outgoingCalls.Count >= _options.MaxInflightCallsPerSession)
        {
            await EnqueueResultAsync(call.CallId, new ResourceExhaustedException($"This agent already has {_options.MaxInflightCallsPerSession} calls in flight; wait for results before calling more."), token);
            return;
        }

        var cts = CancellationTokenSource.CreateLinkedTokenSource(token);
        if (!_outgoingCalls.TryAdd(call.CallId, cts))
        {
            cts.Dispose();
            await EnqueueResultAsync(call.CallId, new InvalidParamsException($"call_id '{call.CallId}' is already in flight; use a unique id per call.", "/call_id"), token);
            return;
        }

        _ = RunCallAsync(call, cts, token);
    }

    private async Task RunCallAsync(ActionCall call, CancellationTokenSource cts, CancellationToken streamToken)
    {
        try
        {
            var outcome = await _broker.InvokeAsync(BridgeService.ToActionRequest(call, AgentId, identity: Identity), cts.Token);
            var result = outcome.ToResult(call.CallId);
            if (result.CalculateSize() is var size && size > _options.MaxForwardedBytes)
            {
                Metrics?.ControlDropped("result", "too_large");
                result = new ActionResult { CallId = call.CallId, Provider = result.Provider, Error = new ResourceExhaustedException($"The result of '{call.Capability}' is {size} bytes, over the {_options.MaxForwardedBytes}-byte limit of what the bridge forwards (max_message_bytes, {_options.MaxMessageBytes}, less room for framing).").ToError() };
            }

            if (!streamToken.IsCancellationRequested)
            {
                await EnqueueAsync(new ServerMessage { Result = result }, streamToken);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or RpcException)
        {
            // The stream ended; the caller is gone.
        }
        finally
        {
            _outgoingCalls.TryRemove(new KeyValuePair<string, CancellationTokenSource>(call.CallId, cts));
            cts.Dispose();
        }
    }

    private ValueTask EnqueueResultAsync(string callId, LoomException error, CancellationToken token) =>
        EnqueueAsync(new ServerMessage { Result = new ActionResult { CallId = callId, Error = error.ToError() } }, token);

    private void CompletePushedCall(ActionResult result)
    {
        if (!_pushedCalls.TryRemove(result.CallId, out var pending))
        {
            Log.LateResult(_logger, AgentId, LogText.Clean(result.CallId));
            return;
        }

        if (result.OutcomeCase == ActionResult.OutcomeOneofCase.Error)
        {
            pending.TrySetException(LoomException.FromError(result.Error));
        }
        else
        {
            pending.TrySetResult(result.OutputJson.Memory);
        }
    }

    // ---------------------------------------------------------------------------------------
    // As a capability provider
    // ---------------------------------------------------------------------------------------

    async ValueTask<ReadOnlyMemory<byte>> ICapabilityProvider.InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken)
    {
        if (IsExpired)
        {
            throw new ProviderUnavailableException($"Agent '{AgentId}' has left.");
        }

        // Our own id: callers' ids are only unique per caller.
        var callId = "b" + Interlocked.Increment(ref _pushedCallSequence).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var call = new ActionCall
        {
            CallId = callId,
            Capability = invocation.Capability,
            DeadlineUnixMs = invocation.Deadline.ToUnixTimeMilliseconds(),
            Caller = invocation.Caller,
            ThreadId = invocation.ThreadId,
            Traceparent = invocation.Traceparent,
            Version = invocation.Version,
        };
        if (invocation.Headers is not null)
        {
            foreach (var (key, value) in invocation.Headers)
            {
                call.Headers[key] = value;
            }
        }

        if (invocation.Tracestate.Length != 0)
        {
            call.Headers[LoomTelemetry.TracestateHeader] = invocation.Tracestate;
        }

        // Sized before the input is copied. A call the agent could not receive is refused to the caller
        // here, so no provider sees it (sent, it would end this provider's stream and the broker would try the next).
        var input = invocation.InputJson;
        var size = call.CalculateSize() + (input.IsEmpty ? 0 : FrameEncoder.EntryLength(input.Length));
        if (size > _options.MaxForwardedBytes)
        {
            Metrics?.ControlDropped("call", "too_large");
            throw new ResourceExhaustedException(
                $"The call to '{invocation.Capability}' would reach its provider as a message of {size} bytes ({input.Length} bytes of input, {call.Headers.Count} headers), "
                + $"over the {_options.MaxForwardedBytes}-byte limit of what the bridge forwards (max_message_bytes, {_options.MaxMessageBytes}, less room for framing). "
                + "Send a smaller input, or store large data elsewhere (memory, a file, a URL) and pass a reference.");
        }

        call.InputJson = ByteString.CopyFrom(input.Span);

        // Synchronous continuations: the provider's read loop, which completes this, carries the result
        // through the broker straight into the caller's queue, without a hop through the thread pool.
        var pending = new TaskCompletionSource<ReadOnlyMemory<byte>>();
        _pushedCalls[callId] = pending;
        if (!_control.Writer.TryWrite(new ServerMessage { Call = call }))
        {
            _pushedCalls.TryRemove(callId, out _);
            throw new ResourceExhaustedException($"Agent '{AgentId}' has {_options.OutboundQueueCapacity} messages waiting to be read; it is not keeping up.");
        }

        Wake();
        try
        {
            return await pending.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            if (_pushedCalls.TryRemove(callId, out _))
            {
                if (_control.Writer.TryWrite(new ServerMessage { Cancel = new CancelCall { CallId = callId } }))
                {
                    Wake();
                }
                else
                {
                    Metrics?.ControlDropped("cancel", "queue_full");
                }
            }

            throw;
        }
    }

    // ---------------------------------------------------------------------------------------
    // End of life
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Hands over the capability registrations of a session that is ending, for the registry to
    /// unregister with other sessions' in one pass (<see cref="ActionBroker.UnregisterAll"/>).
    /// </summary>
    public List<CapabilityRegistration> TakeCapabilities()
    {
        lock (_gate)
        {
            var taken = _capabilities;
            _capabilities = [];
            return taken;
        }
    }

    /// <summary>Removes everything the agent held: subscriptions, capabilities, calls, the stream.</summary>
    public void Expire(string why)
    {
        if (Interlocked.Exchange(ref _expired, 1) == 1)
        {
            return;
        }

        EventSubscription[] subscriptions;
        List<CapabilityRegistration> capabilities;
        lock (_gate)
        {
            subscriptions = _subscriptions;
            _subscriptions = [];
            capabilities = _capabilities;
            _capabilities = [];
        }

        List<DurableConsumer> consumers;
        lock (_gate)
        {
            consumers = [.. _consumers];
            _consumers.Clear();
        }

        foreach (var consumer in consumers)
        {
            consumer.Detach(this);
        }

        // Its own registrations, not whatever is registered under its agent id: a new session of
        // the same agent may have registered since this one left the registry.
        _broker.UnregisterAll(capabilities);
        foreach (var s in subscriptions)
        {
            s.Dispose();
        }

        FailPushedCalls(why);
        DetachStream(StatusCode.Unavailable, $"The session ended: {why}.");
        StopHeartbeats();
        _wake.Writer.TryComplete();
    }
}
