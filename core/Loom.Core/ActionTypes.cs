using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>One call as a capability provider receives it.</summary>
public sealed class ActionInvocation
{
    private static readonly IReadOnlyDictionary<string, string> s_noHeaders = new Dictionary<string, string>(0, StringComparer.Ordinal);

    /// <summary>Id of this call (unique per caller).</summary>
    public required string CallId { get; init; }

    /// <summary>Capability name.</summary>
    public required string Capability { get; init; }

    /// <summary>UTF-8 JSON input, already validated against the input schema.</summary>
    public required ReadOnlyMemory<byte> InputJson { get; init; }

    /// <summary>When the caller stops waiting.</summary>
    public DateTimeOffset Deadline { get; init; }

    /// <summary>Agent id of the caller ("" when unknown).</summary>
    public string Caller { get; init; } = "";

    /// <summary>Conversation the call belongs to.</summary>
    public string ThreadId { get; init; } = "";

    /// <summary>W3C trace context: the broker's call span when tracing is on, else the caller's.</summary>
    public string Traceparent { get; init; } = "";

    /// <summary>W3C trace state.</summary>
    public string Tracestate { get; init; } = "";

    /// <summary>Caller-supplied headers (never null).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = s_noHeaders;

    /// <summary>Version of the capability the router chose for this provider ("" when not yet routed).</summary>
    public string Version { get; init; } = "";

    /// <summary>The same invocation addressed to one version (a provider may offer several).</summary>
    internal ActionInvocation ForVersion(string version) =>
        string.Equals(version, Version, StringComparison.Ordinal)
            ? this
            : new ActionInvocation
            {
                CallId = CallId,
                Capability = Capability,
                InputJson = InputJson,
                Deadline = Deadline,
                Caller = Caller,
                ThreadId = ThreadId,
                Traceparent = Traceparent,
                Tracestate = Tracestate,
                Headers = Headers,
                Version = version,
            };
}

/// <summary>Something that can answer calls for capabilities: an in-process handler or a remote agent's session.</summary>
public interface ICapabilityProvider
{
    /// <summary>Unique id: the agent id for remote providers, "local:&lt;name&gt;" for in-process ones.</summary>
    string ProviderId { get; }

    /// <summary>The agent that answers.</summary>
    string AgentId { get; }

    /// <summary>True for in-process providers (the LOCAL_ONLY privacy policy uses only these).</summary>
    bool IsLocal { get; }

    /// <summary>
    /// Runs one call and returns UTF-8 JSON output. Throw a <see cref="LoomException"/> for typed
    /// failures (a <see cref="ProviderUnavailableException"/> makes the broker try another
    /// provider); any other exception becomes TOOL_ERROR with its message.
    /// </summary>
    ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken);
}

/// <summary>Settings of an <see cref="ActionBroker"/>.</summary>
public sealed class ActionBrokerOptions
{
    /// <summary>Timeout of a call that names none. Default 30 s.</summary>
    public TimeSpan DefaultTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest timeout a caller may ask for (longer ones are cut to it). Default 10 min.</summary>
    public TimeSpan MaxTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Largest input accepted (RESOURCE_EXHAUSTED above it). Default 4 MiB.</summary>
    public int MaxInputBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>Whether outputs are checked against the output schema (a mismatch is TOOL_ERROR). Default true.</summary>
    public bool ValidateOutput { get; init; } = true;

    /// <summary>Policy of calls that name none. Default round robin.</summary>
    public RoutingPolicy DefaultPolicy { get; init; } = RoutingPolicy.RoundRobin;

