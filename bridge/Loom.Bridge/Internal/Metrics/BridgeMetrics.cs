using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Loom.Bridge.Internal.Metrics;

/// <summary>
/// The bridge's own instruments (sessions, registrations, heartbeats, control queues, bytes on
/// the wire, the process) on the bridge's meter. Counters that are bumped per frame or per event
/// are plain fields read by observable instruments, so the hot paths pay one interlocked add.
/// </summary>
internal sealed class BridgeMetrics
{
    private readonly ConcurrentDictionary<string, WireCounters> _wire = new(StringComparer.Ordinal);
    private readonly Counter<long> _registrations;
    private readonly Counter<long> _sessionsEnded;
    private readonly Counter<long> _controlDropped;
    private readonly Counter<long> _connectionsRefused;
    private readonly Counter<long> _permissionDenied;
    private readonly Counter<long> _auditRecords;
    private readonly Counter<long> _auditDropped;
    private readonly Counter<long> _rateLimited;
    private long _reconnects;
    private long _heartbeatsMissed;
    private long _streamsOpened;

    private static readonly (Loom.Core.MemoryStoreLimit Limit, string Label)[] MemoryLimits =
    [
        (Loom.Core.MemoryStoreLimit.TotalBytes, "total_bytes"),
        (Loom.Core.MemoryStoreLimit.NamespaceBytes, "namespace_bytes"),
        (Loom.Core.MemoryStoreLimit.TotalEntries, "total_entries"),
        (Loom.Core.MemoryStoreLimit.NamespaceEntries, "namespace_entries"),
        (Loom.Core.MemoryStoreLimit.Namespaces, "namespaces"),
    ];

