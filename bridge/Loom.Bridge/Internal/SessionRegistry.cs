using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Loom.Bridge.Internal.Metrics;
using Loom.Core;
using Grpc.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

/// <summary>
/// Live agent sessions by agent id and session id; expires agents whose heartbeats lapse. One
/// sweep runs at a time, and it ends sessions in batches of <see cref="MaxRemovalsPerBatch"/>.
/// </summary>
internal sealed partial class SessionRegistry : IDisposable
{
    private static readonly TimeSpan SweepPeriod = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Sessions ended per batch: their capabilities leave the broker together, and between two
    /// batches the sweep yields its thread (a flood's expiry must not hold up requests and healthy agents).
    /// </summary>
    private const int MaxRemovalsPerBatch = 256;

    private readonly BridgeOptions _options;
    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly MemoryStore _memory;
    private readonly AgentDirectory _agents;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, AgentSession> _byAgent = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, AgentSession> _bySession = new(StringComparer.Ordinal);
    private readonly Lock _registerGate = new();
    private readonly BridgeMetrics? _metrics;
    private readonly BridgeWarnings _warnings;
    private readonly CancellationTokenSource _stopLoops = new();
    private readonly int _maxSessions;
    private volatile bool _shuttingDown;

    /// <summary>Where registrations, refusals and limit hits are recorded (null: auditing is off).</summary>
    public AuditLog? Audit { get; init; }

    /// <summary>The per-identity limits' live state.</summary>
    public IdentityQuotas Quotas { get; } = new();

    public SessionRegistry(BridgeOptions options, EventBus bus, ActionBroker broker, MemoryStore memory, AgentDirectory agents, TimeProvider time, ILogger logger, BridgeMetrics? metrics = null)
    {
        _metrics = metrics;
        _options = options;
        _bus = bus;
        _broker = broker;
        _memory = memory;
        _agents = agents;
        _time = time;
        _logger = logger;
        _warnings = new BridgeWarnings(logger, time);
        _maxSessions = options.MaxSessions > 0 ? options.MaxSessions : DefaultMaxSessions();
        _bus.SlowConsumer += OnSlowConsumer;
    }

    public int Count => _byAgent.Count;

    /// <summary>The limit of sessions in force (configured, or derived from the machine's memory).</summary>
    public int MaxSessions => _maxSessions;

    /// <summary>
    /// One session per MiB of the memory the process may use, between 1,024 and 65,536: a session
    /// with a few subscriptions and capabilities costs tens to a hundred-odd KB, so this leaves most
    /// of the memory to what they queue and store (24 GiB gives 24,576).
    /// </summary>
    /// <summary>The durable streams sessions publish to and consume from (null: none configured).</summary>
    public Internal.Streams.StreamHost? Streams { get; init; }

