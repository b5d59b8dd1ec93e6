namespace Loom.Core.Internal;

internal static class DropReasons
{
    public const int Count = 5;

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
    MustBlock,
    Closed,
}
