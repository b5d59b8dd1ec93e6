using Loom.Protocol.V1;

namespace Loom.Core.Internal;

/// <summary>Bus counters summed by metric label (topic group or pattern group, QoS).</summary>
internal sealed class BusMetricsSnapshot
{
    public Dictionary<(string Group, QosClass Qos), long> Published { get; } = [];

    public Dictionary<string, long> NoSubscribers { get; } = new(StringComparer.Ordinal);

    public Dictionary<(string Group, DropReason Reason), long> Refused { get; } = [];

    public Dictionary<(string Pattern, QosClass Qos), SubscriptionTotals> Subscriptions { get; } = [];

    public void AddTopic(string group, long[] publishedByQos, long noSubscribers, long refusedHops, long refusedTtl, long refusedMemory = 0, long refusedTooLarge = 0)
    {
        for (var q = 1; q < publishedByQos.Length; q++)
        {
            var count = Volatile.Read(ref publishedByQos[q]);
            if (count != 0)
            {
                var key = (group, (QosClass)q);
                Published[key] = Published.GetValueOrDefault(key) + count;
            }
        }

        if (noSubscribers != 0)
        {
            NoSubscribers[group] = NoSubscribers.GetValueOrDefault(group) + noSubscribers;
        }

        if (refusedHops != 0)
        {
            Refused[(group, DropReason.HopLimit)] = Refused.GetValueOrDefault((group, DropReason.HopLimit)) + refusedHops;
        }

        if (refusedTtl != 0)
        {
            Refused[(group, DropReason.TtlExpired)] = Refused.GetValueOrDefault((group, DropReason.TtlExpired)) + refusedTtl;
        }

        if (refusedMemory != 0)
        {
            Refused[(group, DropReason.MemoryLimit)] = Refused.GetValueOrDefault((group, DropReason.MemoryLimit)) + refusedMemory;
        }

        if (refusedTooLarge != 0)
        {
            Refused[(group, DropReason.TooLarge)] = Refused.GetValueOrDefault((group, DropReason.TooLarge)) + refusedTooLarge;
        }
    }

    public void AddSubscription(string pattern, QosClass qos, long delivered, IReadOnlyDictionary<DropReason, long> dropped, int depth, int capacity, bool live)
    {
        var key = (pattern, qos);
        if (!Subscriptions.TryGetValue(key, out var totals))
        {
            totals = new SubscriptionTotals();
            Subscriptions[key] = totals;
        }

        totals.Delivered += delivered;
        foreach (var (reason, count) in dropped)
        {
            totals.Dropped[(int)reason] += count;
        }

        totals.Depth += depth;
        totals.Capacity += capacity;
        if (live)
        {
            totals.Live++;
        }
    }
}

internal sealed class SubscriptionTotals
{
    public long Delivered;
    public readonly long[] Dropped = new long[DropReasons.Count];
    public long Depth;
    public long Capacity;
    public int Live;
}
