using System.Text;
using System.Text.Json;
using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>One memory entry.</summary>
/// <param name="Key">The key.</param>
/// <param name="Value">The stored bytes.</param>
/// <param name="Version">Increases on every write of the key; the basis of compare-and-set.</param>
/// <param name="ExpiresAt">When it expires; null for never.</param>
public sealed record MemoryItem(string Key, ReadOnlyMemory<byte> Value, ulong Version, DateTimeOffset? ExpiresAt)
{
    /// <summary>The value as UTF-8 text.</summary>
    public string ValueText() => Encoding.UTF8.GetString(Value.Span);

    /// <summary>The value deserialized from JSON (web defaults unless options are given).</summary>
    public T? ValueAs<T>(JsonSerializerOptions? options = null) => JsonSerializer.Deserialize<T>(Value.Span, options ?? JsonSerializerOptions.Web);

    internal static MemoryItem From(MemoryEntry entry) => new(
        entry.Key,
        entry.Value.Memory,
        entry.Version,
        entry.ExpiresUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(entry.ExpiresUnixMs) : null);
}

/// <summary>The outcome of a compare-and-set.</summary>
/// <param name="Swapped">True when the value was written.</param>
/// <param name="Current">The entry as it is now (the new one when swapped); null when the key does not exist.</param>
public readonly record struct CompareAndSetResult(bool Swapped, MemoryItem? Current);
