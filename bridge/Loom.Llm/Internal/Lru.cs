namespace Loom.Llm.Internal;

/// <summary>
/// A map bounded by entry count and by a size the caller gives each value; the least recently
/// used entries are evicted first. Thread-safe (one lock; every operation is O(1)).
/// </summary>
internal sealed class Lru<TKey, TValue>
    where TKey : notnull
{
    private readonly Dictionary<TKey, LinkedListNode<Entry>> _map;
    private readonly LinkedList<Entry> _order = new();
    private readonly int _maxEntries;
    private readonly long _maxBytes;
    private readonly Lock _gate = new();
    private long _bytes;

    public Lru(int maxEntries, long maxBytes, IEqualityComparer<TKey>? comparer = null)
    {
        _maxEntries = maxEntries;
        _maxBytes = maxBytes;
        _map = new Dictionary<TKey, LinkedListNode<Entry>>(comparer);
    }

    public long Evictions { get; private set; }

    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _map.Count;
            }
        }
    }

    public long Bytes
    {
        get
        {
            lock (_gate)
            {
                return _bytes;
            }
        }
    }

    public bool TryGet(TKey key, out TValue value)
    {
        lock (_gate)
        {
            if (_map.TryGetValue(key, out var node))
            {
                _order.Remove(node);
                _order.AddFirst(node);
                value = node.Value.Value;
                return true;
            }
        }

        value = default!;
        return false;
    }

    /// <summary>Adds or replaces; false when the value alone is larger than the bound (not kept).</summary>
    public bool Set(TKey key, TValue value, long size)
    {
        if (_maxEntries == 0 || size > _maxBytes)
        {
            return false;
        }

        lock (_gate)
        {
            if (_map.Remove(key, out var old))
            {
                _order.Remove(old);
                _bytes -= old.Value.Size;
            }

            var node = _order.AddFirst(new Entry(key, value, size));
            _map[key] = node;
            _bytes += size;
            while (_map.Count > _maxEntries || _bytes > _maxBytes)
            {
                var last = _order.Last!;
                _order.RemoveLast();
                _map.Remove(last.Value.Key);
                _bytes -= last.Value.Size;
                Evictions++;
            }
        }

        return true;
    }

    /// <summary>Reads, changes and stores a value under the lock (adds it from <paramref name="seed"/> when absent).</summary>
    public TValue Update(TKey key, Func<TValue> seed, Func<TValue, TValue> change)
    {
        lock (_gate)
        {
            var current = _map.TryGetValue(key, out var node) ? node.Value.Value : seed();
            var next = change(current);
            if (node is not null)
            {
                node.Value = node.Value with { Value = next };
                _order.Remove(node);
                _order.AddFirst(node);
            }
            else if (_maxEntries > 0)
            {
                _map[key] = _order.AddFirst(new Entry(key, next, 1));
                _bytes += 1;
                while (_map.Count > _maxEntries)
                {
                    var last = _order.Last!;
                    _order.RemoveLast();
                    _map.Remove(last.Value.Key);
                    _bytes -= last.Value.Size;
                    Evictions++;
                }
            }

            return next;
        }
    }

    public void Remove(TKey key)
    {
        lock (_gate)
        {
            if (_map.Remove(key, out var node))
            {
                _order.Remove(node);
                _bytes -= node.Value.Size;
            }
        }
    }

    private sealed record Entry(TKey Key, TValue Value, long Size);
}
