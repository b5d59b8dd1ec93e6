using System.Collections.Concurrent;
using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>Limits of a <see cref="MemoryStore"/>.</summary>
/// <remarks>
/// Bytes are counted per entry as the UTF-8 bytes of its key, the bytes of its value and
/// <see cref="MemoryStore.EntryOverheadBytes"/> for what the store keeps beside them. A write
/// past a limit is refused with RESOURCE_EXHAUSTED and changes nothing; deletes, overwrites with
/// smaller values and expiry give the bytes back.
/// </remarks>
public sealed record MemoryStoreOptions
{
    /// <summary>Entries one namespace may hold. Default 100000.</summary>
    public int MaxEntriesPerNamespace { get; init; } = 100_000;

    /// <summary>Entries the whole store may hold. Default 1000000.</summary>
    public long MaxTotalEntries { get; init; } = 1_000_000;

    /// <summary>
    /// Bytes the whole store may hold (see the remarks for how an entry is counted). Default 0:
    /// an eighth of the memory the process may use, at least 64 MiB (3 GiB with 24 GiB).
    /// </summary>
    public long MaxTotalBytes { get; init; }

    /// <summary>
    /// Bytes one namespace may hold, so that one agent's runaway writes leave room for the others.
    /// Default 0: a quarter of <see cref="MaxTotalBytes"/> in force.
    /// </summary>
    public long MaxBytesPerNamespace { get; init; }

    /// <summary>Largest value, in bytes. Default 1 MiB.</summary>
    public int MaxValueBytes { get; init; } = 1024 * 1024;

    /// <summary>Longest key (and namespace), in characters. Default 512.</summary>
    public int MaxKeyLength { get; init; } = 512;

    /// <summary>Namespaces the store may hold. Default 10000.</summary>
    public int MaxNamespaces { get; init; } = 10_000;

    /// <summary>Longest time to live. Default 30 days.</summary>
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromDays(30);

    /// <summary>An eighth of the memory the process may use, at least 64 MiB.</summary>
    public static long DefaultMaxTotalBytes() => Math.Max(64L * 1024 * 1024, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 8);

    /// <summary>Checks every limit.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A limit is out of range; the message names it and the accepted range.</exception>
    public void Validate()
    {
        var problem = (MaxEntriesPerNamespace < 1 ? $"MaxEntriesPerNamespace (memory.max_entries_per_namespace) is {MaxEntriesPerNamespace}; use a positive number." : null)
            ?? (MaxTotalEntries < 1 ? $"MaxTotalEntries (memory.max_total_entries) is {MaxTotalEntries}; use a positive number." : null)
            ?? (MaxTotalBytes < 0 ? $"MaxTotalBytes (memory.max_total_bytes) is {MaxTotalBytes}; use 0 for the default (an eighth of the memory the process may use) or a positive number of bytes." : null)
            ?? (MaxBytesPerNamespace < 0 ? $"MaxBytesPerNamespace (memory.max_bytes_per_namespace) is {MaxBytesPerNamespace}; use 0 for the default (a quarter of the total) or a positive number of bytes." : null)
            ?? (MaxValueBytes < 0 ? $"MaxValueBytes (memory.max_value_bytes) is {MaxValueBytes}; use 0 or a positive number of bytes." : null)
            ?? (MaxKeyLength < 1 ? $"MaxKeyLength is {MaxKeyLength}; use a positive number of characters." : null)
            ?? (MaxNamespaces < 1 ? $"MaxNamespaces is {MaxNamespaces}; use a positive number." : null)
            ?? (MaxTtl <= TimeSpan.Zero ? $"MaxTtl is {MaxTtl}; use a positive time span." : null);
        if (problem is not null)
        {
            throw new ArgumentOutOfRangeException(ParamOf(problem), problem);
        }
    }

    private static string ParamOf(string problem) => problem[..problem.IndexOf(' ', StringComparison.Ordinal)];
}

