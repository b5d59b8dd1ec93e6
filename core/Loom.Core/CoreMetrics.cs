using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Loom.Core.Internal;
using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>
/// Metrics of the core on a <see cref="Meter"/> (System.Diagnostics.Metrics): publishes,
/// deliveries, drops and queue depths of an <see cref="EventBus"/> (observable instruments that
/// read the bus's own counters when collected, so the publish path pays nothing), and capability
/// calls of an <see cref="ActionBroker"/> by capability and outcome with a latency histogram.
/// Labels are bounded: topics and patterns are reduced to groups (<see cref="TopicGroups"/>),
/// capability names to registered ones (at most <c>maxCapabilityLabels</c>, then <c>(other)</c>).
/// </summary>
public sealed class CoreMetrics : IDisposable
{
    /// <summary>Conventional meter name for Loom's instruments.</summary>
    public const string MeterName = "Loom";

    /// <summary>Upper bounds (seconds) of the call latency histogram's buckets: 50 µs to 60 s.</summary>
    public static IReadOnlyList<double> CallDurationBuckets { get; } =
        [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    private const string Unregistered = "(unregistered)";
    private static readonly TimeSpan SnapshotMaxAge = TimeSpan.FromMilliseconds(250);

    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly int _maxCapabilityLabels;
    private readonly Counter<long> _calls;
    private readonly Histogram<double> _duration;
    private readonly ConcurrentDictionary<string, string> _capabilityLabels = new(StringComparer.Ordinal);
    private readonly Lock _snapshotGate = new();
    private BusMetricsSnapshot? _snapshot;
    private long _snapshotTicks;

    /// <summary>Creates the instruments on <paramref name="meter"/> and starts recording calls of <paramref name="broker"/>.</summary>
    public CoreMetrics(Meter meter, EventBus bus, ActionBroker broker, int maxCapabilityLabels = 256)
    {
        ArgumentNullException.ThrowIfNull(meter);
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentOutOfRangeException.ThrowIfNegative(maxCapabilityLabels);
        _bus = bus;
        _broker = broker;
        _maxCapabilityLabels = maxCapabilityLabels;

        meter.CreateObservableCounter("loom.events.published", ObservePublished, "{event}", "Envelopes accepted for publishing, by topic group and the envelope's QoS class.");
        meter.CreateObservableCounter("loom.events.no_subscribers", ObserveNoSubscribers, "{event}", "Published envelopes that matched no subscription, by topic group.");
        meter.CreateObservableCounter("loom.events.refused", ObserveRefused, "{event}", "Envelopes refused at publish (hop_limit, ttl_expired, memory_limit, too_large), by topic group and reason.");
        meter.CreateObservableCounter("loom.events.delivered", ObserveDelivered, "{event}", "Envelopes handed to subscribers, by subscription pattern group and QoS class.");
        meter.CreateObservableCounter("loom.events.dropped", ObserveDropped, "{event}", "Envelopes dropped by subscriptions, by pattern group, QoS class and reason.");
        meter.CreateObservableGauge("loom.subscriptions", ObserveSubscriptions, "{subscription}", "Live subscriptions, by pattern group and QoS class.");
        meter.CreateObservableGauge("loom.subscription.queue.depth", ObserveDepth, "{event}", "Envelopes waiting in subscription queues, by pattern group and QoS class.");
        meter.CreateObservableGauge("loom.subscription.queue.bytes", () => bus.QueuedBytes, "By", "Bytes held in all subscription queues (payload, strings and headers plus 128 per envelope); publishes are refused at the bus's max_queued_bytes.");
        meter.CreateObservableGauge("loom.subscription.queue.capacity", ObserveCapacity, "{event}", "Total capacity of the subscription queues, by pattern group and QoS class.");
        meter.CreateObservableGauge("loom.action.calls.in_flight", ObserveInFlight, "{call}", "Capability calls running now, by capability.");
        _calls = meter.CreateCounter<long>("loom.action.calls", "{call}", "Capability calls completed, by capability and outcome (ok or the error code).");
        _duration = meter.CreateHistogram<double>(
            "loom.action.call.duration",
            "s",
            "Capability call latency through the broker (validation, routing, provider round trip), by capability and outcome.",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = CallDurationBuckets });
        broker.AttachMetrics(this);
    }

    /// <summary>The label of a QoS class: realtime, normal or batch.</summary>
    public static string QosLabel(QosClass qos) => qos switch
    {
        QosClass.Realtime => "realtime",
        QosClass.Batch => "batch",
        _ => "normal",
    };

    /// <summary>The label of a drop reason, e.g. queue_full_drop_newest.</summary>
    public static string ReasonLabel(DropReason reason) => reason switch
    {
        DropReason.QueueFullDropOldest => "queue_full_drop_oldest",
        DropReason.QueueFullDropNewest => "queue_full_drop_newest",
        DropReason.BlockTimeout => "block_timeout",
        DropReason.TtlExpired => "ttl_expired",
        DropReason.HopLimit => "hop_limit",
        DropReason.SlowConsumer => "slow_consumer",
        DropReason.MemoryLimit => "memory_limit",
        DropReason.TooLarge => "too_large",
        _ => "unknown",
    };

