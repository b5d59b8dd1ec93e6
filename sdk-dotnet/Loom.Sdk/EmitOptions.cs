using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>Envelope fields of an emitted event, request or reply. Every value is optional.</summary>
public sealed class EmitOptions
{
    /// <summary>Conversation the event belongs to. Default empty.</summary>
    public string? ThreadId { get; init; }

    /// <summary>QoS class. Default <see cref="QosClass.Unspecified"/> (NORMAL).</summary>
    public QosClass Qos { get; init; }

    /// <summary>Time to live. Default null: the bridge default.</summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>Headers. Default none.</summary>
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    /// <summary>Content type. Default null: <c>application/json</c> for objects, <c>application/octet-stream</c> for bytes.</summary>
    public string? ContentType { get; init; }

    /// <summary>Correlation id. Default null (requests and replies set their own).</summary>
    public string? CorrelationId { get; init; }

    /// <summary>W3C traceparent. Default null.</summary>
    public string? Traceparent { get; init; }
}
