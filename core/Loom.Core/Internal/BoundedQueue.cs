using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Loom.Core.Internal;

/// <summary>
/// Lock-free bounded multi-producer multi-consumer ring (Dmitry Vyukov's algorithm): each slot
/// carries a sequence number that says whether it is free for the producer or ready for the
/// consumer at a given position. Any capacity works (positions map to slots by modulo, by mask
/// when the capacity is a power of two). A producer can evict the oldest item by dequeuing.
/// </summary>
internal sealed class BoundedQueue<T>
    where T : class
{
    private readonly Slot[] _slots;
    private readonly long _mask; // -1 when the slot count is not a power of two
    private readonly bool _single; // capacity 1: the ring needs two slots, so the head position bounds it
    private PaddedPositions _positions;

    public BoundedQueue(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);

        // With one slot "free at position p+1" and "filled at position p" share a sequence
        // number, so a one-item queue gets two slots and checks the head position instead.
        var slots = Math.Max(capacity, 2);
        _slots = new Slot[slots];
        for (var i = 0; i < slots; i++)
        {
            _slots[i].Sequence = i;
        }

        _mask = (slots & (slots - 1)) == 0 ? slots - 1 : -1;
        _single = capacity == 1;
        Capacity = capacity;
    }

    public int Capacity { get; }

    /// <summary>True when no item is ready at the head (a racing producer may be mid-write).</summary>
    public bool IsEmpty
    {
        get
        {
            var pos = Volatile.Read(ref _positions.Dequeue);
            return Volatile.Read(ref _slots[Index(pos)].Sequence) - (pos + 1) < 0;
        }
    }

    /// <summary>Items in the queue, approximately while producers and consumers race.</summary>
    public int ApproximateCount
    {
        get
        {
            var count = Volatile.Read(ref _positions.Enqueue) - Volatile.Read(ref _positions.Dequeue);
            return count <= 0 ? 0 : (int)Math.Min(count, Capacity);
        }
    }

    public bool TryEnqueue(T item)
    {
        var slots = _slots;
        var pos = Volatile.Read(ref _positions.Enqueue);
        while (true)
        {
            if (_single && pos != Volatile.Read(ref _positions.Dequeue))
            {
                return false; // the one item is still there
            }

            ref var slot = ref slots[Index(pos)];
            var diff = Volatile.Read(ref slot.Sequence) - pos;
            if (diff == 0)
            {
                var seen = Interlocked.CompareExchange(ref _positions.Enqueue, pos + 1, pos);
                if (seen == pos)
                {
                    slot.Item = item;
                    Volatile.Write(ref slot.Sequence, pos + 1);
                    return true;
                }

                pos = seen;
            }
            else if (diff < 0)
            {
                return false; // full: the consumer has not freed this slot yet
            }
            else
            {
                pos = Volatile.Read(ref _positions.Enqueue);
            }
        }
    }

    public bool TryDequeue([System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out T item)
    {
        var slots = _slots;
        var pos = Volatile.Read(ref _positions.Dequeue);
        while (true)
        {
            ref var slot = ref slots[Index(pos)];
            var diff = Volatile.Read(ref slot.Sequence) - (pos + 1);
            if (diff == 0)
            {
                var seen = Interlocked.CompareExchange(ref _positions.Dequeue, pos + 1, pos);
                if (seen == pos)
                {
                    item = slot.Item!;
                    slot.Item = null;
                    Volatile.Write(ref slot.Sequence, pos + slots.Length);
                    return true;
                }

                pos = seen;
            }
            else if (diff < 0)
            {
                item = null;
                return false; // empty
            }
            else
            {
                pos = Volatile.Read(ref _positions.Dequeue);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Index(long position) => (int)(_mask >= 0 ? position & _mask : position % _slots.Length);

    private struct Slot
    {
        public T? Item;
        public long Sequence;
    }
}

/// <summary>Keeps the producer and consumer positions on separate cache lines.</summary>
[StructLayout(LayoutKind.Explicit, Size = 192)]
internal struct PaddedPositions
{
    [FieldOffset(64)]
    public long Enqueue;

    [FieldOffset(128)]
    public long Dequeue;
}
