using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace Loom.Core.Internal;

/// <summary>
/// Lock-free bounded multi-producer multi-consumer FIFO queue: a <see cref="ConcurrentQueue{T}"/>
/// (segments that grow from 32 slots and are dropped once drained) behind a count that a producer
/// reserves by compare-and-swap before it enqueues. Memory follows what is queued, not the
/// capacity: an idle subscription of capacity 8,192 costs about a kilobyte instead of the 128 KiB
/// a preallocated ring would hold (which dominated a bridge's memory per connected agent). A
/// producer can evict the oldest item by dequeuing.
/// </summary>
internal sealed class BoundedQueue<T>
{
    private readonly ConcurrentQueue<T> _items = new();
    private PaddedCount _count; // items queued plus enqueues reserved and not yet visible

    public BoundedQueue(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    public int Capacity { get; }

    /// <summary>True when no item is ready at the head (a racing producer may be mid-write).</summary>
    public bool IsEmpty => _items.IsEmpty;

    /// <summary>Items in the queue, approximately while producers and consumers race.</summary>
    public int ApproximateCount => Math.Clamp(Volatile.Read(ref _count.Value), 0, Capacity);

    public bool TryEnqueue(T item)
    {
        var count = Volatile.Read(ref _count.Value);
        while (true)
        {
            if (count >= Capacity)
            {
                return false; // full (or a consumer has taken an item and not yet released its place)
            }

            var seen = Interlocked.CompareExchange(ref _count.Value, count + 1, count);
            if (seen == count)
            {
                break;
            }

            count = seen;
        }

        _items.Enqueue(item);
        return true;
    }

    public bool TryDequeue([System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out T item)
    {
        if (_items.TryDequeue(out item))
        {
            Interlocked.Decrement(ref _count.Value);
            return true;
        }

        return false;
    }
}

/// <summary>Keeps a count on its own cache line.</summary>
[StructLayout(LayoutKind.Explicit, Size = 128)]
internal struct PaddedCount
{
    [FieldOffset(64)]
    public int Value;
}