/// <summary>
/// Namespaced key-value memory with TTL, versions and compare-and-set. Versions come from one
/// store-wide counter, so a key's version increases on every write and never repeats, even after
/// a delete. Expired entries are never returned; they are removed when touched and by
/// <see cref="Sweep"/>. Entries and bytes are bounded per namespace and in total
/// (<see cref="MemoryStoreOptions"/>); a write past a limit is refused with RESOURCE_EXHAUSTED and
/// changes nothing. Thread-safe (one lock per namespace; the totals are reserved atomically, so
/// concurrent writers never take the store past them).
/// </summary>
public sealed class MemoryStore
{
    private const int DefaultListLimit = 1000;
    private const int MaxListLimit = 10_000;

    private readonly MemoryStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Space> _spaces = new(StringComparer.Ordinal);
    private readonly Lock _createGate = new();
    private readonly Totals _totals = new();
    private readonly long _maxTotalBytes;
    private readonly long _maxBytesPerNamespace;
    private readonly long[] _refused = new long[Enum.GetValues<MemoryStoreLimit>().Length];
    private long _version;

    // Earliest expiry of any entry (long.MaxValue: none known), so a full store sweeps only when something expired.
    private long _earliestExpiry = long.MaxValue;

    /// <summary>
    /// Bytes an entry is counted as beyond its key (UTF-8) and value: the entry, its key string,
    /// the value's buffer and the index nodes that hold them, on a 64-bit runtime.
    /// </summary>
    public const int EntryOverheadBytes = 192;

