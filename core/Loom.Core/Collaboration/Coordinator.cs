using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Google.Protobuf;
using Loom.Core.Collaboration.Internal;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Core.Collaboration;

/// <summary>
/// The collaboration operations of the core, over the <see cref="EventBus"/> and the
/// <see cref="ActionBroker"/>: <see cref="GatherAsync"/> (request/reply and fan-out/fan-in with the
/// strategies first, first-k, majority and all), <see cref="BarrierAsync"/> and
/// <see cref="ContractNetAsync"/>. Every operation has a deadline, honours cancellation and returns
/// its outcome as a value (who answered, who timed out, who failed); progress is published as
/// events (<c>_loom.collab.*</c>, and the contract-net exchange on <c>thread.{id}.broadcast</c>).
/// </summary>
/// <remarks>
/// Topic requests are published with <c>reply_to = _loom.reply.{op_id}</c> and
/// <c>correlation_id = op_id</c>; one subscription (<c>_loom.reply.*</c>) routes replies to the
/// operation by that id. A reply to an operation that has ended is counted as late and dropped: it
/// never reaches another operation. Use <see cref="For"/> to share one coordinator per bus, so
/// barriers are shared by remote and in-process agents.
/// </remarks>
public sealed partial class Coordinator : IDisposable
{
    /// <summary>Prefix of reply topics: <c>_loom.reply.{op_id}</c>.</summary>
    public const string ReplyPrefix = "_loom.reply.";

    /// <summary>Prefix of the progress events: <c>_loom.collab.{operation}.{event}</c>.</summary>
    public const string EventPrefix = "_loom.collab.";

    /// <summary>Header naming the kind of a collaboration record or request (cfp, bid, award, fallback, result, request, ...).</summary>
    public const string KindHeader = "loom-collab";

    /// <summary>Header carrying the operation id on requests and records.</summary>
    public const string OpHeader = "loom-collab-op";

    /// <summary>Owner of the coordinator's own subscription.</summary>
    public const string OwnerId = "_loom.collab";

    private const string JsonContentType = "application/json";
    private static readonly ConditionalWeakTable<EventBus, Coordinator> s_shared = new();

    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CoordinatorOptions _options;
    private readonly ConcurrentDictionary<string, PendingOp> _ops = new(StringComparer.Ordinal);
    private readonly EventSubscription _replies;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Task _pump;
    private long _started;
    private long _late;
    private int _lateRecordsInFlight;
    private const int MaxLateRecordsInFlight = 64;
    private long _duplicates;
    private long _overflow;
    private int _disposed;

