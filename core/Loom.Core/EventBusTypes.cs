using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>Settings of an <see cref="EventBus"/>.</summary>
public sealed record EventBusOptions
{
    /// <summary>Queue capacity of a realtime subscription (full queue: drop oldest). Default 1024.</summary>
    public int RealtimeQueueCapacity { get; init; } = 1024;

    /// <summary>Queue capacity of a normal subscription (full queue: drop newest). Default 8192.</summary>
    public int NormalQueueCapacity { get; init; } = 8192;

    /// <summary>
    /// Queue capacity of a batch subscription (full queue: block the publisher). Default 8192:
    /// blocking loses nothing, so a deeper queue buys no throughput, and envelopes that wait long
    /// in one survive garbage collections (65,536 made the bridge's GC pauses several times longer).
    /// </summary>
    public int BatchQueueCapacity { get; init; } = 8192;

    /// <summary>How long a publisher waits for room in a blocking subscription before the envelope is dropped. Default 1 s.</summary>
    public TimeSpan DefaultBlockTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The longest block timeout a subscription may ask for: a subscriber decides how long its
    /// publishers may be held, so the bus bounds it. Default 2 s: a subscriber that stops reading
    /// holds every publisher to it for one block timeout before it is treated as a slow consumer,
    /// and at 10 s (the earlier default) a 10-minute soak saw the healthy subscribers of such a
    /// publisher wait 10 s once.
    /// </summary>
    public TimeSpan MaxBlockTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The largest queue capacity a subscription may ask for. Default 65536.</summary>
    public int MaxSubscriptionQueueCapacity { get; init; } = 65536;

    /// <summary>
    /// Bytes one subscription may hold queued (payload, strings and headers of its envelopes plus
    /// 128 each); past it the queue counts as full and its policy applies, though one envelope
    /// always fits in an empty queue. Default 64 MiB.
    /// </summary>
    public long MaxQueueBytesPerSubscription { get; init; } = 64L * 1024 * 1024;

    /// <summary>
    /// Bytes all subscriptions together may hold queued; while the bus holds that much, publishes
    /// that would queue anything are refused (<see cref="PublishStatus.MemoryLimit"/>), as a
    /// broker's memory alarm does, instead of the process growing until it dies. Default 0: a
    /// quarter of the memory the process may use, at least 256 MiB.
    /// </summary>
    public long MaxQueuedBytes { get; init; }

    /// <summary>
    /// Largest envelope, encoded (payload, headers and every other field, as the bus finalizes it),
    /// that a publish may carry; a larger one is refused (<see cref="PublishStatus.TooLarge"/>) rather
    /// than handed to subscribers that could not receive it. Default 0: no limit (a bridge sets it
    /// from its message limit).
    /// </summary>
    public int MaxEnvelopeBytes { get; init; }

    /// <summary>Publishes an envelope may go through (a forwarding loop guard). Default 16.</summary>
    public uint MaxHops { get; init; } = 16;

