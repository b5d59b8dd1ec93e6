using System.Collections.Concurrent;
using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>Limits of a <see cref="MemoryStore"/>.</summary>
public sealed class MemoryStoreOptions
{
    /// <summary>Entries one namespace may hold. Default 100000.</summary>
    public int MaxEntriesPerNamespace { get; init; } = 100_000;

    /// <summary>Largest value, in bytes. Default 1 MiB.</summary>
    public int MaxValueBytes { get; init; } = 1024 * 1024;

    /// <summary>Longest key (and namespace), in characters. Default 512.</summary>
    public int MaxKeyLength { get; init; } = 512;

    /// <summary>Namespaces the store may hold. Default 10000.</summary>
    public int MaxNamespaces { get; init; } = 10_000;

    /// <summary>Longest time to live. Default 30 days.</summary>
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromDays(30);
}

/// <summary>
/// Namespaced key-value memory with TTL, versions and compare-and-set. Versions come from one
/// store-wide counter, so a key's version increases on every write and never repeats, even after
/// a delete. Expired entries are never returned; they are removed when touched and by
/// <see cref="Sweep"/>. Thread-safe (one lock per namespace).
/// </summary>
public sealed class MemoryStore
{
    private const int DefaultListLimit = 1000;
    private const int MaxListLimit = 10_000;

    private readonly MemoryStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Space> _spaces = new(StringComparer.Ordinal);
    private readonly Lock _createGate = new();
    private long _version;

    public MemoryStore(MemoryStoreOptions? options = null, TimeProvider? time = null)
    {
        _options = options ?? new MemoryStoreOptions();
        if (_options.MaxEntriesPerNamespace < 1 || _options.MaxValueBytes < 0 || _options.MaxKeyLength < 1 || _options.MaxNamespaces < 1 || _options.MaxTtl <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "MaxEntriesPerNamespace, MaxKeyLength, MaxNamespaces and MaxTtl must be positive, MaxValueBytes not negative.");
        }

        _time = time ?? TimeProvider.System;
    }

    /// <summary>The store limits.</summary>
    public MemoryStoreOptions Options => _options;

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
        foreach (var (name, space) in _spaces)
        {
            lock (space.Gate)
            {
                removed += space.RemoveExpired(now);
                if (space.Entries.Count == 0)
                {
                    space.Retired = true;
                    _spaces.TryRemove(new KeyValuePair<string, Space>(name, space));
                }
            }
        }

        return removed;
    }

    /// <summary>
    /// The protocol entry point: runs one request in <paramref name="defaultNamespace"/> unless it
    /// names one. Failures come back in <see cref="MemoryResponse.Error"/>.
    /// </summary>
    public MemoryResponse Execute(MemoryRequest request, string defaultNamespace)
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
                    response.Entries.Add(SetCore(ns, set.Key, set.Value, TtlOf(set.TtlMs)));
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
                    var (swapped, current) = CompareAndSetCore(ns, cas.Key, cas.ExpectedVersion, cas.Value, TtlOf(cas.TtlMs));
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

    private MemoryEntry SetCore(string ns, string key, ByteString value, TimeSpan? ttl)
    {
        CheckNamespace(ns);
        CheckKey(key);
        CheckValue(value.Length);
        var ttlMs = CheckTtl(ttl);
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

                var exists = space.TryGetLive(key, now, out _);
                if (!exists)
                {
                    EnsureRoom(space, ns, now);
                }

                return space.Write(key, value, NextVersion(), ttlMs == 0 ? 0 : now + ttlMs).ToProto(key);
            }
        }
    }

    private (bool Swapped, MemoryEntry? Current) CompareAndSetCore(string ns, string key, ulong expectedVersion, ByteString value, TimeSpan? ttl)
    {
        CheckNamespace(ns);
        CheckKey(key);
        CheckValue(value.Length);
        var ttlMs = CheckTtl(ttl);
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

                if (!exists)
                {
                    EnsureRoom(space, ns, now);
                }

                return (true, space.Write(key, value, NextVersion(), ttlMs == 0 ? 0 : now + ttlMs).ToProto(key));
            }
        }
    }

    private void EnsureRoom(Space space, string ns, long now)
    {
        if (space.Entries.Count < _options.MaxEntriesPerNamespace)
        {
            return;
        }

        space.RemoveExpired(now);
        if (space.Entries.Count >= _options.MaxEntriesPerNamespace)
        {
            throw new ResourceExhaustedException($"Namespace '{ns}' holds {space.Entries.Count} entries, the limit; delete keys or let them expire first.");
        }
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
                    throw new ResourceExhaustedException($"The memory store holds {_spaces.Count} namespaces, the limit; no new namespace can be created.");
                }
            }

            space = new Space();
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

    private sealed class Entry(ByteString value, ulong version, long expiresUnixMs)
    {
        public readonly ByteString Value = value;
        public readonly ulong Version = version;
        public readonly long ExpiresUnixMs = expiresUnixMs;

        public bool IsExpired(long now) => ExpiresUnixMs != 0 && now >= ExpiresUnixMs;

        public MemoryEntry ToProto(string key) => new()
        {
            Key = key,
            Value = Value,
            Version = Version,
            ExpiresUnixMs = ExpiresUnixMs,
        };
    }

    /// <summary>One namespace. Guarded by <see cref="Gate"/>.</summary>
    private sealed class Space
    {
        public readonly Lock Gate = new();
        public readonly Dictionary<string, Entry> Entries = new(StringComparer.Ordinal);
        public readonly SortedSet<string> Keys = new(StringComparer.Ordinal);
        public bool Retired;

        // Earliest expiry of any entry (long.MaxValue: none), so sweeps skip idle namespaces.
        private long _nextExpiry = long.MaxValue;

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

        public Entry Write(string key, ByteString value, ulong version, long expiresUnixMs)
        {
            var entry = new Entry(value, version, expiresUnixMs);
            if (Entries.TryAdd(key, entry))
            {
                Keys.Add(key);
            }
            else
            {
                Entries[key] = entry;
            }

            if (expiresUnixMs != 0 && expiresUnixMs < _nextExpiry)
            {
                _nextExpiry = expiresUnixMs;
            }

            return entry;
        }

        public void Remove(string key)
        {
            if (Entries.Remove(key))
            {
                Keys.Remove(key);
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