    public Coordinator(EventBus bus, ActionBroker broker, TimeProvider? time = null, ILogger? logger = null, CoordinatorOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(broker);
        _bus = bus;
        _broker = broker;
        _time = time ?? bus.Time;
        _logger = logger ?? NullLogger.Instance;
        _options = options ?? new CoordinatorOptions();
        _replies = bus.Subscribe(ReplyPrefix + "*", new SubscriptionOptions(QosClass.Normal, OverflowPolicy.DropNewest, _options.ReplyQueueCapacity, null, OwnerId));
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>
    /// The coordinator of <paramref name="bus"/>, created on first use and shared by everyone who
    /// asks for the same bus (the bridge and the agents it hosts in-process).
    /// </summary>
    public static Coordinator For(EventBus bus, ActionBroker broker, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(broker);
        return s_shared.GetValue(bus, b => new Coordinator(b, broker, b.Time, logger));
    }

    /// <summary>The settings.</summary>
    public CoordinatorOptions Options => _options;

    /// <summary>Counters: operations, late and duplicate replies, barriers.</summary>
    public CoordinatorStats Stats => new(
        Interlocked.Read(ref _started),
        _ops.Count,
        Interlocked.Read(ref _late),
        Interlocked.Read(ref _duplicates),
        Interlocked.Read(ref _overflow),
        _barriers.Count);

    // -------------------------------------------------------------------------------------------
    // Gather: request/reply and fan-out/fan-in
    // -------------------------------------------------------------------------------------------

    /// <summary>
    /// Sends one request to a topic (or calls a capability on several agents) and joins the
    /// replies by <see cref="GatherRequest.Strategy"/> within the deadline. Never throws for what
    /// responders do: timeouts, failures and partial results are in the result.
    /// </summary>
    /// <param name="request">The operation.</param>
    /// <param name="caller">Agent id of the caller (the sender of the request envelope).</param>
    /// <param name="cancellationToken">Cancels the operation: outstanding calls are cancelled, the result says CANCELLED.</param>
    /// <exception cref="InvalidParamsException">A field is wrong (the path names it).</exception>
    /// <exception cref="CapabilityNotFoundException">Capability mode: nobody provides the capability.</exception>
    public async Task<GatherResult> GatherAsync(GatherRequest request, string caller, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        caller = string.IsNullOrEmpty(caller) ? "anonymous" : caller;
        ValidateGather(request);
        var timeout = Timeout(request.TimeoutMs, _options.DefaultTimeout, "/timeout_ms");
        var opId = NewOpId(request.OpId, "/op_id");
        var capabilityMode = request.Capability.Length != 0;
        List<string> known;
        if (capabilityMode)
        {
            known = request.Agents.Count != 0
                ? Distinct(request.Agents)
                : Distinct(_broker.FindProviders(request.Capability).Select(p => p.Provider.AgentId));
            if (known.Count == 0)
            {
                throw new CapabilityNotFoundException($"No provider is registered for capability '{request.Capability}'.");
            }
        }
        else
        {
            known = request.Agents.Count != 0 ? Distinct(request.Agents) : SubscribersOf(request.Topic, caller);
        }

        var start = _time.GetTimestamp();
        var op = new PendingOp(opId, _options.MaxPendingReplies, start);
        if (!TryTrack(opId, op))
        {
            throw new InvalidParamsException($"Operation id '{opId}' is already in flight; use a unique op_id per operation.", "/op_id");
        }

        Interlocked.Increment(ref _started);
        var join = new JoinState(request, known);
        using var deadline = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        using var calls = CancellationTokenSource.CreateLinkedTokenSource(linked.Token);
        var outstanding = new List<Task>();
        try
        {
            await RecordAsync("gather", "started", request.ThreadId, opId, caller, w =>
            {
                w.WriteString("target", capabilityMode ? request.Capability : request.Topic);
                w.WriteString("strategy", StrategyName(request.Strategy));
                WriteArray(w, "expected", known);
                w.WriteNumber("timeout_ms", (long)timeout.TotalMilliseconds);
            }).ConfigureAwait(false);

            if (capabilityMode)
            {
                var index = 0;
                foreach (var agent in known)
                {
                    outstanding.Add(CallOneAsync(op, request, agent, caller, opId + "-" + (index++).ToString(System.Globalization.CultureInfo.InvariantCulture), timeout, calls.Token));
                }
            }
            else
            {
                await PublishRequestAsync(request.Topic, request.Payload, request.ContentType, request.Headers, request.ThreadId, opId, caller, "request", timeout, linked.Token).ConfigureAwait(false);
            }

            join.Evaluate();
            while (!join.Done)
            {
                if (!await op.WaitAsync(linked.Token).ConfigureAwait(false))
                {
                    break;
                }

                while (!join.Done && op.TryRead(out var reply))
                {
                    if (!join.Add(reply))
                    {
                        Interlocked.Increment(ref _duplicates);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
            // The deadline or the caller: the outcome says which.
        }
        finally
        {
            _ops.TryRemove(opId, out _);
            CountLate(op);
            await calls.CancelAsync().ConfigureAwait(false);
        }

        var outcome = join.Done ? join.Outcome
            : cancellationToken.IsCancellationRequested ? CollabOutcome.Cancelled
            : CollabOutcome.Timeout;
        var result = join.ToResult(opId, outcome, Elapsed(start));
        result.ThreadId = request.ThreadId;
        CollabLog.Ended(_logger, "gather", opId, caller, outcome.ToString(), result.ElapsedMs);
        await RecordAsync("gather", "completed", request.ThreadId, opId, caller, w =>
        {
            w.WriteString("outcome", OutcomeName(outcome));
            WriteArray(w, "answered", result.Answered);
            WriteArray(w, "timed_out", result.TimedOut);
            WriteArray(w, "failed", result.Failed);
            w.WriteNumber("elapsed_ms", result.ElapsedMs);
        }).ConfigureAwait(false);
        return result;
    }

    private static void ValidateGather(GatherRequest request)
    {
        var hasTopic = request.Topic.Length != 0;
        var hasCapability = request.Capability.Length != 0;
        if (hasTopic == hasCapability)
        {
            throw new InvalidParamsException("A gather names exactly one target: topic (a request published to subscribers) or capability (a call to each provider).", hasTopic ? "/capability" : "/topic");
        }

        if (hasTopic && !Topics.IsValidTopic(request.Topic))
        {
            Topics.ValidateTopic(request.Topic);
        }

        if (!Enum.IsDefined(request.Strategy))
        {
            throw new InvalidParamsException($"Unknown join strategy {(int)request.Strategy}; use FIRST, FIRST_K, MAJORITY or ALL.", "/strategy");
        }

        if (request.Strategy == JoinStrategy.FirstK && request.K == 0)
        {
            throw new InvalidParamsException("The FIRST_K strategy needs k >= 1: the number of replies to wait for.", "/k");
        }

        if (!JsonPath.IsValidPointer(request.ComparePointer))
        {
            throw new InvalidParamsException($"compare_pointer '{request.ComparePointer}' is not a JSON pointer; write \"\" for the whole reply or \"/field/0\".", "/compare_pointer");
        }

        foreach (var (agent, i) in request.Agents.Select((a, i) => (a, i)))
        {
            if (string.IsNullOrWhiteSpace(agent))
            {
                throw new InvalidParamsException("An agent id in agents is empty.", $"/agents/{i}");
            }
        }
    }

    private async Task CallOneAsync(PendingOp op, GatherRequest request, string agent, string caller, string callId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        ActionOutcome outcome;
        try
        {
            outcome = await _broker.InvokeAsync(
                new ActionRequest
                {
                    Capability = request.Capability,
                    Version = request.Version.Length == 0 ? null : request.Version,
                    InputJson = request.Payload.IsEmpty ? "{}"u8.ToArray() : request.Payload.Memory,
                    Timeout = timeout,
                    Caller = caller,
                    ThreadId = request.ThreadId,
                    TargetAgent = agent,
                    CallId = callId,
                    Headers = request.Headers.Count == 0 ? null : new Dictionary<string, string>(request.Headers, StringComparer.Ordinal),
                },
                cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        if (outcome.Error is { Code: ErrorCode.Cancelled } && cancellationToken.IsCancellationRequested)
        {
            return; // the operation ended or was cancelled: not an answer
        }

        var reply = new Reply
        {
            Responder = outcome.AgentId ?? agent,
            ContentType = JsonContentType,
            LatencyMs = Elapsed(op.Start),
        };
        if (outcome.Error is { } error)
        {
            reply.Error = error;
            reply.Responder = agent;
        }
        else
        {
            reply.Payload = ByteString.CopyFrom(outcome.OutputJson.Span);
        }

        if (!op.TryOffer(reply))
        {
            if (outcome.Error is null)
            {
                Interlocked.Increment(ref _late);
            }
        }
    }

    // -------------------------------------------------------------------------------------------
    // Replies
    // -------------------------------------------------------------------------------------------

    private async Task PumpAsync()
    {
        try
        {
            while (await _replies.WaitToReadAsync(_lifetime.Token).ConfigureAwait(false))
            {
                while (_replies.TryRead(out var envelope))
                {
                    Dispatch(envelope);
                }
            }
        }
        catch (OperationCanceledException) when (_lifetime.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
        }
        catch (Exception ex)
        {
            CollabLog.PumpFailed(_logger, ex);
        }
    }

    private void Dispatch(Envelope envelope)
    {
        var opId = envelope.Topic.Length > ReplyPrefix.Length ? envelope.Topic[ReplyPrefix.Length..] : "";
        if (_ops.TryGetValue(opId, out var op))
        {
            var reply = new Reply
            {
                Responder = envelope.Sender,
                Payload = envelope.Payload,
                ContentType = envelope.ContentType,
                EnvelopeId = envelope.Id,
                LatencyMs = Elapsed(op.Start),
            };
            reply.Headers.Add(envelope.Headers);
            if (op.TryOffer(reply))
            {
                return;
            }

            if (op.Overflowed)
            {
                Interlocked.Increment(ref _overflow);
                return;
            }
        }

        Interlocked.Increment(ref _late);
        CollabLog.LateReply(_logger, envelope.Sender, opId);
        RecordLate(envelope.ThreadId, opId, envelope.Sender);
    }

    /// <summary>
    /// Records a late reply on <c>_loom.collab.reply.late</c> without waiting: anyone can send late
    /// replies, so their records must neither hold up reply routing (a full blocking subscriber of
    /// <c>_loom.collab.&gt;</c> would make the publish wait) nor pile up. At most
    /// <see cref="MaxLateRecordsInFlight"/> wait at once; beyond that a late reply is only counted.
    /// </summary>
    private void RecordLate(string threadId, string opId, string responder)
    {
        if (Interlocked.Increment(ref _lateRecordsInFlight) > MaxLateRecordsInFlight)
        {
            Interlocked.Decrement(ref _lateRecordsInFlight);
            return;
        }

        var pending = RecordAsync("reply", "late", threadId, opId, responder, w => w.WriteString("responder", responder));
        if (pending.IsCompleted)
        {
            Interlocked.Decrement(ref _lateRecordsInFlight);
            pending.GetAwaiter().GetResult(); // completed: this does not block (failures are logged inside)
            return;
        }

        _ = FinishAsync(pending);

        async Task FinishAsync(ValueTask record)
        {
            try
            {
                await record.ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref _lateRecordsInFlight);
            }
        }
    }

    private void CountLate(PendingOp op)
    {
        op.Complete();
        while (op.TryRead(out var reply))
        {
            if (reply.Error is null)
            {
                Interlocked.Increment(ref _late);
            }
        }
    }

    private async ValueTask PublishRequestAsync(string topic, ByteString payload, string contentType, IDictionary<string, string> headers, string threadId, string opId, string caller, string kind, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var envelope = new Envelope
        {
            Topic = topic,
            Sender = caller,
            ThreadId = threadId,
            CorrelationId = opId,
            ReplyTo = ReplyPrefix + opId,
            Payload = payload,
            ContentType = contentType.Length == 0 ? JsonContentType : contentType,
            TtlMs = (uint)Math.Clamp(Math.Ceiling(timeout.TotalMilliseconds), 1, uint.MaxValue),
        };
        envelope.Headers.Add(headers);
        envelope.Headers.TryAdd(KindHeader, kind);
        envelope.Headers[OpHeader] = opId;
        await _bus.PublishAsync(envelope, cancellationToken).ConfigureAwait(false);
    }

    // -------------------------------------------------------------------------------------------
    // Records on the event stream
    // -------------------------------------------------------------------------------------------

    private ValueTask RecordAsync(string operation, string kind, string threadId, string opId, string caller, Action<Utf8JsonWriter> body) =>
        PublishRecordAsync(EventPrefix + operation + "." + kind, kind, threadId, opId, caller, body);

    private async ValueTask PublishRecordAsync(string topic, string kind, string threadId, string opId, string caller, Action<Utf8JsonWriter> body)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("kind", kind);
            writer.WriteString("op_id", opId);
            body(writer);
            writer.WriteEndObject();
        }

        var envelope = new Envelope
        {
            Topic = topic,
            Sender = caller,
            ThreadId = threadId,
            CorrelationId = opId,
            ContentType = JsonContentType,
            Payload = ByteString.CopyFrom(buffer.WrittenSpan),
        };
        envelope.Headers[KindHeader] = kind;
        envelope.Headers[OpHeader] = opId;
        try
        {
            await _bus.PublishAsync(envelope, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is LoomException or ObjectDisposedException or OperationCanceledException)
        {
            CollabLog.RecordFailed(_logger, kind, opId, topic, ex.Message);
        }
    }

    private static void WriteArray(Utf8JsonWriter writer, string name, IEnumerable<string> values)
    {
        writer.WriteStartArray(name);
        foreach (var value in values)
        {
            writer.WriteStringValue(value);
        }

        writer.WriteEndArray();
    }

    // -------------------------------------------------------------------------------------------
    // Helpers
    // -------------------------------------------------------------------------------------------

    // One bound for every pending operation (gather and contract-net alike), like MaxBarriers for
    // barriers: a caller cannot pin unbounded reply channels for the operations' timeouts.
    private bool TryTrack(string opId, PendingOp op)
    {
        if (_ops.Count >= _options.MaxOperations)
        {
            throw new ResourceExhaustedException($"{_options.MaxOperations} collaboration operations are in flight; wait for some to finish or raise CoordinatorOptions.MaxOperations.");
        }

        return _ops.TryAdd(opId, op);
    }

    /// <summary>
    /// The distinct agents holding a subscription that matches <paramref name="topic"/>: the caller,
    /// Loom's own and catch-all taps (pattern <c>&gt;</c>, such as <c>loom logs</c>) excluded.
    /// </summary>
    private List<string> SubscribersOf(string topic, string caller)
    {
        var owners = new List<string>();
        foreach (var subscription in _bus.Subscriptions)
        {
            var owner = subscription.Owner;
            if (string.IsNullOrEmpty(owner) || owner == caller || owner.StartsWith("_loom", StringComparison.Ordinal)
                || subscription.Pattern == ">" || !Topics.Matches(subscription.Pattern, topic))
            {
                continue;
            }

            if (!owners.Contains(owner, StringComparer.Ordinal))
            {
                owners.Add(owner);
            }
        }

        owners.Sort(StringComparer.Ordinal);
        return owners;
    }

    private static List<string> Distinct(IEnumerable<string> values) => values.Distinct(StringComparer.Ordinal).ToList();

    private TimeSpan Timeout(uint timeoutMs, TimeSpan fallback, string path)
    {
        var timeout = timeoutMs == 0 ? fallback : TimeSpan.FromMilliseconds(timeoutMs);
        if (timeout > _options.MaxTimeout)
        {
            throw new InvalidParamsException($"A timeout of {timeout.TotalMilliseconds:0} ms is longer than the limit of {_options.MaxTimeout.TotalMilliseconds:0} ms.", path);
        }

        return timeout;
    }

    private static string NewOpId(string given, string path)
    {
        if (given.Length == 0)
        {
            return Guid.NewGuid().ToString("N");
        }

        if (given.Length > 128 || !Topics.IsValidTopic("x." + given) || given.Contains('.', StringComparison.Ordinal))
        {
            throw new InvalidParamsException($"Operation id '{given}' is invalid: 1-128 characters of A-Z a-z 0-9 _ - :.", path);
        }

        return given;
    }

    private uint Elapsed(long start) => (uint)Math.Min(uint.MaxValue, _time.GetElapsedTime(start).TotalMilliseconds);

    internal static string OutcomeName(CollabOutcome outcome) => outcome switch
    {
        CollabOutcome.Completed => "completed",
        CollabOutcome.Timeout => "timeout",
        CollabOutcome.Cancelled => "cancelled",
        CollabOutcome.NoQuorum => "no_quorum",
        CollabOutcome.Failed => "failed",
        CollabOutcome.NoBids => "no_bids",
        CollabOutcome.Pending => "pending",
        _ => "unspecified",
    };

    private static string StrategyName(JoinStrategy strategy) => strategy switch
    {
        JoinStrategy.FirstK => "first_k",
        JoinStrategy.Majority => "majority",
        JoinStrategy.All => "all",
        _ => "first",
    };

    /// <summary>Stops routing replies; operations in flight end by their deadlines.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _lifetime.Cancel();
        _replies.Dispose();
        try
        {
            _pump.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
        }

        _lifetime.Dispose();
    }
}