    /// <summary>Time to live of an envelope that names none. Default 5 min.</summary>
    public TimeSpan DefaultTtl { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How long a queue must stay at least 80% full before its subscription is reported as a slow
    /// consumer. Default zero: reported as soon as it reaches 80%.
    /// </summary>
    public TimeSpan SlowConsumerThreshold { get; init; }

    /// <summary>
    /// Distinct topics with their own statistics and match cache; topics beyond it share the
    /// "(other)" statistics and are matched without caching. Default 100000.
    /// </summary>
    public int MaxTrackedTopics { get; init; } = 100_000;

    /// <summary>
    /// Topic patterns that name the <c>topic_group</c> and <c>pattern</c> labels of the bus metrics,
    /// tried in order (see <see cref="TopicGroups"/>). Default none: the first token of the topic.
    /// </summary>
    public IReadOnlyList<string> MetricTopicGroups { get; init; } = [];

    /// <summary>Most groups derived from first tokens before further topics share <c>(other)</c>. Default 64.</summary>
    public int MaxMetricTopicGroups { get; init; } = 64;

    /// <summary>Checks every setting: capacities from 1 to 16,777,216, byte limits positive (or 0 where that means the default), timeouts in order.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range: <see cref="ArgumentException.ParamName"/> names it and the message says what is accepted.</exception>
    public void Validate()
    {
        static string Ms(TimeSpan value) => value.TotalMilliseconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + " ms";

        static void Check(bool bad, string name, string message)
        {
            if (bad)
            {
                throw new ArgumentOutOfRangeException(name, message);
            }
        }

        static void Capacity(int value, string name, string? key = null) =>
            Check(value < 1 || value > EventBus.MaxQueueCapacity, name, $"{name}{(key is null ? "" : $" ({key})")} is {value}; use 1 to {EventBus.MaxQueueCapacity}.");

        Capacity(RealtimeQueueCapacity, nameof(RealtimeQueueCapacity));
        Capacity(NormalQueueCapacity, nameof(NormalQueueCapacity));
        Capacity(BatchQueueCapacity, nameof(BatchQueueCapacity));
        Capacity(MaxSubscriptionQueueCapacity, nameof(MaxSubscriptionQueueCapacity), "max_subscription_queue_capacity");
        Check(MaxQueueBytesPerSubscription < 1, nameof(MaxQueueBytesPerSubscription), $"MaxQueueBytesPerSubscription (max_queue_bytes_per_subscription) is {MaxQueueBytesPerSubscription}; use a positive number of bytes.");
        Check(MaxQueuedBytes < 0, nameof(MaxQueuedBytes), $"MaxQueuedBytes (max_queued_bytes) is {MaxQueuedBytes}; use 0 for the default (a quarter of the memory the process may use) or a positive number of bytes.");
        Check(MaxEnvelopeBytes < 0, nameof(MaxEnvelopeBytes), $"MaxEnvelopeBytes is {MaxEnvelopeBytes}; use 0 for no limit or a positive number of bytes.");
        Check(DefaultTtl <= TimeSpan.Zero, nameof(DefaultTtl), $"DefaultTtl is {Ms(DefaultTtl)}; it must be positive.");
        Check(DefaultBlockTimeout < TimeSpan.Zero, nameof(DefaultBlockTimeout), $"DefaultBlockTimeout is {Ms(DefaultBlockTimeout)}; it must not be negative.");
        Check(MaxBlockTimeout < DefaultBlockTimeout, nameof(MaxBlockTimeout), $"MaxBlockTimeout (max_block_timeout_ms) is {Ms(MaxBlockTimeout)}; it must be at least DefaultBlockTimeout ({Ms(DefaultBlockTimeout)}).");
        Check(SlowConsumerThreshold < TimeSpan.Zero, nameof(SlowConsumerThreshold), $"SlowConsumerThreshold is {Ms(SlowConsumerThreshold)}; it must not be negative.");
        Check(MaxTrackedTopics < 0, nameof(MaxTrackedTopics), $"MaxTrackedTopics is {MaxTrackedTopics}; it must not be negative.");
    }
}

/// <summary>How a subscription queues: QoS class, full-queue policy, capacity, blocking timeout and owner.</summary>
/// <param name="Qos">QoS class; Unspecified counts as Normal.</param>
/// <param name="Overflow">Full-queue policy; Unspecified takes the QoS class default.</param>
/// <param name="QueueCapacity">Queue capacity; 0 takes the QoS class default.</param>
/// <param name="BlockTimeout">For the Block policy: how long a publisher waits; null takes the bus default.</param>
/// <param name="Owner">Who holds the subscription (an agent id), for statistics and logs.</param>
public sealed record SubscriptionOptions(
    QosClass Qos = QosClass.Normal,
    OverflowPolicy Overflow = OverflowPolicy.Unspecified,
    int QueueCapacity = 0,
    TimeSpan? BlockTimeout = null,
    string? Owner = null);

/// <summary>What became of a publish.</summary>
public enum PublishStatus
{
    /// <summary>Routed to the matching subscriptions (some of them may have dropped it: see <see cref="PublishResult.Dropped"/>).</summary>
    Accepted,

    /// <summary>Valid, but no subscription matches the topic.</summary>
    NoSubscribers,

    /// <summary>The envelope's deadline had passed; nothing was delivered.</summary>
    TtlExpired,

    /// <summary>The envelope went through more publishes than the hop limit (a loop); nothing was delivered.</summary>
    HopLimitExceeded,

