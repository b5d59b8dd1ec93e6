using Loom.Protocol.V1;

namespace Loom.Core.Internal;

internal static class DropReasons
{
    public const int Count = 8;

    public static IReadOnlyDictionary<DropReason, long> Snapshot(long[] counters, out long total)
    {
        var result = new Dictionary<DropReason, long>(Count);
        total = 0;
        for (var i = 0; i < Count; i++)
        {
            var value = Volatile.Read(ref counters[i]);
            result[(DropReason)i] = value;
            total += value;
        }

        return result;
    }
}

/// <summary>An envelope in a subscription's queue with the bytes it was counted as (see <see cref="EventBus.WeightOf"/>).</summary>
internal readonly record struct QueuedEnvelope(Envelope Envelope, int Weight);

/// <summary>What a subscription did with an offered envelope.</summary>
internal enum OfferResult
{
    Enqueued,
    Dropped,

    /// <summary>A blocking subscription that is stalled refused it without making the publisher wait.</summary>
    DroppedStalled,
    MustBlock,
    Closed,
}
