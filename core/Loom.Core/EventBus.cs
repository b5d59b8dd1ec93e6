using System.Collections.Concurrent;
using System.Diagnostics;
using Loom.Core.Internal;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Core;

/// <summary>
/// In-process publish/subscribe on topics with wildcard patterns. Each subscription has its own
/// bounded queue and full-queue policy (drop oldest, drop newest, or block the publisher up to a
/// timeout); every drop is counted by reason. Envelopes carry a TTL (deadline) and a hop count.
/// </summary>
/// <remarks>
/// The publish path takes no lock: the subscriptions matching a topic are cached per topic and
/// recomputed from a topic trie only after subscriptions change. Delivered envelopes are the same
/// instance for every subscriber: treat them as immutable once published.
/// </remarks>
public sealed class EventBus : IDisposable
{
    internal static readonly TimeSpan DropLogInterval = TimeSpan.FromSeconds(5);
    private const string OtherTopics = "(other)";

    private readonly EventBusOptions _options;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, TopicEntry> _topics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, EventSubscription> _subscriptions = new(StringComparer.Ordinal);
    private readonly TopicEntry _otherTopics = new(OtherTopics, TopicGroups.Other);
    private readonly Dictionary<(string Group, QosClass Qos), RetiredCounters> _retired = [];
    private readonly Lock _gate = new(); // subscription changes and match recomputation
    private readonly TopicTrie<EventSubscription> _trie = new();
    private readonly List<EventSubscription> _matchBuffer = [];
    private readonly UnixClock _clock;
    private readonly long _defaultTtlMs;
    private readonly uint _maxHops;
    private readonly long _maxQueuedBytes;
    private readonly int _maxEnvelopeBytes;
    private long _queuedBytes;
    private long _version; // bumped on every subscription change; cached matches carry the version they saw
    private int _topicCount;
    private int _topicLimitLogged;
    private int _disposed;

    public EventBus(EventBusOptions? options = null, TimeProvider? time = null, ILogger<EventBus>? logger = null)
    {
        _options = options ?? new EventBusOptions();
        _options.Validate();
        Time = time ?? TimeProvider.System;
        _clock = new UnixClock(Time);
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _defaultTtlMs = (long)_options.DefaultTtl.TotalMilliseconds;
        _maxHops = _options.MaxHops;
        _maxQueuedBytes = _options.MaxQueuedBytes > 0 ? _options.MaxQueuedBytes : DefaultMaxQueuedBytes();
        _maxEnvelopeBytes = _options.MaxEnvelopeBytes;
        SlowConsumerThreshold = _options.SlowConsumerThreshold;
        Groups = new TopicGroups(_options.MetricTopicGroups, _options.MaxMetricTopicGroups);
    }

    /// <summary>
    /// Raised once per episode when a subscription's queue reaches 80% of its capacity (after
    /// <see cref="EventBusOptions.SlowConsumerThreshold"/>); the episode ends when the reader
    /// drains it below 50%. Raised on the publishing thread: handlers must be quick.
    /// </summary>
    public event Action<SlowConsumerEvent>? SlowConsumer;

    /// <summary>The bus settings.</summary>
    public EventBusOptions Options => _options;

    private Action<Envelope>? _observer;

    /// <summary>
    /// Called on the publishing thread for every envelope the bus routes (after its id, timestamp
    /// and deadline are set; with or without subscribers), for the bridge's dashboard. It must be
    /// quick, never throw, and treat the envelope as read-only. Null (the default) costs nothing.
    /// </summary>
    public Action<Envelope>? Observer
    {
        get => Volatile.Read(ref _observer);
        set => Volatile.Write(ref _observer, value);
    }

    /// <summary>Bytes all subscriptions hold queued now (see <see cref="WeightOf"/>).</summary>
    public long QueuedBytes => Volatile.Read(ref _queuedBytes);