    public MemoryStore(MemoryStoreOptions? options = null, TimeProvider? time = null)
    {
        _options = options ?? new MemoryStoreOptions();
        _options.Validate();
        _maxTotalBytes = _options.MaxTotalBytes > 0 ? _options.MaxTotalBytes : MemoryStoreOptions.DefaultMaxTotalBytes();
        _maxBytesPerNamespace = _options.MaxBytesPerNamespace > 0 ? _options.MaxBytesPerNamespace : Math.Max(1, _maxTotalBytes / 4);
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The store limits.</summary>
    public MemoryStoreOptions Options => _options;

    /// <summary>The limit of <see cref="TotalBytes"/> in force (configured, or derived from the machine's memory).</summary>
    public long MaxTotalBytes => _maxTotalBytes;

    /// <summary>The limit of one namespace's bytes in force (configured, or a quarter of <see cref="MaxTotalBytes"/>).</summary>
    public long MaxBytesPerNamespace => _maxBytesPerNamespace;

    /// <summary>Bytes the store holds now (entries not yet removed after they expired included), counted as <see cref="EntryOverheadBytes"/> says.</summary>
    public long TotalBytes => Volatile.Read(ref _totals.Bytes);

    /// <summary>Entries the store holds now (entries not yet removed after they expired included).</summary>
    public long TotalEntries => Volatile.Read(ref _totals.Entries);

    /// <summary>Writes refused so far because of <paramref name="limit"/>.</summary>
    public long Refused(MemoryStoreLimit limit) => Volatile.Read(ref _refused[(int)limit]);

    /// <summary>Bytes one entry is counted as: its key in UTF-8, its value and <see cref="EntryOverheadBytes"/>.</summary>
    public static long SizeOf(string key, int valueBytes) => System.Text.Encoding.UTF8.GetByteCount(key) + (long)valueBytes + EntryOverheadBytes;

    /// <summary>The live entry, or null when absent or expired.</summary>
    public MemoryEntry? Get(string ns, string key)
    {
        CheckNamespace(ns);
        CheckKey(key);
        if (!_spaces.TryGetValue(ns, out var space))
        {
            return null;
        }

        var now = NowUnixMs();
        lock (space.Gate)
        {
            return space.TryGetLive(key, now, out var entry) ? entry.ToProto(key) : null;
        }
    }

    /// <summary>Writes a value. A null or zero TTL never expires.</summary>
    /// <exception cref="InvalidParamsException">Bad namespace, key, value size or TTL.</exception>
    /// <exception cref="ResourceExhaustedException">The namespace or the store is full.</exception>
    public MemoryEntry Set(string ns, string key, ReadOnlyMemory<byte> value, TimeSpan? ttl = null) =>
        SetCore(ns, key, CheckValue(value.Length) ? ByteString.CopyFrom(value.Span) : ByteString.Empty, ttl);

    /// <summary>Removes a key; true when a live entry was removed.</summary>
    public bool Delete(string ns, string key)
    {
        CheckNamespace(ns);
        CheckKey(key);
        if (!_spaces.TryGetValue(ns, out var space))
        {
            return false;
        }

        var now = NowUnixMs();
        lock (space.Gate)
        {
            var live = space.TryGetLive(key, now, out _);
            if (live)
            {
                space.Remove(key);
            }

            return live;
        }
    }

    /// <summary>Live entries whose key starts with <paramref name="prefix"/>, in ordinal key order, at most <paramref name="limit"/> (0 or less = 1000, at most 10000).</summary>
    public IReadOnlyList<MemoryEntry> List(string ns, string prefix, int limit = DefaultListLimit)
    {
        CheckNamespace(ns);
        prefix ??= string.Empty;
        if (prefix.Length > _options.MaxKeyLength)
        {
            throw new InvalidParamsException($"The prefix is {prefix.Length} characters long; keys are at most {_options.MaxKeyLength}.", "/prefix");
        }

        limit = limit <= 0 ? DefaultListLimit : Math.Min(limit, MaxListLimit);
        if (!_spaces.TryGetValue(ns, out var space))
        {
            return [];
        }

        var now = NowUnixMs();
        var result = new List<MemoryEntry>();
        lock (space.Gate)
        {
            if (space.Keys.Count == 0 || string.CompareOrdinal(prefix, space.Keys.Max) > 0)
            {
                return result;
            }

            List<string>? expired = null;
            foreach (var key in space.Keys.GetViewBetween(prefix, space.Keys.Max!))
            {
                if (!key.StartsWith(prefix, StringComparison.Ordinal))
                {
                    break;
                }

                var entry = space.Entries[key];
                if (entry.IsExpired(now))
                {
                    (expired ??= []).Add(key);
                    continue;
                }

                result.Add(entry.ToProto(key));
                if (result.Count >= limit)
                {
                    break;
                }
            }

            if (expired is not null)
            {
                foreach (var key in expired)
                {
                    space.Remove(key);
                }
            }
        }

        return result;
    }

    /// <summary>
    /// Writes only if the key's current version is <paramref name="expectedVersion"/> (0: only if
    /// the key does not exist). Returns whether it wrote and the entry now current (null if none).
    /// </summary>
    public (bool Swapped, MemoryEntry? Current) CompareAndSet(string ns, string key, ulong expectedVersion, ReadOnlyMemory<byte> value, TimeSpan? ttl = null) =>
        CompareAndSetCore(ns, key, expectedVersion, CheckValue(value.Length) ? ByteString.CopyFrom(value.Span) : ByteString.Empty, ttl);

    /// <summary>Live entries in a namespace.</summary>
    public int Count(string ns)
    {
        CheckNamespace(ns);
        if (!_spaces.TryGetValue(ns, out var space))
        {
            return 0;
        }

        var now = NowUnixMs();
        lock (space.Gate)
        {
            space.RemoveExpired(now);
            return space.Entries.Count;
        }
    }

    /// <summary>Removes expired entries (and namespaces left empty). Call it periodically. Returns the entries removed.</summary>
    public int Sweep()
    {
        var now = NowUnixMs();
        var removed = 0;
        var earliest = long.MaxValue;
        Volatile.Write(ref _earliestExpiry, long.MaxValue); // writes meanwhile lower it again
        foreach (var (name, space) in _spaces)
        {
            lock (space.Gate)
            {
                removed += space.RemoveExpired(now);
                earliest = Math.Min(earliest, space.NextExpiry);
                if (space.Entries.Count == 0)
                {
                    space.Retired = true;
                    _spaces.TryRemove(new KeyValuePair<string, Space>(name, space));
                }
            }
        }

        LowerEarliestExpiry(earliest);
        return removed;
    }

    /// <summary>
    /// The protocol entry point: runs one request in <paramref name="defaultNamespace"/> unless it
    /// names one. Failures come back in <see cref="MemoryResponse.Error"/>.
    /// </summary>
    public MemoryResponse Execute(MemoryRequest request, string defaultNamespace) => Execute(request, defaultNamespace, null);

    /// <summary>
    /// <see cref="Execute(MemoryRequest, string)"/> with the writes counted against <paramref name="quota"/>
    /// (null: none): a set or compare-and-set past it is refused with RESOURCE_EXHAUSTED.
    /// </summary>
    public MemoryResponse Execute(MemoryRequest request, string defaultNamespace, MemoryQuota? quota)
    {
        ArgumentNullException.ThrowIfNull(request);
        var response = new MemoryResponse { CorrelationId = request.CorrelationId };
        try
        {
            var ns = string.IsNullOrEmpty(request.Namespace) ? defaultNamespace : request.Namespace;
            switch (request.OpCase)
            {
                case MemoryRequest.OpOneofCase.Get:
                    {
                        var entry = Get(ns, request.Get.Key);
                        response.Found = entry is not null;
                        if (entry is not null)
                        {
                            response.Entries.Add(entry);
                        }

                        break;
                    }

                case MemoryRequest.OpOneofCase.Set:
                    {
                        var set = request.Set;
                        CheckValue(set.Value.Length);
                        response.Entries.Add(SetCore(ns, set.Key, set.Value, TtlOf(set.TtlMs), quota));
                        response.Found = true;
                        break;
                    }

                case MemoryRequest.OpOneofCase.Delete:
                    response.Found = Delete(ns, request.Delete.Key);
                    break;
                case MemoryRequest.OpOneofCase.List:
                    response.Entries.Add(List(ns, request.List.Prefix, (int)Math.Min(request.List.Limit, MaxListLimit)));
                    response.Found = true; // the listing ran (protocol §10); no match is an empty list, not a missing key
                    break;
                case MemoryRequest.OpOneofCase.CompareAndSet:
                    {
                        var cas = request.CompareAndSet;
                        CheckValue(cas.Value.Length);
                        var (swapped, current) = CompareAndSetCore(ns, cas.Key, cas.ExpectedVersion, cas.Value, TtlOf(cas.TtlMs), quota);
                        response.Found = swapped;
                        if (current is not null)
                        {
                            response.Entries.Add(current);
                        }

                        break;
                    }

                default:
                    throw new InvalidParamsException("The memory request has no operation; set one of get, set, delete, list or compare_and_set.", "/op");
            }
        }
        catch (LoomException ex)
        {
            response.Found = false;
            response.Entries.Clear();
            response.Error = ex.ToError();
        }

        return response;
    }

    // ---------------------------------------------------------------------------------------------

    private static TimeSpan? TtlOf(uint ttlMs) => ttlMs == 0 ? null : TimeSpan.FromMilliseconds(ttlMs);

    private MemoryEntry SetCore(string ns, string key, ByteString value, TimeSpan? ttl, MemoryQuota? quota = null)
    {
        CheckNamespace(ns);
        CheckKey(key);
        CheckValue(value.Length);
        var ttlMs = CheckTtl(ttl);
        var swept = false;
        while (true)
        {
            var space = GetOrCreateSpace(ns);
            var now = NowUnixMs();
            lock (space.Gate)
            {
                if (space.Retired)
                {
                    continue; // swept away meanwhile: take the new one
                }

                space.TryGetLive(key, now, out var current);
                if (WriteLocked(space, ns, key, value, ttlMs, now, current, mayDeferToSweep: !swept, quota) is { } written)
                {
                    return written.ToProto(key);
                }
            }

            // The store is full, and entries elsewhere have expired: remove them (outside any namespace's lock) and try once more.
            swept = true;
            Sweep();
        }
    }

    private (bool Swapped, MemoryEntry? Current) CompareAndSetCore(string ns, string key, ulong expectedVersion, ByteString value, TimeSpan? ttl, MemoryQuota? quota = null)
    {
        CheckNamespace(ns);
        CheckKey(key);
        CheckValue(value.Length);
        var ttlMs = CheckTtl(ttl);
        var swept = false;
        while (true)
        {
            Space? space;
            if (expectedVersion == 0)
            {
                space = GetOrCreateSpace(ns);
            }
            else if (!_spaces.TryGetValue(ns, out space))
            {
                return (false, null); // nothing exists, so no version can match
            }

            var now = NowUnixMs();
            lock (space.Gate)
            {
                if (space.Retired)
                {
                    continue;
                }

                var exists = space.TryGetLive(key, now, out var current);
                var matches = expectedVersion == 0 ? !exists : exists && current!.Version == expectedVersion;
                if (!matches)
                {
                    return (false, exists ? current!.ToProto(key) : null);
                }

                if (WriteLocked(space, ns, key, value, ttlMs, now, current, mayDeferToSweep: !swept, quota) is { } written)
                {
                    return (true, written.ToProto(key));
                }
            }

            swept = true;
            Sweep();
        }
    }

    /// <summary>
    /// Writes <paramref name="key"/> (whose live entry is <paramref name="current"/>, or null) once
    /// every limit allows it, under the namespace's lock. Null when only the store-wide totals are
    /// short and some entry has expired (with <paramref name="mayDeferToSweep"/>): the caller sweeps
    /// and tries again. A refusal changes nothing.
    /// </summary>
    private Entry? WriteLocked(Space space, string ns, string key, ByteString value, long ttlMs, long now, Entry? current, bool mayDeferToSweep, MemoryQuota? quota = null)
    {
        var size = SizeOf(key, value.Length);
        var addsEntry = current is null;
        var delta = size - (current?.Size ?? 0);

        // The writer's own budget first: the entry it replaces counts for it only when it wrote that one too.
        var charged = size - (current is not null && ReferenceEquals(current.Quota, quota) ? current.Size : 0);
        if (quota is not null && !quota.TryAdd(charged))
        {
            throw quota.Refuse(charged);
        }

        try
        {
            return WriteWithinTotals(space, ns, key, value, ttlMs, now, current, mayDeferToSweep, quota, size, addsEntry, delta) is { } written
                ? written
                : Unreserve(null);
        }
        catch
        {
            Unreserve(null);
            throw;
        }

        Entry? Unreserve(Entry? result)
        {
            if (quota is not null)
            {
                quota.Release(charged);
            }

            return result;
        }
    }

    private Entry? WriteWithinTotals(Space space, string ns, string key, ByteString value, long ttlMs, long now, Entry? current, bool mayDeferToSweep, MemoryQuota? quota, long size, bool addsEntry, long delta)
    {
        if ((addsEntry && space.Entries.Count >= _options.MaxEntriesPerNamespace) || (delta > 0 && space.Bytes + delta > _maxBytesPerNamespace))
        {
            space.RemoveExpired(now); // the current entry is live now, so it stays
            if (addsEntry && space.Entries.Count >= _options.MaxEntriesPerNamespace)
            {
                throw Full(MemoryStoreLimit.NamespaceEntries, $"Namespace '{ns}' holds {space.Entries.Count} entries, its limit (memory.max_entries_per_namespace). Nothing was written: delete keys or let them expire first, or raise the limit.");
            }

            if (delta > 0 && space.Bytes + delta > _maxBytesPerNamespace)
            {
                throw Full(MemoryStoreLimit.NamespaceBytes, $"Namespace '{ns}' holds {space.Bytes} bytes and this write needs {delta} more, over its limit of {_maxBytesPerNamespace} bytes (memory.max_bytes_per_namespace; an entry counts its key and value plus {EntryOverheadBytes} bytes). Nothing was written: delete keys, write smaller values or let entries expire, or raise the limit.");
            }
        }

        if (addsEntry && !TryAdd(ref _totals.Entries, 1, _options.MaxTotalEntries))
        {
            return mayDeferToSweep && SomethingExpired(now) ? null
                : throw Full(MemoryStoreLimit.TotalEntries, $"The memory store holds {TotalEntries} entries, its limit (memory.max_total_entries). Nothing was written: delete keys or let them expire first, or raise the limit.");
        }

        if (!TryAdd(ref _totals.Bytes, delta, _maxTotalBytes))
        {
            if (addsEntry)
            {
                Interlocked.Decrement(ref _totals.Entries);
            }

            return mayDeferToSweep && SomethingExpired(now) ? null
                : throw Full(MemoryStoreLimit.TotalBytes, $"The memory store holds {TotalBytes} bytes and this write needs {delta} more, over its limit of {_maxTotalBytes} bytes (memory.max_total_bytes; an entry counts its key and value plus {EntryOverheadBytes} bytes). Nothing was written: delete keys, write smaller values or let entries expire, or raise the limit.");
        }

        var expires = ttlMs == 0 ? 0 : now + ttlMs;
        if (expires != 0)
        {
            LowerEarliestExpiry(expires);
        }

        return space.Write(key, value, NextVersion(), expires, size, quota);
    }

    /// <summary>Adds <paramref name="delta"/> unless that takes <paramref name="counter"/> past <paramref name="max"/> (a decrease always applies).</summary>
    private static bool TryAdd(ref long counter, long delta, long max)
    {
        if (delta <= 0)
        {
            Interlocked.Add(ref counter, delta);
            return true;
        }

        while (true)
        {
            var current = Volatile.Read(ref counter);
            if (current + delta > max)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref counter, current + delta, current) == current)
            {
                return true;
            }
        }
    }

    private bool SomethingExpired(long now) => now >= Volatile.Read(ref _earliestExpiry);

    private void LowerEarliestExpiry(long expires)
    {
        var current = Volatile.Read(ref _earliestExpiry);
        while (expires < current)
        {
            var seen = Interlocked.CompareExchange(ref _earliestExpiry, expires, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }

    private ResourceExhaustedException Full(MemoryStoreLimit limit, string message)
    {
        Interlocked.Increment(ref _refused[(int)limit]);
        return new ResourceExhaustedException(message);
    }

    private Space GetOrCreateSpace(string ns)
    {
        if (_spaces.TryGetValue(ns, out var space))
        {
            return space;
        }

        lock (_createGate)
        {
            if (_spaces.TryGetValue(ns, out space))
            {
                return space;
            }

            if (_spaces.Count >= _options.MaxNamespaces)
            {
                Sweep();
                if (_spaces.Count >= _options.MaxNamespaces)
                {
                    throw Full(MemoryStoreLimit.Namespaces, $"The memory store holds {_spaces.Count} namespaces, its limit; no new namespace can be created. Write into an existing namespace, or delete every key of one you no longer need.");
                }
            }

            space = new Space(_totals);
            _spaces[ns] = space;
            return space;
        }
    }

    private ulong NextVersion() => (ulong)Interlocked.Increment(ref _version);

    private long NowUnixMs() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private void CheckNamespace(string ns)
    {
        if (string.IsNullOrEmpty(ns))
        {
            throw new InvalidParamsException("The namespace is empty; name one (an agent's own namespace is used when a request names none).", "/namespace");
        }

        if (ns.Length > _options.MaxKeyLength)
        {
            throw new InvalidParamsException($"The namespace is {ns.Length} characters long; the limit is {_options.MaxKeyLength}.", "/namespace");
        }
    }

    private void CheckKey(string key)
    {
        if (string.IsNullOrEmpty(key))
        {
            throw new InvalidParamsException("The key is empty; use a non-empty key.", "/key");
        }

        if (key.Length > _options.MaxKeyLength)
        {
            throw new InvalidParamsException($"The key is {key.Length} characters long; the limit is {_options.MaxKeyLength}.", "/key");
        }
    }

    private bool CheckValue(int length)
    {
        if (length > _options.MaxValueBytes)
        {
            throw new InvalidParamsException($"The value is {length} bytes; the limit is {_options.MaxValueBytes}.", "/value");
        }

        return length > 0;
    }

    private long CheckTtl(TimeSpan? ttl)
    {
        if (ttl is not { } value || value == TimeSpan.Zero)
        {
            return 0;
        }

        if (value < TimeSpan.Zero)
        {
            throw new InvalidParamsException($"The TTL {value} is negative; use a positive TTL, or none to keep the value.", "/ttl_ms");
        }

        if (value > _options.MaxTtl)
        {
            throw new InvalidParamsException($"The TTL {value} is longer than the limit of {_options.MaxTtl}.", "/ttl_ms");
        }

        return Math.Max(1, (long)Math.Ceiling(value.TotalMilliseconds));
    }

    private sealed class Entry(ByteString value, ulong version, long expiresUnixMs, long size, MemoryQuota? quota = null)
    {
        /// <summary>The budget it is counted against (null: none).</summary>
        public readonly MemoryQuota? Quota = quota;

        public readonly ByteString Value = value;
        public readonly ulong Version = version;
        public readonly long ExpiresUnixMs = expiresUnixMs;

        /// <summary>Bytes it is counted as (<see cref="SizeOf"/>).</summary>
        public readonly long Size = size;

        public bool IsExpired(long now) => ExpiresUnixMs != 0 && now >= ExpiresUnixMs;

        public MemoryEntry ToProto(string key) => new()
        {
            Key = key,
            Value = Value,
            Version = Version,
            ExpiresUnixMs = ExpiresUnixMs,
        };
    }

    /// <summary>What the whole store holds; changed with interlocked operations.</summary>
    private sealed class Totals
    {
        public long Bytes;
        public long Entries;
    }

    /// <summary>
    /// One namespace. Guarded by <see cref="Gate"/>. A write's share of the store's totals is
    /// reserved by the store before <see cref="Write"/>; <see cref="Remove"/> gives it back.
    /// </summary>
    private sealed class Space(Totals totals)
    {
        public readonly Lock Gate = new();
        public readonly Dictionary<string, Entry> Entries = new(StringComparer.Ordinal);
        public readonly SortedSet<string> Keys = new(StringComparer.Ordinal);
        public bool Retired;

        /// <summary>Bytes of this namespace's entries.</summary>
        public long Bytes;

        // Earliest expiry of any entry (long.MaxValue: none), so sweeps skip idle namespaces.
        private long _nextExpiry = long.MaxValue;

        /// <summary>No entry expires before this (long.MaxValue: none expires).</summary>
        public long NextExpiry => _nextExpiry;

        public bool TryGetLive(string key, long now, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out Entry? entry)
        {
            if (Entries.TryGetValue(key, out entry))
            {
                if (!entry.IsExpired(now))
                {
                    return true;
                }

                Remove(key);
                entry = null;
            }

            return false;
        }

        public Entry Write(string key, ByteString value, ulong version, long expiresUnixMs, long size, MemoryQuota? quota = null)
        {
            var entry = new Entry(value, version, expiresUnixMs, size, quota);
            if (Entries.TryGetValue(key, out var old))
            {
                Bytes -= old.Size;
                if (old.Quota is not null && !ReferenceEquals(old.Quota, quota))
                {
                    old.Quota.Release(old.Size); // the same quota's was netted when the write was charged
                }

                Entries[key] = entry;
            }
            else
            {
                Entries.Add(key, entry);
                Keys.Add(key);
            }

            Bytes += size;

            if (expiresUnixMs != 0 && expiresUnixMs < _nextExpiry)
            {
                _nextExpiry = expiresUnixMs;
            }

            return entry;
        }

        public void Remove(string key)
        {
            if (Entries.Remove(key, out var entry))
            {
                Keys.Remove(key);
                Bytes -= entry.Size;
                entry.Quota?.Release(entry.Size);
                Interlocked.Add(ref totals.Bytes, -entry.Size);
                Interlocked.Decrement(ref totals.Entries);
            }
        }

        public int RemoveExpired(long now)
        {
            if (now < _nextExpiry)
            {
                return 0;
            }

            List<string>? expired = null;
            var next = long.MaxValue;
            foreach (var (key, entry) in Entries)
            {
                if (entry.IsExpired(now))
                {
                    (expired ??= []).Add(key);
                }
                else if (entry.ExpiresUnixMs != 0 && entry.ExpiresUnixMs < next)
                {
                    next = entry.ExpiresUnixMs;
                }
            }

            _nextExpiry = next;
            if (expired is null)
            {
                return 0;
            }

            foreach (var key in expired)
            {
                Remove(key);
            }

            return expired.Count;
        }
    }
}

/// <summary>A limit of a <see cref="MemoryStore"/> that can refuse a write (see <see cref="MemoryStore.Refused"/>).</summary>
public enum MemoryStoreLimit
{
    /// <summary><see cref="MemoryStoreOptions.MaxTotalBytes"/>.</summary>
    TotalBytes,

    /// <summary><see cref="MemoryStoreOptions.MaxBytesPerNamespace"/>.</summary>
    NamespaceBytes,

    /// <summary><see cref="MemoryStoreOptions.MaxTotalEntries"/>.</summary>
    TotalEntries,

    /// <summary><see cref="MemoryStoreOptions.MaxEntriesPerNamespace"/>.</summary>
    NamespaceEntries,

    /// <summary><see cref="MemoryStoreOptions.MaxNamespaces"/>.</summary>
    Namespaces,
}
