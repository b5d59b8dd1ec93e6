using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>Routing and context of one capability call. Every value is optional.</summary>
public sealed class InvokeOptions
{
    /// <summary>Exact capability version. Default null: any version.</summary>
    public string? Version { get; init; }

    /// <summary>Conversation the call belongs to. Default empty.</summary>
    public string? ThreadId { get; init; }

    /// <summary>Routing policy. Default <see cref="RoutingPolicy.Unspecified"/>: the bridge default (round robin).</summary>
    public RoutingPolicy Routing { get; init; }

    /// <summary>Call this provider (agent id) only. Default null.</summary>
    public string? TargetAgent { get; init; }

    /// <summary>Headers passed to the provider. Default none.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    /// <summary>W3C traceparent. Default null.</summary>
    public string? Traceparent { get; init; }

    /// <summary>
    /// Calls with the same key (per caller identity and capability) within the bridge's idempotency
    /// window (default 24 h) get the first call's result instead of invoking a provider again, also
    /// after a bridge restart (docs/durability.md). At most 128 bytes of printable ASCII, e.g. a UUID.
    /// Default null: not idempotent.
    /// </summary>
    public string? IdempotencyKey { get; init; }
}
