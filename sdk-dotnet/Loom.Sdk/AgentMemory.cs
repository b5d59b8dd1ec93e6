using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk;

/// <summary>
/// Namespaced key-value memory with TTL, held by the bridge (or the in-process core). Values are
/// bytes; the generic overloads store JSON. Errors are typed (INVALID_PARAMS for a bad key,
/// RESOURCE_EXHAUSTED when full).
/// </summary>
public sealed class AgentMemory
{
    private readonly IAgentTransport _transport;
    private readonly JsonSerializerOptions _json;
    private readonly string _namespace;

    internal AgentMemory(IAgentTransport transport, JsonSerializerOptions json, string? ns = null)
    {
        _transport = transport;
        _json = json;
        _namespace = ns ?? "";
    }

    /// <summary>The namespace this view reads and writes (the agent's own by default).</summary>
    public string Namespace => _namespace.Length > 0 ? _namespace : _transport.Namespace;

    /// <summary>A view of another namespace.</summary>
    public AgentMemory WithNamespace(string ns)
    {
        ArgumentException.ThrowIfNullOrEmpty(ns);
        return new AgentMemory(_transport, _json, ns);
    }

    /// <summary>The entry, or null when the key is absent or expired.</summary>
    public async Task<MemoryItem?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        var response = await RunAsync(new MemoryRequest { Get = new MemoryGet { Key = key } }, cancellationToken);
        return response.Found && response.Entries.Count > 0 ? MemoryItem.From(response.Entries[0]) : null;
    }

    /// <summary>The value deserialized from JSON, or default when absent.</summary>
    public async Task<T?> GetAsync<T>(string key, CancellationToken cancellationToken = default)
    {
        var item = await GetAsync(key, cancellationToken);
        return item is null ? default : item.ValueAs<T>(_json);
    }

    /// <summary>Writes the value (replacing any), with an optional time to live; returns the new entry.</summary>
    public Task<MemoryItem> SetAsync(string key, ReadOnlyMemory<byte> value, TimeSpan? ttl = null, CancellationToken cancellationToken = default) =>
        SetCoreAsync(key, value, ttl, cancellationToken);

    private async Task<MemoryItem> SetCoreAsync(string key, ReadOnlyMemory<byte> value, TimeSpan? ttl, CancellationToken cancellationToken)
    {
        var response = await RunAsync(new MemoryRequest { Set = new MemorySet { Key = key, Value = ByteString.CopyFrom(value.Span), TtlMs = TtlMs(ttl) } }, cancellationToken);
        return response.Entries.Count > 0 ? MemoryItem.From(response.Entries[0]) : new MemoryItem(key, value, 0, null);
    }

    /// <summary>Writes bytes.</summary>
    public Task<MemoryItem> SetAsync(string key, byte[] value, TimeSpan? ttl = null, CancellationToken cancellationToken = default) =>
        SetCoreAsync(key, value, ttl, cancellationToken);

    /// <summary>Writes the value serialized as JSON (raw byte types are stored as they are).</summary>
    public Task<MemoryItem> SetAsync<T>(string key, T value, TimeSpan? ttl = null, CancellationToken cancellationToken = default) =>
        SetCoreAsync(key, Bytes(value), ttl, cancellationToken);

    /// <summary>Deletes the key; true when it existed.</summary>
    public async Task<bool> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        var response = await RunAsync(new MemoryRequest { Delete = new MemoryDelete { Key = key } }, cancellationToken);
        return response.Found;
    }

    /// <summary>Entries whose key starts with the prefix, in ordinal key order, up to the limit.</summary>
    public async Task<IReadOnlyList<MemoryItem>> ListAsync(string prefix = "", int limit = 1000, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limit);
        var response = await RunAsync(new MemoryRequest { List = new MemoryList { Prefix = prefix ?? "", Limit = (uint)limit } }, cancellationToken);
        return response.Entries.Select(MemoryItem.From).ToArray();
    }

    /// <summary>
    /// Writes the value only if the key is at <paramref name="expectedVersion"/> (0: only if the key
    /// does not exist). Returns whether it swapped and the entry as it is now.
    /// </summary>
    public Task<CompareAndSetResult> CompareAndSetAsync(string key, ulong expectedVersion, ReadOnlyMemory<byte> value, TimeSpan? ttl = null, CancellationToken cancellationToken = default) =>
        CompareAndSetCoreAsync(key, expectedVersion, value, ttl, cancellationToken);

    private async Task<CompareAndSetResult> CompareAndSetCoreAsync(string key, ulong expectedVersion, ReadOnlyMemory<byte> value, TimeSpan? ttl, CancellationToken cancellationToken)
    {
        var request = new MemoryRequest
        {
            CompareAndSet = new MemoryCompareAndSet { Key = key, ExpectedVersion = expectedVersion, Value = ByteString.CopyFrom(value.Span), TtlMs = TtlMs(ttl) },
        };
        var response = await RunAsync(request, cancellationToken);
        return new CompareAndSetResult(response.Found, response.Entries.Count > 0 ? MemoryItem.From(response.Entries[0]) : null);
    }

    /// <summary>Compare-and-set of bytes.</summary>
    public Task<CompareAndSetResult> CompareAndSetAsync(string key, ulong expectedVersion, byte[] value, TimeSpan? ttl = null, CancellationToken cancellationToken = default) =>
        CompareAndSetCoreAsync(key, expectedVersion, value, ttl, cancellationToken);

    /// <summary>Compare-and-set of a value serialized as JSON.</summary>
    public Task<CompareAndSetResult> CompareAndSetAsync<T>(string key, ulong expectedVersion, T value, TimeSpan? ttl = null, CancellationToken cancellationToken = default) =>
        CompareAndSetCoreAsync(key, expectedVersion, Bytes(value), ttl, cancellationToken);

    /// <summary>Raw bytes (byte[], Memory, ReadOnlyMemory, ArraySegment) as they are; anything else as JSON.</summary>
    private ReadOnlyMemory<byte> Bytes<T>(T value) =>
        Payloads.TryGetBytes(value, out var raw) ? raw : JsonSerializer.SerializeToUtf8Bytes(value, _json);

    private Task<MemoryResponse> RunAsync(MemoryRequest request, CancellationToken cancellationToken)
    {
        request.Namespace = _namespace;
        return _transport.MemoryAsync(request, cancellationToken);
    }

    private static uint TtlMs(TimeSpan? ttl)
    {
        if (ttl is not { } t)
        {
            return 0;
        }

        if (t <= TimeSpan.Zero)
        {
            throw new InvalidParamsException($"A time to live must be positive; got {t}. Leave it null for no expiry.", "/ttl_ms");
        }

        return (uint)Math.Clamp(Math.Ceiling(t.TotalMilliseconds), 1, uint.MaxValue);
    }
}
