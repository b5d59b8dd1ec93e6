namespace Loom.Core;

/// <summary>
/// A budget of memory-store bytes shared by every write made under it (one per identity in the bridge):
/// an entry written under a quota is counted against it (as <see cref="MemoryStore.SizeOf"/> counts it)
/// until it is overwritten, deleted or expires. A write that would take <see cref="Bytes"/> past
/// <see cref="MaxBytes"/> is refused with RESOURCE_EXHAUSTED and changes nothing.
/// </summary>
public sealed class MemoryQuota(string name, long maxBytes, string source)
{
    private long _bytes;
    private long _refused;

    /// <summary>Whose budget it is (an identity), for the refusal's message.</summary>
    public string Name { get; } = name;

    /// <summary>The limit.</summary>
    public long MaxBytes { get; } = maxBytes;

    /// <summary>Where the limit is configured (e.g. <c>permissions.alice.limits.max_memory_bytes</c>), for the refusal's message.</summary>
    public string Source { get; } = source;

    /// <summary>Bytes of live entries written under it.</summary>
    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Writes refused by it.</summary>
    public long Refused => Volatile.Read(ref _refused);

    /// <summary>Reserves <paramref name="delta"/> bytes (a decrease always applies); false when that passes the limit.</summary>
    internal bool TryAdd(long delta)
    {
        if (delta <= 0)
        {
            Interlocked.Add(ref _bytes, delta);
            return true;
        }

        while (true)
        {
            var current = Volatile.Read(ref _bytes);
            if (current + delta > MaxBytes)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _bytes, current + delta, current) == current)
            {
                return true;
            }
        }
    }

    internal void Release(long bytes) => Interlocked.Add(ref _bytes, -bytes);

    internal ResourceExhaustedException Refuse(long delta)
    {
        Interlocked.Increment(ref _refused);
        return new ResourceExhaustedException($"Identity '{Name}' holds {Bytes} bytes of memory and this write needs {delta} more, over its limit of {MaxBytes} bytes ({Source}; an entry counts its key and value plus {MemoryStore.EntryOverheadBytes} bytes). Nothing was written: delete keys it wrote, write smaller values or let entries expire, or raise the limit.");
    }
}