    /// <summary>The limit of <see cref="QueuedBytes"/> in force (configured, or derived from the machine's memory).</summary>
    public long MaxQueuedBytes => _maxQueuedBytes;

    /// <summary>A quarter of the memory the process may use, at least 256 MiB.</summary>
    public static long DefaultMaxQueuedBytes() => Math.Max(256L * 1024 * 1024, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);

    /// <summary>
    /// The bytes an envelope is counted as while queued: its payload, strings and headers (one
    /// byte a character), fields unknown to this build, plus 128 for the objects around them. Cheap
    /// (no serialization), and computed once per publication.
    /// </summary>
    public static int WeightOf(Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        long weight = 128 + envelope.Payload.Length + envelope.UnknownFieldsSize + envelope.Topic.Length + envelope.Id.Length + envelope.Sender.Length
            + envelope.ThreadId.Length + envelope.CorrelationId.Length + envelope.ReplyTo.Length + envelope.ContentType.Length
            + envelope.Traceparent.Length + envelope.Tracestate.Length;
        if (envelope.Headers.Count != 0)
        {
            foreach (var (key, value) in envelope.Headers)
            {
                weight += key.Length + value.Length + 16;
            }
        }

        return (int)Math.Min(weight, int.MaxValue);
    }

    internal void AddQueuedBytes(long delta) => Interlocked.Add(ref _queuedBytes, delta);

    /// <summary>Live subscriptions (a snapshot).</summary>
    public IReadOnlyCollection<EventSubscription> Subscriptions => _subscriptions.Values.ToArray();

    internal TimeProvider Time { get; }

    /// <summary>How topics and patterns map to metric labels.</summary>
    public TopicGroups Groups { get; }

    internal TimeSpan SlowConsumerThreshold { get; }

    /// <summary>
    /// Publishes an envelope: validates the topic, sets id (Guid "N"), timestamp and deadline
    /// when they are 0/empty, increments the hop count, enforces the hop limit and the TTL, and
    /// queues the envelope on every matching subscription by its policy. Completes synchronously
    /// unless a Block subscription is full; then it waits up to that subscription's block timeout.
    /// </summary>
    /// <exception cref="InvalidParamsException">The topic is not a valid concrete topic.</exception>
    public ValueTask<PublishResult> PublishAsync(Envelope envelope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return LoomTelemetry.Source.HasListeners() ? PublishTracedAsync(envelope, cancellationToken) : PublishCoreAsync(envelope, cancellationToken);
    }

