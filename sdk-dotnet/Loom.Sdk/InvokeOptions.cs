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
}