    public BridgeMetrics(Meter meter, Loom.Core.MemoryStore memory, Func<SessionRegistry?> sessions, Func<Loom.Core.Collaboration.CoordinatorStats?> collaboration)
    {
        meter.CreateObservableGauge("loom.agents.connected", () => sessions()?.CountByState().Connected ?? 0, "{agent}", "Agents with an attached EventStream.");
        meter.CreateObservableGauge("loom.sessions", () => ObserveSessions(sessions()), "{session}", "Live sessions by state: connected (stream attached) or detached (waiting for a reconnect or expiry).");
        meter.CreateObservableGauge("loom.session.outbound_queue.depth", () => sessions()?.CountByState().ControlQueued ?? 0, "{message}", "Control messages (acks, results, pushed calls, pings) waiting in the sessions' outbound queues, summed.");
        meter.CreateObservableCounter("loom.reconnects", () => Volatile.Read(ref _reconnects), "{registration}", "Registrations that resumed a live session of the same agent id.");
        meter.CreateObservableCounter("loom.heartbeats.missed", () => Volatile.Read(ref _heartbeatsMissed), "{heartbeat}", "Heartbeat intervals an agent let pass without a sign of life (counted from 1.5 intervals of silence, then per interval).");
        meter.CreateObservableCounter("loom.streams.opened", () => Volatile.Read(ref _streamsOpened), "{stream}", "EventStreams attached to sessions.");
        meter.CreateObservableCounter("loom.grpc.received", () => ObserveWire(static w => w.BytesIn), "By", "Bytes of gRPC messages received (with their 5-byte framing), by method.");
        meter.CreateObservableCounter("loom.grpc.sent", () => ObserveWire(static w => w.BytesOut), "By", "Bytes of gRPC messages sent (with their 5-byte framing), by method.");
        meter.CreateObservableCounter("loom.grpc.messages.received", () => ObserveWire(static w => w.MessagesIn), "{message}", "gRPC messages (frames, on EventStream) received, by method.");
        meter.CreateObservableCounter("loom.grpc.messages.sent", () => ObserveWire(static w => w.MessagesOut), "{message}", "gRPC messages (frames, on EventStream) sent, by method.");
        meter.CreateObservableGauge("loom.connections.open", () => OpenConnections?.Invoke() ?? 0, "{connection}", "TCP connections open on the gRPC and HTTP ports.");
        _connectionsRefused = meter.CreateCounter<long>("loom.connections.refused", "{connection}", "Connections closed by the bridge's connection limits, by reason: limit, per_address_limit, handshake_timeout.");
        _registrations = meter.CreateCounter<long>("loom.registrations", "{registration}", "RegisterAgent calls by result: new, reconnect or rejected (invalid, past a limit such as max_sessions, or while shutting down).");
        _sessionsEnded = meter.CreateCounter<long>("loom.sessions.ended", "{session}", "Sessions removed, by reason: left (clean half-close), heartbeat_timeout, shutdown, rejected.");
        meter.CreateObservableCounter("loom.collab.operations", () => collaboration()?.Started ?? 0, "{operation}", "Collaboration operations started (gather, barrier, contract-net).");
        meter.CreateObservableGauge("loom.collab.in_flight", () => collaboration()?.InFlight ?? 0, "{operation}", "Gathers and contract-nets waiting for replies.");
        meter.CreateObservableGauge("loom.collab.barriers", () => collaboration()?.Barriers ?? 0, "{barrier}", "Barriers alive.");
        meter.CreateObservableCounter("loom.collab.replies.dropped", () => ObserveDroppedReplies(collaboration()), "{reply}", "Collaboration replies counted and dropped, by reason: late (after the operation ended), duplicate (a responder's second reply), overflow (too many unread).");
        meter.CreateObservableGauge("loom.memory", () => memory.TotalBytes, "By", "Bytes the memory store holds: each entry's key (UTF-8) and value plus 192; writes are refused at memory.max_total_bytes.");
        meter.CreateObservableGauge("loom.memory.limit", () => memory.MaxTotalBytes, "By", "The memory store's limit of bytes in force (memory.max_total_bytes).");
        meter.CreateObservableGauge("loom.memory.entries", () => memory.TotalEntries, "{entry}", "Entries the memory store holds (expired ones until they are removed, within a second).");
        meter.CreateObservableCounter("loom.memory.writes.refused", () => ObserveMemoryRefusals(memory), "{write}", "Memory writes refused by the store's limits, by reason: total_bytes, namespace_bytes, total_entries, namespace_entries, namespaces.");
        _permissionDenied = meter.CreateCounter<long>("loom.permission.denied", "{request}", "Requests refused with PERMISSION_DENIED by the identities' permissions, by action: publish, subscribe, provide, call, memory_read, memory_write, collaboration.");
        _auditRecords = meter.CreateCounter<long>("loom.audit.records", "{record}", "Audit records written (to the file and/or _loom.audit.{kind}), by kind: refusal, credential, admin, registration, limit.");
        _auditDropped = meter.CreateCounter<long>("loom.audit.dropped", "{record}", "Audit records lost, by reason: queue_full (the writer was behind; records are never waited for), shutdown (left past the dispose bound), file_error (the file could not be written), event_refused (not published on _loom.audit.*).");
        _rateLimited = meter.CreateCounter<long>("loom.rate_limited", "{request}", "Requests refused with RESOURCE_EXHAUSTED by a per-identity limit, by kind: publishes_per_second, calls_per_second, max_subscriptions, max_capabilities, max_memory_bytes.");
        _controlDropped = meter.CreateCounter<long>("loom.control_messages.dropped", "{message}", "Messages for an agent that were not delivered, by kind and reason: queue_full, stream_ended, too_large (over max_message_bytes; refused to the sender instead).");

        // The process, under the names Prometheus client libraries use.
        var process = Process.GetCurrentProcess();
        var startTime = new DateTimeOffset(process.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds() / 1000.0;
        meter.CreateObservableCounter("process.cpu", () => Environment.CpuUsage.TotalTime.TotalSeconds, "s", "Total user and system CPU time spent by the process.");
        meter.CreateObservableGauge("process.resident_memory", () => Environment.WorkingSet, "By", "Resident memory of the process.");
        meter.CreateObservableGauge("process.start_time", () => startTime, "s", "Start time of the process since the Unix epoch.");
        meter.CreateObservableGauge("loom.gc.heap", () => GC.GetTotalMemory(forceFullCollection: false), "By", "Bytes of the managed heap thought to be allocated.");
        meter.CreateObservableGauge("loom.threadpool.threads", () => ThreadPool.ThreadCount, "{thread}", "Thread-pool threads.");
        meter.CreateObservableGauge("loom.threadpool.queue.length", () => ThreadPool.PendingWorkItemCount, "{item}", "Work items waiting for a thread-pool thread.");
    }

    /// <summary>Counts a request refused by a permission.</summary>
    public void PermissionDenied(PermissionAction action) =>
        _permissionDenied.Add(1, new KeyValuePair<string, object?>("action", PermissionPolicy.NameOf(action)));

    public void AuditRecorded(string kind) => _auditRecords.Add(1, new KeyValuePair<string, object?>("kind", kind));

    public void AuditDropped(string reason, long count = 1) => _auditDropped.Add(count, new KeyValuePair<string, object?>("reason", reason));

    /// <summary>Counts a request refused by a per-identity limit (<paramref name="kind"/>: the limit's key).</summary>
    public void RateLimited(string kind) => _rateLimited.Add(1, new KeyValuePair<string, object?>("kind", kind));

    private static IEnumerable<Measurement<long>> ObserveMemoryRefusals(Loom.Core.MemoryStore memory)
    {
        foreach (var (limit, label) in MemoryLimits)
        {
            yield return new Measurement<long>(memory.Refused(limit), new KeyValuePair<string, object?>("reason", label));
        }
    }

    private static IEnumerable<Measurement<long>> ObserveDroppedReplies(Loom.Core.Collaboration.CoordinatorStats? stats)
    {
        if (stats is null)
        {
            yield break;
        }

        yield return new Measurement<long>(stats.LateReplies, new KeyValuePair<string, object?>("reason", "late"));
        yield return new Measurement<long>(stats.DuplicateReplies, new KeyValuePair<string, object?>("reason", "duplicate"));
        yield return new Measurement<long>(stats.OverflowReplies, new KeyValuePair<string, object?>("reason", "overflow"));
    }

    public void Registered(bool reconnected)
    {
        _registrations.Add(1, new KeyValuePair<string, object?>("result", reconnected ? "reconnect" : "new"));
        if (reconnected)
        {
            Interlocked.Increment(ref _reconnects);
        }
    }

    public void RegistrationRejected() => _registrations.Add(1, new KeyValuePair<string, object?>("result", "rejected"));

    public void SessionEnded(string reason) => _sessionsEnded.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void HeartbeatsMissed(long count) => Interlocked.Add(ref _heartbeatsMissed, count);

    public void StreamOpened() => Interlocked.Increment(ref _streamsOpened);

    /// <summary>Reads the open connections (set by the bridge once its connection gate exists).</summary>
    public Func<int>? OpenConnections { get; set; }

    public void ConnectionRefused(string reason) => _connectionsRefused.Add(1, new KeyValuePair<string, object?>("reason", reason));

    public void ControlDropped(string kind, string reason, long count = 1) =>
        _controlDropped.Add(count, new KeyValuePair<string, object?>("kind", kind), new KeyValuePair<string, object?>("reason", reason));

    /// <summary>The wire counters of one gRPC method (a path such as <c>/loom.v1.Bridge/EventStream</c>; callers pass only served methods).</summary>
    public WireCounters Wire(string method) => _wire.TryGetValue(method, out var w) ? w : _wire.GetOrAdd(method, static _ => new WireCounters());

    private IEnumerable<Measurement<long>> ObserveWire(Func<WireCounters, long> read)
    {
        foreach (var (method, counters) in _wire)
        {
            yield return new Measurement<long>(read(counters), new KeyValuePair<string, object?>("method", method));
        }
    }

    private static IEnumerable<Measurement<long>> ObserveSessions(SessionRegistry? sessions)
    {
        var counts = sessions?.CountByState() ?? default;
        yield return new Measurement<long>(counts.Connected, new KeyValuePair<string, object?>("state", "connected"));
        yield return new Measurement<long>(counts.Detached, new KeyValuePair<string, object?>("state", "detached"));
    }
}

/// <summary>Sessions counted by state at one moment.</summary>
internal readonly record struct SessionCounts(int Connected, int Detached, long ControlQueued);