    /// <summary>How long a provider is skipped after it answered PROVIDER_UNAVAILABLE or was marked unhealthy. Default 5 s.</summary>
    public TimeSpan UnhealthyCooldown { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>A call to make through the broker.</summary>
public sealed class ActionRequest
{
    /// <summary>Capability name.</summary>
    public required string Capability { get; init; }

    /// <summary>Exact version, or null for any.</summary>
    public string? Version { get; init; }

    /// <summary>UTF-8 JSON input; empty counts as <c>{}</c>.</summary>
    public required ReadOnlyMemory<byte> InputJson { get; init; }

    /// <summary>Time allowed; null takes the default, zero or less fails at once with TIMEOUT.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>Agent id of the caller.</summary>
    public string Caller { get; init; } = "";

    /// <summary>Conversation the call belongs to.</summary>
    public string ThreadId { get; init; } = "";

    /// <summary>W3C trace context.</summary>
    public string Traceparent { get; init; } = "";

    /// <summary>W3C trace state.</summary>
    public string Tracestate { get; init; } = "";

    /// <summary>Routing policy; Unspecified takes the broker default.</summary>
    public RoutingPolicy Policy { get; init; }

    /// <summary>Only this agent (agent id or provider id) may answer.</summary>
    public string? TargetAgent { get; init; }

    /// <summary>Call id; the broker assigns one when null.</summary>
    public string? CallId { get; init; }

    /// <summary>Headers passed to the provider.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    /// <summary>
    /// With an <see cref="ActionBroker.Idempotency"/> store attached: calls with the same key (per
    /// <see cref="IdempotencyScope"/> and capability) within its window get the first call's result.
    /// Null or empty: not idempotent. At most 128 bytes of printable ASCII (<see cref="IdempotencyKeys"/>).
    /// </summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>Who the key belongs to (the authenticated identity, else the agent id); null takes <see cref="Caller"/>.</summary>
    public string? IdempotencyScope { get; init; }
}

/// <summary>How a call ended: output or error (a value, never thrown).</summary>
public sealed class ActionOutcome
{
    /// <summary>True when there is output and no error.</summary>
    public bool Succeeded => Error is null;

    /// <summary>UTF-8 JSON output (empty on failure).</summary>
    public ReadOnlyMemory<byte> OutputJson { get; init; }

    /// <summary>The failure, or null.</summary>
    public Error? Error { get; init; }

    /// <summary>Provider that answered (or was last tried), if any.</summary>
    public string? ProviderId { get; init; }

    /// <summary>Agent of that provider, if any.</summary>
    public string? AgentId { get; init; }

    /// <summary>Time from the call to its outcome.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>True when this is the stored outcome of an earlier call with the same idempotency key.</summary>
    public bool Replayed { get; init; }

    /// <summary>The protocol form.</summary>
    public ActionResult ToResult(string callId)
    {
        var result = new ActionResult
        {
            CallId = callId ?? string.Empty,
            Provider = AgentId ?? string.Empty,
            DurationUs = Duration <= TimeSpan.Zero ? 0 : (ulong)(Duration.Ticks / 10),
            Replayed = Replayed,
        };
        if (Error is not null)
        {
            result.Error = Error;
        }
        else
        {
            result.OutputJson = ByteString.CopyFrom(OutputJson.Span);
        }

        return result;
    }
}

/// <summary>
/// Where an <see cref="ActionBroker"/> keeps the outcomes of calls made with an idempotency key
/// (the bridge's store persists them under its data directory). <see cref="InvokeAsync"/> returns
/// the stored outcome (with <see cref="ActionOutcome.Replayed"/> set), waits for a call in flight
/// with the same key, or runs the call and stores what it returns when a retry
/// would get the same answer.
/// </summary>
public interface IIdempotencyStore
{
    /// <summary>Runs or replays one call whose key <see cref="IdempotencyKeys.Problem"/> accepted.</summary>
    Task<ActionOutcome> InvokeAsync(ActionRequest request, Func<ActionRequest, CancellationToken, Task<ActionOutcome>> invoke, CancellationToken cancellationToken);
}

/// <summary>Rules for idempotency keys.</summary>
public static class IdempotencyKeys
{
    /// <summary>Longest key accepted, in bytes.</summary>
    public const int MaxBytes = 128;

    /// <summary>Why <paramref name="key"/> is not a valid key (a message saying what to fix), or null when it is.</summary>
    public static string? Problem(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length > MaxBytes)
        {
            return $"idempotency_key is {System.Text.Encoding.UTF8.GetByteCount(key)} bytes; the limit is {MaxBytes}. Use a shorter key, e.g. a UUID or a hash of what makes the call unique.";
        }

        for (var i = 0; i < key.Length; i++)
        {
            if (key[i] is < '!' or > '~')
            {
                return $"idempotency_key has a character that is not printable ASCII (U+{(int)key[i]:X4} at index {i}); use letters, digits and punctuation only (no spaces or control characters), e.g. a UUID.";
            }
        }

        return null;
    }
}

/// <summary>A capability registered with a broker by one provider. Dispose to unregister it.</summary>
public sealed class CapabilityRegistration : IDisposable
{
    private readonly ActionBroker _broker;
    private int _disposed;

    internal CapabilityRegistration(ActionBroker broker, CapabilityDescriptor descriptor, ICapabilityProvider provider)
    {
        _broker = broker;
        Descriptor = descriptor;
        Provider = provider;
    }

    /// <summary>The descriptor as registered (version filled in: "1.0.0" when it was empty).</summary>
    public CapabilityDescriptor Descriptor { get; }

    /// <summary>Who answers.</summary>
    public ICapabilityProvider Provider { get; }

    /// <summary>Unregisters this capability of this provider (idempotent).</summary>
    public void Dispose()
    {
        if (TryRetire())
        {
            _broker.Unregister(this);
        }
    }

    /// <summary>True the first time only: the caller then takes it out of the broker.</summary>
    internal bool TryRetire() => Interlocked.Exchange(ref _disposed, 1) == 0;

    internal bool IsOf(ActionBroker broker) => ReferenceEquals(_broker, broker);
}

/// <summary>A provider of a capability as routing sees it: a snapshot of its health and statistics.</summary>
public sealed class ProviderCandidate
{
    /// <summary>The provider.</summary>
    public required ICapabilityProvider Provider { get; init; }

    /// <summary>Its descriptor for this capability.</summary>
    public required CapabilityDescriptor Descriptor { get; init; }

    /// <summary>Latency estimate (EWMA, alpha 0.2, seeded by latency_hint_ms), in milliseconds.</summary>
    public double LatencyEwmaMs { get; init; }

    /// <summary>False while the provider is in its unhealthy cooldown.</summary>
    public bool IsHealthy { get; init; } = true;

    /// <summary>Calls running now.</summary>
    public int InFlight { get; init; }

    /// <summary>Calls made.</summary>
    public long Calls { get; init; }

    /// <summary>Calls that failed on the provider's side (TOOL_ERROR, TIMEOUT, PROVIDER_UNAVAILABLE, INTERNAL).</summary>
    public long Failures { get; init; }

    /// <summary>Outputs that did not match the output schema.</summary>
    public long OutputSchemaFailures { get; init; }
}

/// <summary>A capability (name and version) and its providers.</summary>
public sealed record CapabilityInfo(string Name, string Version, CapabilityDescriptor Descriptor, IReadOnlyList<ProviderCandidate> Providers);

/// <summary>Picks the provider for a call.</summary>
public interface IRouter
{
    /// <summary>Returns the chosen candidate, or null when none may answer (the call fails with PROVIDER_UNAVAILABLE).</summary>
    ProviderCandidate? Select(string capability, IReadOnlyList<ProviderCandidate> candidates, RoutingPolicy policy);
}