    /// <summary>The bus holds its limit of queued bytes (<see cref="EventBusOptions.MaxQueuedBytes"/>); nothing was delivered.</summary>
    MemoryLimit,

    /// <summary>The envelope is larger than <see cref="EventBusOptions.MaxEnvelopeBytes"/>; nothing was delivered.</summary>
    TooLarge,
}

/// <summary>Outcome of a publish: status, subscriptions that queued it and subscriptions that dropped it.</summary>
public readonly record struct PublishResult(PublishStatus Status, int Delivered, int Dropped);

/// <summary>Why an envelope was dropped.</summary>
public enum DropReason
{
    /// <summary>A full drop-oldest queue evicted it to make room for a newer one.</summary>
    QueueFullDropOldest,

    /// <summary>A full drop-newest queue refused it.</summary>
    QueueFullDropNewest,

    /// <summary>A full blocking queue had no room before the block timeout (or the publisher gave up).</summary>
    BlockTimeout,

    /// <summary>Its deadline passed before it was published or read.</summary>
    TtlExpired,

    /// <summary>It went through more publishes than the hop limit.</summary>
    HopLimit,

    /// <summary>
    /// A blocking queue whose reader had stalled (a publisher already waited a whole block timeout
    /// for it) refused it at once; publishers wait for it again once it drains to half its capacity.
    /// </summary>
    SlowConsumer,

    /// <summary>
    /// The bus held <see cref="EventBusOptions.MaxQueuedBytes"/> of queued envelopes: the publish
    /// was refused (<see cref="PublishStatus.MemoryLimit"/>) until readers drain below it.
    /// </summary>
    MemoryLimit,

    /// <summary>It was larger than <see cref="EventBusOptions.MaxEnvelopeBytes"/>: the publish was refused (<see cref="PublishStatus.TooLarge"/>).</summary>
    TooLarge,
}

/// <summary>Notified when a subscription's queue goes from empty to non-empty.</summary>
public interface ISubscriptionSignal
{
    /// <summary>
    /// Called, from any thread, after an envelope lands in a queue a reader had found empty
    /// (TryRead returned false). Must be cheap and must not block: wake a reader and return.
    /// </summary>
    void OnAvailable(EventSubscription subscription);
}

/// <summary>Counters of one subscription.</summary>
public sealed class SubscriptionStats
{
    /// <summary>Envelopes accepted into the queue.</summary>
    public long Enqueued { get; init; }

    /// <summary>Envelopes handed to the reader.</summary>
    public long Delivered { get; init; }

    /// <summary>Envelopes in the queue now.</summary>
    public int Depth { get; init; }

    /// <summary>Times the subscription entered the slow-consumer state.</summary>
    public long SlowEpisodes { get; init; }

    /// <summary>Drops by reason (every reason present, zero when none).</summary>
    public required IReadOnlyDictionary<DropReason, long> Dropped { get; init; }

    /// <summary>All drops.</summary>
    public long DroppedTotal { get; init; }
}

/// <summary>Counters of one topic.</summary>
public sealed class TopicStats
{
    /// <summary>The topic, or "(other)" for topics beyond <see cref="EventBusOptions.MaxTrackedTopics"/>.</summary>
    public required string Topic { get; init; }

    /// <summary>Envelopes published and routed (including those no subscription matched).</summary>
    public long Published { get; init; }

    /// <summary>Copies accepted into subscription queues.</summary>
    public long Delivered { get; init; }

    /// <summary>Publishes that matched no subscription.</summary>
    public long NoSubscribers { get; init; }

    /// <summary>Drops by reason (every reason present, zero when none).</summary>
    public required IReadOnlyDictionary<DropReason, long> Dropped { get; init; }

    /// <summary>All drops.</summary>
    public long DroppedTotal { get; init; }
}

/// <summary>A subscription entered the slow-consumer state: its queue is at least 80% full.</summary>
public sealed record SlowConsumerEvent(
    string SubscriptionId,
    string Pattern,
    string? Owner,
    QosClass Qos,
    OverflowPolicy Policy,
    int Depth,
    int Capacity,
    long DroppedTotal,
    DateTimeOffset Timestamp);