    /// <summary>A publish span (child of the envelope's traceparent) whose context the delivered envelope carries.</summary>
    private async ValueTask<PublishResult> PublishTracedAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        var group = Topics.IsValidTopic(envelope.Topic) ? Groups.GroupOf(envelope.Topic) : "(invalid)";
        using var activity = LoomTelemetry.Source.StartActivity("publish " + group, ActivityKind.Consumer, LoomTelemetry.ParentOf(envelope.Traceparent, envelope.Tracestate));
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "loom");
            activity.SetTag("messaging.operation.type", "receive");
            activity.SetTag("messaging.destination.name", envelope.Topic);
            activity.SetTag("messaging.message.id", envelope.Id);
            activity.SetTag("loom.sender", envelope.Sender);
            if (envelope.ThreadId.Length != 0)
            {
                activity.SetTag("loom.thread_id", envelope.ThreadId);
            }

            envelope.Traceparent = LoomTelemetry.TraceparentOf(activity);
            envelope.Tracestate = activity.TraceStateString ?? string.Empty;
        }

        try
        {
            var result = await PublishCoreAsync(envelope, cancellationToken).ConfigureAwait(false);
            if (activity is not null)
            {
                activity.SetTag("loom.publish.status", result.Status.ToString());
                activity.SetTag("loom.publish.delivered", result.Delivered);
                activity.SetTag("loom.publish.dropped", result.Dropped);
                if (result.Status is PublishStatus.TtlExpired or PublishStatus.HopLimitExceeded)
                {
                    activity.SetStatus(ActivityStatusCode.Error, result.Status.ToString());
                }
            }

            return result;
        }
        catch (Exception ex) when (activity is not null)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.Message);
            throw;
        }
    }

    private ValueTask<PublishResult> PublishCoreAsync(Envelope envelope, CancellationToken cancellationToken)
    {

        var entry = GetTopicEntry(envelope.Topic);
        var now = NowUnixMs();
        if (envelope.Id.Length == 0)
        {
            envelope.Id = Guid.NewGuid().ToString("N");
        }

        if (envelope.TimestampUnixMs == 0)
        {
            envelope.TimestampUnixMs = now;
        }

        if (envelope.DeadlineUnixMs == 0)
        {
            envelope.DeadlineUnixMs = envelope.TimestampUnixMs + (envelope.TtlMs != 0 ? envelope.TtlMs : _defaultTtlMs);
        }

        var hops = envelope.HopCount + 1;
        envelope.HopCount = hops;
        if (hops > _maxHops)
        {
            entry.CountDrop(DropReason.HopLimit);
            return new ValueTask<PublishResult>(new PublishResult(PublishStatus.HopLimitExceeded, 0, 0));
        }

        if (envelope.DeadlineUnixMs <= now)
        {
            entry.CountDrop(DropReason.TtlExpired);
            Interlocked.Increment(ref entry.RefusedTtl);
            return new ValueTask<PublishResult>(new PublishResult(PublishStatus.TtlExpired, 0, 0));
        }

        // Sized whole, as subscribers would receive it, whether or not any subscribes now: a publisher
        // learns of its mistake at once. The weight bounds the encoding (at most 3 bytes a character,
        // 128 for the fields), so most envelopes are never serialized for this.
        var weight = WeightOf(envelope);
        if (_maxEnvelopeBytes > 0 && 3L * weight > _maxEnvelopeBytes && envelope.CalculateSize() > _maxEnvelopeBytes)
        {
            entry.CountDrop(DropReason.TooLarge);
            return new ValueTask<PublishResult>(new PublishResult(PublishStatus.TooLarge, 0, 0));
        }

        var subscriptions = MatchesOf(entry, envelope.Topic);
        Interlocked.Increment(ref entry.PublishedByQos[QosIndex(envelope.Qos)]);
        Volatile.Read(ref _observer)?.Invoke(envelope);
        if (subscriptions.Length == 0)
        {
            Interlocked.Increment(ref entry.NoSubscribers);
            return new ValueTask<PublishResult>(new PublishResult(PublishStatus.NoSubscribers, 0, 0));
        }

        if (Volatile.Read(ref _queuedBytes) >= _maxQueuedBytes)
        {
            entry.CountDrop(DropReason.MemoryLimit);
            return new ValueTask<PublishResult>(new PublishResult(PublishStatus.MemoryLimit, 0, 0));
        }

        envelope.PrepareDeliveries(subscriptions.Length); // final now: N remote subscribers serialize it once
        var delivered = 0;
        var dropped = 0;
        List<EventSubscription>? blocked = null;
        foreach (var subscription in subscriptions)
        {
            switch (subscription.Offer(envelope, weight))
            {
                case OfferResult.Enqueued:
                    delivered++;
                    break;
                case OfferResult.Dropped:
                    dropped++;
                    entry.CountDrop(DropReason.QueueFullDropNewest);
                    break;
                case OfferResult.DroppedStalled:
                    dropped++;
                    entry.CountDrop(DropReason.SlowConsumer);
                    break;
                case OfferResult.MustBlock:
                    (blocked ??= []).Add(subscription);
                    break;
                default:
                    break; // unsubscribed meanwhile
            }
        }

        if (delivered != 0)
        {
            Interlocked.Add(ref entry.Delivered, delivered);
        }

        if (blocked is null)
        {
            return new ValueTask<PublishResult>(new PublishResult(PublishStatus.Accepted, delivered, dropped));
        }

        return PublishBlockedAsync(envelope, weight, entry, blocked, delivered, dropped, cancellationToken);
    }

    private async ValueTask<PublishResult> PublishBlockedAsync(Envelope envelope, int weight, TopicEntry entry, List<EventSubscription> blocked, int delivered, int dropped, CancellationToken cancellationToken)
    {
        // One clock for all: the publisher waits at most the longest block timeout in total.
        var start = Time.GetTimestamp();
        for (var i = 0; i < blocked.Count; i++)
        {
            OfferResult result;
            try
            {
                result = await blocked[i].EnqueueBlockingAsync(envelope, weight, start, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The publisher gave up: this envelope is dropped by this and every remaining blocked subscription.
                entry.CountDrop(DropReason.BlockTimeout);
                for (var j = i + 1; j < blocked.Count; j++)
                {
                    blocked[j].CountDrop(DropReason.BlockTimeout);
                    entry.CountDrop(DropReason.BlockTimeout);
                }

                throw;
            }

            if (result == OfferResult.Enqueued)
            {
                delivered++;
                Interlocked.Increment(ref entry.Delivered);
            }
            else if (result == OfferResult.Dropped)
            {
                dropped++;
                entry.CountDrop(DropReason.BlockTimeout);
            }
            else if (result == OfferResult.DroppedStalled)
            {
                dropped++;
                entry.CountDrop(DropReason.SlowConsumer);
            }
        }

        return new PublishResult(PublishStatus.Accepted, delivered, dropped);
    }

    /// <summary>
    /// Subscribes to a topic pattern. The QoS class gives the defaults: realtime = capacity
    /// <see cref="EventBusOptions.RealtimeQueueCapacity"/>, drop oldest; normal =
    /// <see cref="EventBusOptions.NormalQueueCapacity"/>, drop newest; batch =
    /// <see cref="EventBusOptions.BatchQueueCapacity"/>, block the publisher.
    /// </summary>
    /// <exception cref="InvalidParamsException">The pattern or an option is invalid.</exception>
    public EventSubscription Subscribe(string pattern, SubscriptionOptions options, ISubscriptionSignal? signal = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Topics.ValidatePattern(pattern);

        var qos = options.Qos switch
        {
            QosClass.Unspecified => QosClass.Normal,
            QosClass.Realtime or QosClass.Normal or QosClass.Batch => options.Qos,
            _ => throw new InvalidParamsException($"Unknown QoS class {(int)options.Qos}; use REALTIME, NORMAL or BATCH.", "/qos"),
        };
        var overflow = options.Overflow switch
        {
            OverflowPolicy.Unspecified => qos switch
            {
                QosClass.Realtime => OverflowPolicy.DropOldest,
                QosClass.Batch => OverflowPolicy.Block,
                _ => OverflowPolicy.DropNewest,
            },
            OverflowPolicy.DropOldest or OverflowPolicy.DropNewest or OverflowPolicy.Block => options.Overflow,
            _ => throw new InvalidParamsException($"Unknown overflow policy {(int)options.Overflow}; use DROP_OLDEST, DROP_NEWEST or BLOCK.", "/overflow"),
        };
        if (options.QueueCapacity < 0 || options.QueueCapacity > _options.MaxSubscriptionQueueCapacity)
        {
            throw new InvalidParamsException($"Queue capacity {options.QueueCapacity} is out of range; use 1 to {_options.MaxSubscriptionQueueCapacity} (this bus's limit), or 0 for the QoS class default.", "/queue_capacity");
        }

        var capacity = options.QueueCapacity > 0
            ? options.QueueCapacity
            : qos switch
            {
                QosClass.Realtime => _options.RealtimeQueueCapacity,
                QosClass.Batch => _options.BatchQueueCapacity,
                _ => _options.NormalQueueCapacity,
            };
        var blockTimeout = options.BlockTimeout ?? _options.DefaultBlockTimeout;
        if (blockTimeout < TimeSpan.Zero || blockTimeout > _options.MaxBlockTimeout)
        {
            throw new InvalidParamsException($"Block timeout of {blockTimeout.TotalMilliseconds:0} ms is out of range; use 0 to {_options.MaxBlockTimeout.TotalMilliseconds:0} ms (this bus's limit), or leave it unset for the default of {_options.DefaultBlockTimeout.TotalMilliseconds:0} ms.", "/block_timeout_ms");
        }

        var subscription = new EventSubscription(this, Guid.NewGuid().ToString("N"), pattern, qos, overflow, capacity, blockTimeout, options.Owner, signal)
        {
            MetricGroup = Groups.GroupOf(pattern),
        };
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            _subscriptions[subscription.Id] = subscription;
            _trie.Add(pattern, subscription);
            Interlocked.Increment(ref _version);
        }

        return subscription;
    }

    /// <summary>Removes a subscription; its reader gets false from WaitToReadAsync. False when the id is unknown.</summary>
    public bool Unsubscribe(string subscriptionId)
    {
        ArgumentNullException.ThrowIfNull(subscriptionId);
        EventSubscription? removed;
        lock (_gate)
        {
            if (!_subscriptions.TryRemove(subscriptionId, out removed))
            {
                return false;
            }

            _trie.Remove(removed.Pattern, removed);
            Interlocked.Increment(ref _version);
            Retire(removed);
        }

        removed.Close();
        return true;
    }

    /// <summary>Finds a live subscription by id.</summary>
    public EventSubscription? FindSubscription(string subscriptionId) =>
        _subscriptions.TryGetValue(subscriptionId, out var s) ? s : null;

    /// <summary>Per-topic counters (published, delivered, no subscribers, drops by reason), ordered by topic.</summary>
    public IReadOnlyList<TopicStats> TopicStats()
    {
        var result = new List<TopicStats>(_topics.Count + 1);
        foreach (var entry in _topics.Values)
        {
            result.Add(entry.Snapshot());
        }

        if (_otherTopics.HasActivity)
        {
            result.Add(_otherTopics.Snapshot());
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.Topic, b.Topic));
        return result;
    }

    /// <summary>Closes every subscription; later publishes and subscribes throw ObjectDisposedException.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        EventSubscription[] all;
        lock (_gate)
        {
            all = _subscriptions.Values.ToArray();
            _subscriptions.Clear();
            foreach (var s in all)
            {
                _trie.Remove(s.Pattern, s);
                Retire(s);
            }

            Interlocked.Increment(ref _version);
        }

        foreach (var s in all)
        {
            s.Close();
        }
    }

    // -----------------------------------------------------------------------------------------
    // Internals shared with EventSubscription
    // -----------------------------------------------------------------------------------------

    internal const int MaxQueueCapacity = 1 << 24;

    /// <summary>Index of a QoS class in per-class counters: Unspecified and unknown values count as Normal.</summary>
    internal static int QosIndex(QosClass qos) => qos is QosClass.Realtime or QosClass.Batch ? (int)qos : (int)QosClass.Normal;

    /// <summary>
    /// Counters for metrics, aggregated by label group: publishes by topic group and QoS, and
    /// subscriptions (live and removed) by pattern group and QoS. Walks every tracked topic and
    /// subscription; meant for a scrape every few seconds, not for a hot path.
    /// </summary>
    internal BusMetricsSnapshot CollectMetrics()
    {
        var snapshot = new BusMetricsSnapshot();
        foreach (var entry in _topics.Values)
        {
            snapshot.AddTopic(entry.Group, entry.PublishedByQos, Volatile.Read(ref entry.NoSubscribers), Volatile.Read(ref entry.Dropped[(int)DropReason.HopLimit]), Volatile.Read(ref entry.RefusedTtl), Volatile.Read(ref entry.Dropped[(int)DropReason.MemoryLimit]), Volatile.Read(ref entry.Dropped[(int)DropReason.TooLarge]));
        }

        snapshot.AddTopic(_otherTopics.Group, _otherTopics.PublishedByQos, Volatile.Read(ref _otherTopics.NoSubscribers), Volatile.Read(ref _otherTopics.Dropped[(int)DropReason.HopLimit]), Volatile.Read(ref _otherTopics.RefusedTtl), Volatile.Read(ref _otherTopics.Dropped[(int)DropReason.MemoryLimit]), Volatile.Read(ref _otherTopics.Dropped[(int)DropReason.TooLarge]));

        // Under the gate: a subscription moves from live to retired atomically, so sums never go back.
        lock (_gate)
        {
            foreach (var s in _subscriptions.Values)
            {
                var stats = s.Stats;
                snapshot.AddSubscription(s.MetricGroup, s.Qos, stats.Delivered, stats.Dropped, stats.Depth, s.Capacity, live: true);
            }

            foreach (var ((group, qos), retired) in _retired)
            {
                snapshot.AddSubscription(group, qos, retired.Delivered, retired.Dropped, 0, 0, live: false);
            }
        }

        return snapshot;
    }

    // Called under _gate: the counters of a removed subscription live on in its group's totals.
    private void Retire(EventSubscription subscription)
    {
        var key = (subscription.MetricGroup, subscription.Qos);
        if (!_retired.TryGetValue(key, out var retired))
        {
            retired = new RetiredCounters();
            _retired[key] = retired;
        }

        var stats = subscription.Stats;
        retired.Delivered += stats.Delivered;
        foreach (var (reason, count) in stats.Dropped)
        {
            retired.Dropped[reason] = retired.Dropped.GetValueOrDefault(reason) + count;
        }
    }

    private sealed class RetiredCounters
    {
        public long Delivered;
        public readonly Dictionary<DropReason, long> Dropped = [];
    }

    internal long NowUnixMs() => _clock.NowUnixMs();

    internal void CountTopicDrop(string topic, DropReason reason)
    {
        if (_topics.TryGetValue(topic, out var entry))
        {
            entry.CountDrop(reason);
        }
        else
        {
            _otherTopics.CountDrop(reason);
        }
    }

    internal void RaiseSlowConsumer(EventSubscription subscription, int depth)
    {
        Log.SlowConsumer(_logger, subscription.Id, subscription.Pattern, subscription.Owner ?? "-", depth, subscription.Capacity, subscription.Overflow);
        var handlers = SlowConsumer;
        if (handlers is null)
        {
            return;
        }

        var e = new SlowConsumerEvent(subscription.Id, subscription.Pattern, subscription.Owner, subscription.Qos, subscription.Overflow, depth, subscription.Capacity, subscription.DroppedTotal, Time.GetUtcNow());
        foreach (var handler in handlers.GetInvocationList())
        {
            try
            {
                ((Action<SlowConsumerEvent>)handler)(e);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Log.SlowConsumerHandlerFailed(_logger, ex, subscription.Id);
            }
        }
    }

    internal void LogDropEpisode(EventSubscription subscription, DropReason reason) =>
        Log.DropEpisode(_logger, subscription.Id, subscription.Pattern, subscription.Owner ?? "-", reason, subscription.Count, subscription.Capacity, subscription.Overflow);

    internal void LogSignalFailed(EventSubscription subscription, Exception exception) =>
        Log.SignalFailed(_logger, exception, subscription.Id);

    // -----------------------------------------------------------------------------------------
    // Topic cache
    // -----------------------------------------------------------------------------------------

    private TopicEntry GetTopicEntry(string topic)
    {
        // A publisher sends one topic string object again and again (the protocol decoder hands out
        // one string per topic and thread): this thread's last topic is found by reference, without
        // hashing it. Entries are never removed, so a remembered one stays this bus's entry.
        var last = t_lastTopic;
        if (last is not null && ReferenceEquals(last.Topic, topic) && ReferenceEquals(last.Bus, this))
        {
            return last.Entry;
        }

        var found = FindTopicEntry(topic);
        t_lastTopic = new LastTopic(this, topic, found);
        return found;
    }

    private TopicEntry FindTopicEntry(string topic)
    {
        if (topic is not null && _topics.TryGetValue(topic, out var entry))
        {
            return entry; // only valid topics get an entry
        }

        Topics.ValidateTopic(topic!);
        if (Volatile.Read(ref _topicCount) >= _options.MaxTrackedTopics)
        {
            if (Interlocked.Exchange(ref _topicLimitLogged, 1) == 0)
            {
                Log.TopicLimitReached(_logger, _options.MaxTrackedTopics, topic!);
            }

            return _otherTopics;
        }

        var created = new TopicEntry(topic!, Groups.GroupOf(topic!));
        entry = _topics.GetOrAdd(topic!, created);
        if (ReferenceEquals(entry, created))
        {
            Interlocked.Increment(ref _topicCount);
        }

        return entry;
    }

    private EventSubscription[] MatchesOf(TopicEntry entry, string topic)
    {
        var version = Volatile.Read(ref _version);
        var cached = entry.Matches;
        if (cached is not null && cached.Version == version)
        {
            return cached.Subscriptions;
        }

        lock (_gate)
        {
            _matchBuffer.Clear();
            _trie.Match(topic, _matchBuffer);
            var subscriptions = _matchBuffer.Count == 0 ? [] : _matchBuffer.ToArray();
            _matchBuffer.Clear();
            if (!ReferenceEquals(entry, _otherTopics))
            {
                // Read under the lock: the version cannot move while we hold it.
                entry.Matches = new MatchSet(Volatile.Read(ref _version), subscriptions);
            }

            return subscriptions;
        }
    }

    [ThreadStatic]
    private static LastTopic? t_lastTopic;

    private sealed class LastTopic(EventBus bus, string topic, TopicEntry entry)
    {
        public readonly EventBus Bus = bus;
        public readonly string Topic = topic;
        public readonly TopicEntry Entry = entry;
    }

    private sealed class MatchSet(long version, EventSubscription[] subscriptions)
    {
        public readonly long Version = version;
        public readonly EventSubscription[] Subscriptions = subscriptions;
    }

    private sealed class TopicEntry(string topic, string group)
    {
        public readonly string Topic = topic;
        public readonly string Group = group;
        public readonly long[] Dropped = new long[DropReasons.Count];
        public readonly long[] PublishedByQos = new long[4];
        public MatchSet? Matches;
        public long Delivered;
        public long NoSubscribers;
        public long RefusedTtl;

        public long Published
        {
            get
            {
                long total = 0;
                for (var i = 0; i < PublishedByQos.Length; i++)
                {
                    total += Volatile.Read(ref PublishedByQos[i]);
                }

                return total;
            }
        }

        public bool HasActivity
        {
            get
            {
                if (Published != 0)
                {
                    return true;
                }

                foreach (var d in Dropped)
                {
                    if (d != 0)
                    {
                        return true;
                    }
                }

                return false;
            }
        }

        public void CountDrop(DropReason reason) => Interlocked.Increment(ref Dropped[(int)reason]);

        public TopicStats Snapshot()
        {
            var dropped = DropReasons.Snapshot(Dropped, out var total);
            return new TopicStats
            {
                Topic = Topic,
                Published = Published,
                Delivered = Volatile.Read(ref Delivered),
                NoSubscribers = Volatile.Read(ref NoSubscribers),
                Dropped = dropped,
                DroppedTotal = total,
            };
        }
    }
}
