namespace Loom.Core.Internal;

internal static class DropReasons
{
    public const int Count = 6;

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
