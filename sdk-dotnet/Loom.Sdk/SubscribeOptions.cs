using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>How a subscription queues deliveries, at the bridge and locally.</summary>
public sealed class SubscribeOptions
{
    /// <summary>Default options: NORMAL QoS and the class defaults.</summary>
    public static SubscribeOptions Default { get; } = new();

    /// <summary>QoS class of the subscription. Default <see cref="QosClass.Normal"/>.</summary>
    public QosClass Qos { get; init; } = QosClass.Normal;

    /// <summary>Full-queue policy. Default <see cref="OverflowPolicy.Unspecified"/>: the QoS class default.</summary>
    public OverflowPolicy Overflow { get; init; } = OverflowPolicy.Unspecified;

    /// <summary>Capacity of the bridge-side queue. Default 0: the QoS class default.</summary>
    public int QueueCapacity { get; init; }

    /// <summary>How long a publisher waits on a full queue with the BLOCK policy. Default null: the bridge default.</summary>
    public TimeSpan? BlockTimeout { get; init; }

    /// <summary>
    /// Capacity of the local queue between the read loop and the handler. Default null:
    /// <see cref="LoomConnectionOptions.DeliveryQueueCapacity"/>.
    /// </summary>
    public int? LocalQueueCapacity { get; init; }

    internal Subscription ToProto(string pattern) => new()
    {
        Pattern = pattern,
        Qos = Qos == QosClass.Unspecified ? QosClass.Normal : Qos,
        Overflow = Overflow,
        QueueCapacity = (uint)Math.Max(0, QueueCapacity),
        BlockTimeoutMs = BlockTimeout is { } t ? (uint)Math.Clamp(t.TotalMilliseconds, 1, uint.MaxValue) : 0,
    };
}