    /// <summary>
    /// Starts a collection: the next observation reads the bus afresh (the observable
    /// instruments of one collection share one reading, kept up to 250 ms otherwise).
    /// </summary>
    public void BeginCollection()
    {
        lock (_snapshotGate)
        {
            _snapshot = null;
        }
    }

    /// <summary>Stops recording calls.</summary>
    public void Dispose() => _broker.DetachMetrics(this);

    internal void RecordCall(string capability, ErrorCode? error, TimeSpan duration)
    {
        var label = CapabilityLabel(capability);
        var outcome = error is { } code ? ErrorCodes.Name(code).ToLowerInvariant() : "ok";
        var capabilityTag = new KeyValuePair<string, object?>("capability", label);
        var outcomeTag = new KeyValuePair<string, object?>("outcome", outcome);
        _calls.Add(1, capabilityTag, outcomeTag);
        _duration.Record(duration.TotalSeconds, capabilityTag, outcomeTag);
    }

    private string CapabilityLabel(string capability)
    {
        if (_capabilityLabels.TryGetValue(capability, out var label))
        {
            return label;
        }

        if (!_broker.IsRegistered(capability))
        {
            return Unregistered;
        }

        return _capabilityLabels.Count >= _maxCapabilityLabels ? TopicGroups.Other : _capabilityLabels.GetOrAdd(capability, capability);
    }

    private BusMetricsSnapshot Snapshot()
    {
        lock (_snapshotGate)
        {
            var now = Environment.TickCount64;
            if (_snapshot is null || now - _snapshotTicks > SnapshotMaxAge.TotalMilliseconds)
            {
                _snapshot = _bus.CollectMetrics();
                _snapshotTicks = now;
            }

            return _snapshot;
        }
    }

    private static KeyValuePair<string, object?> Tag(string key, string value) => new(key, value);

    private IEnumerable<Measurement<long>> ObservePublished()
    {
        foreach (var ((group, qos), count) in Snapshot().Published)
        {
            yield return new Measurement<long>(count, Tag("topic_group", group), Tag("qos", QosLabel(qos)));
        }
    }

    private IEnumerable<Measurement<long>> ObserveNoSubscribers()
    {
        foreach (var (group, count) in Snapshot().NoSubscribers)
        {
            yield return new Measurement<long>(count, Tag("topic_group", group));
        }
    }

    private IEnumerable<Measurement<long>> ObserveRefused()
    {
        foreach (var ((group, reason), count) in Snapshot().Refused)
        {
            yield return new Measurement<long>(count, Tag("topic_group", group), Tag("reason", ReasonLabel(reason)));
        }
    }

    private IEnumerable<Measurement<long>> ObserveDelivered()
    {
        foreach (var ((pattern, qos), totals) in Snapshot().Subscriptions)
        {
            yield return new Measurement<long>(totals.Delivered, Tag("pattern", pattern), Tag("qos", QosLabel(qos)));
        }
    }

    private IEnumerable<Measurement<long>> ObserveDropped()
    {
        foreach (var ((pattern, qos), totals) in Snapshot().Subscriptions)
        {
            for (var r = 0; r < totals.Dropped.Length; r++)
            {
                if (r is (int)DropReason.HopLimit or (int)DropReason.TooLarge)
                {
                    continue; // only at publish: loom.events.refused
                }

                yield return new Measurement<long>(totals.Dropped[r], Tag("pattern", pattern), Tag("qos", QosLabel(qos)), Tag("reason", ReasonLabel((DropReason)r)));
            }
        }
    }

    private IEnumerable<Measurement<long>> ObserveSubscriptions()
    {
        foreach (var ((pattern, qos), totals) in Snapshot().Subscriptions)
        {
            yield return new Measurement<long>(totals.Live, Tag("pattern", pattern), Tag("qos", QosLabel(qos)));
        }
    }

    private IEnumerable<Measurement<long>> ObserveDepth()
    {
        foreach (var ((pattern, qos), totals) in Snapshot().Subscriptions)
        {
            yield return new Measurement<long>(totals.Depth, Tag("pattern", pattern), Tag("qos", QosLabel(qos)));
        }
    }

    private IEnumerable<Measurement<long>> ObserveCapacity()
    {
        foreach (var ((pattern, qos), totals) in Snapshot().Subscriptions)
        {
            yield return new Measurement<long>(totals.Capacity, Tag("pattern", pattern), Tag("qos", QosLabel(qos)));
        }
    }

    private IEnumerable<Measurement<long>> ObserveInFlight()
    {
        var other = 0L;
        var labelled = 0;
        foreach (var (name, count) in _broker.InFlightByCapability())
        {
            if (labelled++ < _maxCapabilityLabels)
            {
                yield return new Measurement<long>(count, Tag("capability", name));
            }
            else
            {
                other += count;
            }
        }

        if (labelled > _maxCapabilityLabels)
        {
            yield return new Measurement<long>(other, Tag("capability", TopicGroups.Other));
        }
    }
}