    public static int DefaultMaxSessions() =>
        (int)Math.Clamp(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1024L * 1024), 1024, 65536);

    public bool IsShuttingDown => _shuttingDown;

    public void Start()
    {
        // Loops rather than periodic timer callbacks: a long sweep (a flood of expiries, a large
        // memory store) delays the next one instead of running beside it on another thread.
        _ = RunEveryAsync(SweepPeriod, SweepAsync, "session sweep");
        _ = RunEveryAsync(TimeSpan.FromSeconds(1), _ =>
        {
            _memory.Sweep();
            return Task.CompletedTask;
        }, "memory sweep");
    }

    private async Task RunEveryAsync(TimeSpan period, Func<CancellationToken, Task> work, string name)
    {
        var token = _stopLoops.Token;
        using var timer = new PeriodicTimer(period, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(token))
            {
                try
                {
                    await work(token);
                }
                catch (Exception ex) when (!token.IsCancellationRequested && ex is not OutOfMemoryException)
                {
                    Log.LoopFailed(_logger, ex, name);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Disposed.
        }
    }

    public bool TryGetByAgent(string agentId, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out AgentSession session) =>
        _byAgent.TryGetValue(agentId, out session);

    public bool TryGetBySession(string sessionId, out AgentSession session) =>
        _bySession.TryGetValue(sessionId, out session!) && !session.IsExpired;

    /// <summary>Registers (or re-registers) an agent; <paramref name="identity"/>, when given, binds the agent id to it.</summary>
    public RegisterAgentResponse Register(RegisterAgentRequest request, string? identity = null, PermissionPolicy? policy = null, string? remote = null)
    {
        try
        {
            var response = RegisterCore(request, identity, policy ?? PermissionPolicy.Unrestricted, remote);
            _metrics?.Registered(response.Reconnected);
            Audit?.Record(new AuditRecord(AuditRecord.Registration, response.Reconnected ? "reconnect" : "register", "ok") { Identity = identity, AgentId = response.AgentId, Session = response.SessionId, Remote = remote });
            return response;
        }
        catch (LoomException ex)
        {
            _metrics?.RegistrationRejected();
            if (ex.Code != ErrorCode.ResourceExhausted || !ex.Message.StartsWith("Identity '", StringComparison.Ordinal))
            {
                // Limit hits were recorded where they were found.
                Audit?.Record(new AuditRecord(ex.Code == ErrorCode.PermissionDenied ? AuditRecord.Refusal : AuditRecord.Registration, "register", ex.Code == ErrorCode.PermissionDenied ? "denied" : "rejected")
                {
                    Identity = identity,
                    AgentId = string.IsNullOrEmpty(request.AgentId) ? null : request.AgentId,
                    Reason = ex.Message,
                    Remote = remote,
                });
            }

            if (_warnings.RegistrationRejected.TryEnter())
            {
                Log.RegistrationRejected(_logger, LogText.Clean(request.AgentId), LogText.Clean(ex.Message, LogText.Long));
            }

            throw;
        }
    }

    /// <summary>Sessions by state, and the control messages queued for them, now.</summary>
    public SessionCounts CountByState()
    {
        int connected = 0, detached = 0;
        long queued = 0;
        foreach (var session in _byAgent.Values)
        {
            if (session.HasStream)
            {
                connected++;
            }
            else
            {
                detached++;
            }

            queued += session.ControlQueueDepth;
        }

        return new SessionCounts(connected, detached, queued);
    }

    /// <summary>Counts a request refused by a permission, audits it, and hands the refusal back.</summary>
    public PermissionDeniedException Denied(PermissionAction action, PermissionDeniedException refusal, ServerCallContext? context = null, string? resource = null, string? agentId = null)
    {
        _metrics?.PermissionDenied(action);
        Audit?.Record(new AuditRecord(AuditRecord.Refusal, PermissionPolicy.NameOf(action), "denied")
        {
            Identity = context is null ? null : AuthInterceptor.IdentityOf(context),
            AgentId = agentId,
            Resource = resource,
            Reason = refusal.Message,
            Remote = context?.Peer,
        });
        return refusal;
    }

    /// <summary>Audits a refusal that is not a permission rule's (identity binding: another identity's session).</summary>
    public void AuditRefusal(string action, string message, ServerCallContext context, string? agentId = null, string? session = null) =>
        Audit?.Record(new AuditRecord(AuditRecord.Refusal, action, "denied") { Identity = AuthInterceptor.IdentityOf(context), AgentId = agentId, Session = session, Reason = message, Remote = context.Peer });

    /// <summary>Counts and audits a request refused by a per-identity limit outside a session (ForwardAction, collaboration).</summary>
    public ResourceExhaustedException LimitHit(string kind, string action, string? resource, ResourceExhaustedException refusal, ServerCallContext context, string? agentId = null)
    {
        _metrics?.RateLimited(kind);
        Audit?.Record(new AuditRecord(AuditRecord.Limit, action, "limited") { Identity = AuthInterceptor.IdentityOf(context), AgentId = agentId, Resource = resource, Reason = refusal.Message, Remote = context.Peer });
        return refusal;
    }

    /// <summary>A registration asks for nothing its identity may not have: its subscriptions and capabilities.</summary>
    private void CheckPermissions(RegisterAgentRequest request, PermissionPolicy policy)
    {
        if (policy.IsUnrestricted)
        {
            return;
        }

        foreach (var subscription in request.Subscriptions)
        {
            if (policy.Check(PermissionAction.Subscribe, subscription.Pattern) is { } refusal)
            {
                _metrics?.PermissionDenied(PermissionAction.Subscribe);
                throw refusal; // audited by Register, with the caller
            }
        }

        foreach (var capability in request.Capabilities)
        {
            if (policy.Check(PermissionAction.Provide, capability.Name) is { } refusal)
            {
                _metrics?.PermissionDenied(PermissionAction.Provide);
                throw refusal;
            }
        }
    }

    private RegisterAgentResponse RegisterCore(RegisterAgentRequest request, string? identity, PermissionPolicy policy, string? remote)
    {
        if (_shuttingDown)
        {
            throw new LoomException(ErrorCode.Unavailable, "The bridge is shutting down; register with another bridge or retry later.");
        }

        Validate(request);
        var agentId = string.IsNullOrEmpty(request.AgentId) ? identity ?? NewAgentId(request.Name) : request.AgentId;
        if (identity is not null && agentId != identity)
        {
            throw new PermissionDeniedException($"Identity '{identity}' may register agent id '{identity}' only, not '{agentId}'; set the agent id (LOOM_AGENT_ID, agent_id, AgentId) to '{identity}' or use a credential made for '{agentId}'.");
        }

        CheckPermissions(request, policy);
        var quota = Quotas.For(policy);
        if (quota?.Limits.MaxCapabilities is { } maxCapabilities && request.Capabilities.Count > maxCapabilities)
        {
            var refusal = new ResourceExhaustedException($"Identity '{policy.Identity}' may provide at most {maxCapabilities} capabilities ({quota.CapabilitySource}.max_capabilities); this registration has {request.Capabilities.Count}. Register fewer, or raise the limit.");
            _metrics?.RateLimited("max_capabilities");
            Audit?.Record(new AuditRecord(AuditRecord.Limit, "provide", "limited") { Identity = identity, AgentId = agentId, Resource = request.Capabilities[^1].Name, Reason = refusal.Message, Remote = remote });
            throw refusal;
        }

        var interval = request.HeartbeatIntervalMs == 0
            ? _options.HeartbeatInterval
            : TimeSpan.FromMilliseconds(Math.Clamp(request.HeartbeatIntervalMs, _options.MinHeartbeatInterval.TotalMilliseconds, _options.MaxHeartbeatInterval.TotalMilliseconds));
        var sessionId = NewId();

        AgentSession session;
        bool reconnected;
        lock (_registerGate)
        {
            if (_byAgent.TryGetValue(agentId, out var existing) && !existing.IsExpired && existing.Identity is { } owner && owner != identity)
            {
                throw new PermissionDeniedException($"Agent id '{agentId}' is registered by identity '{owner}'; {(identity is null ? "an anonymous caller" : $"identity '{identity}'")} cannot take it over.");
            }

            if (existing is not null && !existing.IsExpired)
            {
                existing.Identity = identity ?? existing.Identity;
                existing.Policy = policy;
                existing.Quota = quota;
                existing.Remote = remote;
                // The same agent again (a reconnect): it keeps its queued deliveries; its old stream ends.
                var oldSessionId = existing.SessionId;
                existing.ApplyRegistration(request, sessionId, interval);
                _bySession.TryRemove(oldSessionId, out _);
                existing.DetachStream(StatusCode.Cancelled, "The agent registered again; this stream belongs to the old session.");
                session = existing;
                reconnected = true;
            }
            else
            {
                // A new session (an expired one of the same agent id is replaced, not added to).
                if (!_byAgent.ContainsKey(agentId) && _byAgent.Count >= _maxSessions)
                {
                    throw new ResourceExhaustedException($"The bridge holds {_byAgent.Count} agent sessions, its limit (max_sessions); no new agent can register until one leaves or expires. Retry later, or raise max_sessions.");
                }

                session = new AgentSession(request, agentId, sessionId, interval, _options, _bus, _broker, _memory, _time, _logger)
                {
                    Identity = identity,
                    Policy = policy,
                    Quota = quota,
                    Remote = remote,
                    Audit = Audit,
                    Metrics = _metrics,
                    Streams = Streams,
                    Warnings = _warnings,
                    IsShuttingDown = () => _shuttingDown,
                    SubscriptionsChanged = changed =>
                    {
                        if (!changed.IsExpired)
                        {
                            _agents.Upsert(changed.ToAgentInfo());
                        }
                    },
                };
                try
                {
                    session.ApplyRegistration(request, sessionId, interval);
                }
                catch
                {
                    session.Expire("registration rejected");
                    _metrics?.SessionEnded("rejected");
                    throw;
                }

                _byAgent[agentId] = session;
                reconnected = false;
            }

            _bySession[sessionId] = session;
            _agents.Upsert(session.ToAgentInfo());
        }

        Log.AgentRegistered(_logger, agentId, LogText.Clean(request.Name), LogText.Clean(request.Sdk), sessionId, session.Subscriptions.Count, request.Capabilities.Count, reconnected);
        var response = new RegisterAgentResponse
        {
            SessionId = sessionId,
            AgentId = agentId,
            HeartbeatIntervalMs = (uint)interval.TotalMilliseconds,
            BridgeVersion = BridgeVersion,
            Reconnected = reconnected,
            Limits = new Limits
            {
                MaxMessageBytes = (uint)_options.MaxMessageBytes,
                MaxPayloadBytes = (uint)_options.MaxPayloadBytes,
                MaxBatchMessages = (uint)_options.MaxBatchMessages,
                MaxInflightCalls = (uint)_options.MaxInflightCallsPerSession,
                OutboundQueueCapacity = (uint)_options.OutboundQueueCapacity,
                MaxHops = _options.EventBus.MaxHops,
                DefaultTtlMs = (uint)_options.EventBus.DefaultTtl.TotalMilliseconds,
                MaxSubscriptions = (uint)_options.MaxSubscriptionsPerSession,
            },
        };
        response.Subscriptions.Add(session.DescribeSubscriptions());
        return response;
    }

    public static string BridgeVersion { get; } = typeof(SessionRegistry).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";

    /// <summary>Records a heartbeat; the session, or null when it is unknown or expired.</summary>
    public AgentSession? Heartbeat(string sessionId)
    {
        if (!TryGetBySession(sessionId, out var session))
        {
            return null;
        }

        session.MarkContact();
        return session;
    }

    private async Task SweepAsync(CancellationToken token)
    {
        _warnings.Flush();
        List<(AgentSession Session, string? Reason)>? ending = null;
        foreach (var session in _byAgent.Values)
        {
            CountMissedHeartbeats(session);
            if (IsOver(session, out var reason))
            {
                (ending ??= []).Add((session, reason));
            }
        }

        if (ending is not null)
        {
            await RemoveInBatchesAsync(ending, recheck: true, token);
        }
    }

    private void CountMissedHeartbeats(AgentSession session)
    {
        if (_metrics is null || !session.Contacted)
        {
            return;
        }

        // A heartbeat counts as missed after 1.5 intervals of silence, then once per interval.
        var missed = (int)Math.Max(0, Math.Floor((session.SinceLastSeen - (session.HeartbeatInterval / 2)) / session.HeartbeatInterval));
        if (missed < session.MissedHeartbeatsReported)
        {
            session.MissedHeartbeatsReported = missed; // contact resumed
        }
        else if (missed > session.MissedHeartbeatsReported)
        {
            _metrics.HeartbeatsMissed(missed - session.MissedHeartbeatsReported);
            session.MissedHeartbeatsReported = missed;
        }
    }

    /// <summary>Whether the session ends now: it left (closed cleanly and has no stream; <paramref name="reason"/> null) or went silent.</summary>
    private bool IsOver(AgentSession session, out string? reason)
    {
        reason = null;
        if (session.GracefullyClosed && !session.HasStream)
        {
            return true;
        }

        var silent = session.SinceLastSeen;
        if (silent <= ExpiryAfter(session))
        {
            return false;
        }

        reason = $"no heartbeat for {silent.TotalMilliseconds:0} ms ({_options.MissedHeartbeatsBeforeExpiry} intervals of {session.HeartbeatInterval.TotalMilliseconds:0} ms)";
        return true;
    }

    private TimeSpan ExpiryAfter(AgentSession session)
    {
        var missed = session.HeartbeatInterval * _options.MissedHeartbeatsBeforeExpiry;
        return session.Contacted || missed > _options.FirstContactGrace ? missed : _options.FirstContactGrace;
    }

    /// <summary>Ends sessions batch by batch, yielding the thread between batches.</summary>
    private async Task RemoveInBatchesAsync(List<(AgentSession Session, string? Reason)> ending, bool recheck, CancellationToken token)
    {
        for (var i = 0; i < ending.Count; i += MaxRemovalsPerBatch)
        {
            if (i > 0)
            {
                token.ThrowIfCancellationRequested();
                await Task.Yield();
            }

            RemoveBatch(ending.GetRange(i, Math.Min(MaxRemovalsPerBatch, ending.Count - i)), recheck);
        }
    }

    /// <summary>
    /// Ends a batch of sessions (a null reason: the agent left). With <paramref name="recheck"/>,
    /// one that is no longer over (it was heard from since the sweep looked) stays.
    /// </summary>
    private void RemoveBatch(List<(AgentSession Session, string? Reason)> batch, bool recheck)
    {
        var removed = new List<(AgentSession Session, string? Reason)>(batch.Count);
        lock (_registerGate)
        {
            foreach (var (session, reason) in batch)
            {
                if ((recheck && !IsOver(session, out _)) || !_byAgent.TryRemove(new KeyValuePair<string, AgentSession>(session.AgentId, session)))
                {
                    continue;
                }

                _bySession.TryRemove(session.SessionId, out _);
                _agents.Remove(session.AgentId);
                removed.Add((session, reason));
            }
        }

        // One pass over the broker for the batch: agents sharing a capability name rebuild its provider list once, not once each.
        _broker.UnregisterAll(removed.SelectMany(r => r.Session.TakeCapabilities()));
        foreach (var (session, reason) in removed)
        {
            session.Expire(reason ?? "the agent left");
            var ended = reason is null ? "left" : _shuttingDown ? "shutdown" : "heartbeat_timeout";
            _metrics?.SessionEnded(ended);
            Audit?.Record(new AuditRecord(AuditRecord.Registration, "unregister", ended) { Identity = session.Identity, AgentId = session.AgentId, Session = session.SessionId, Reason = reason, Remote = session.Remote });
            if (reason is null)
            {
                Log.AgentLeft(_logger, session.AgentId);
            }
            else if (_warnings.AgentExpired.TryEnter())
            {
                Log.AgentExpired(_logger, session.AgentId, reason);
            }
        }
    }

    private void OnSlowConsumer(SlowConsumerEvent e)
    {
        // A queue of one is "80% full" at every envelope: without the limit that is a line per event.
        if (_warnings.SlowConsumer.TryEnter())
        {
            Log.SlowConsumer(_logger, e.SubscriptionId, e.Pattern, e.Owner ?? "-", e.Depth, e.Capacity, e.Policy.ToString());
        }
    }

    /// <summary>Stops registrations, lets in-flight calls finish (bounded), then ends every session.</summary>
    public async Task ShutdownAsync(CancellationToken bound)
    {
        _shuttingDown = true;
        try
        {
            while (!bound.IsCancellationRequested && _byAgent.Values.Any(s => s.HasWorkInFlight))
            {
                await Task.Delay(TimeSpan.FromMilliseconds(20), _time, bound);
            }
        }
        catch (OperationCanceledException)
        {
            // Past the bound: what is still running fails with PROVIDER_UNAVAILABLE.
        }

        await RemoveInBatchesAsync([.. _byAgent.Values.Select(s => (s, (string?)"the bridge is shutting down"))], recheck: false, CancellationToken.None);
    }

    public void Dispose()
    {
        _bus.SlowConsumer -= OnSlowConsumer;
        Quotas.Dispose();
        _stopLoops.Cancel();
        _stopLoops.Dispose();
    }

    // ---------------------------------------------------------------------------------------

    [GeneratedRegex("^[A-Za-z0-9_.:\\-]{1,128}$")]
    private static partial Regex AgentIdPattern();

    [GeneratedRegex("^[A-Za-z0-9_.\\-]{0,64}$")]
    private static partial Regex NamespacePattern();

    private void Validate(RegisterAgentRequest request)
    {
        if (!string.IsNullOrEmpty(request.AgentId) && !AgentIdPattern().IsMatch(request.AgentId))
        {
            throw new InvalidParamsException($"agent_id '{Truncate(request.AgentId)}' is invalid: use 1-128 characters from A-Z a-z 0-9 _ . : -.", "/agent_id");
        }

        if (request.Name.Length > 128)
        {
            throw new InvalidParamsException($"name is {request.Name.Length} characters long; the limit is 128.", "/name");
        }

        if (!NamespacePattern().IsMatch(request.Namespace))
        {
            throw new InvalidParamsException($"namespace '{Truncate(request.Namespace)}' is invalid: use up to 64 characters from A-Z a-z 0-9 _ . -.", "/namespace");
        }

        if (request.Metadata.Count > 64)
        {
            throw new InvalidParamsException($"metadata has {request.Metadata.Count} entries; the limit is 64.", "/metadata");
        }

        foreach (var (key, value) in request.Metadata)
        {
            if (key.Length > 128 || value.Length > 4096)
            {
                throw new InvalidParamsException($"metadata entry '{Truncate(key)}' is too long: keys up to 128 and values up to 4096 characters.", "/metadata/" + Truncate(key));
            }
        }

        if (request.Subscriptions.Count > _options.MaxSubscriptionsPerSession)
        {
            throw new ResourceExhaustedException($"{request.Subscriptions.Count} subscriptions requested; the limit is {_options.MaxSubscriptionsPerSession}.");
        }

        if (request.Capabilities.Count > _options.MaxCapabilitiesPerAgent)
        {
            throw new ResourceExhaustedException($"{request.Capabilities.Count} capabilities registered; the limit is {_options.MaxCapabilitiesPerAgent}.");
        }

        for (var i = 0; i < request.Subscriptions.Count; i++)
        {
            try
            {
                Topics.ValidatePattern(request.Subscriptions[i].Pattern);
            }
            catch (LoomException ex)
            {
                throw new InvalidParamsException($"subscription pattern '{request.Subscriptions[i].Pattern}' is invalid: {ex.Message}", $"/subscriptions/{i}/pattern");
            }
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < request.Capabilities.Count; i++)
        {
            var c = request.Capabilities[i];
            if (!names.Add(c.Name + "@" + c.Version))
            {
                throw new InvalidParamsException($"capability '{c.Name}' version '{c.Version}' is registered twice in one request.", $"/capabilities/{i}/name");
            }
        }
    }

    private static string Truncate(string s) => s.Length <= 64 ? s : s[..64] + "…";

    private static string NewId() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    private static string NewAgentId(string name)
    {
        var prefix = string.IsNullOrEmpty(name) ? "agent" : Regex.Replace(name, "[^A-Za-z0-9_.\\-]", "-");
        if (prefix.Length > 100)
        {
            prefix = prefix[..100];
        }

        return prefix + "-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    }
}
