namespace Loom.Bridge;

/// <summary>
/// Idempotent capability calls (loom.yaml <c>idempotency:</c>, docs/durability.md): a call with an
/// idempotency key gets the first result stored for that key (per caller identity and capability)
/// within <see cref="Window"/> instead of invoking a provider again. Results are kept under the data
/// directory when the bridge has one (they survive a restart), else in memory.
/// </summary>
public sealed record IdempotencyOptions
{
    /// <summary>How long a stored result is replayed for its key (idempotency.window). Default 24 h.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromHours(24);

    /// <summary>Keys remembered at most (idempotency.max_keys); past it the oldest are forgotten and counted (loom_idempotency_evictions_total). Default 100,000.</summary>
    public int MaxKeys { get; init; } = 100_000;

    /// <summary>Without a data directory: bytes of stored results held in memory at most (idempotency.max_memory_bytes); past it the oldest are forgotten and counted. Default 64 MiB.</summary>
    public long MaxMemoryBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>With a data directory: the result log is kept under this size by removing its oldest segments (idempotency.max_disk_bytes). Default 1 GiB.</summary>
    public long MaxDiskBytes { get; init; } = 1024L * 1024 * 1024;

    /// <summary>Calls with a key in flight at once (idempotency.max_in_flight); a call past it fails with RESOURCE_EXHAUSTED (retryable). Default 10,000.</summary>
    public int MaxInFlight { get; init; } = 10_000;

    /// <summary>True (default): a result is fsynced before it is returned, so it survives a power loss; false: written to the OS only (survives a process crash).</summary>
    public bool Fsync { get; init; } = true;

    /// <summary>Checks the numbers.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public void Validate()
    {
        if (Window <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(Window), $"Window (idempotency.window) is {Window}; it must be positive, e.g. 24h.");
        }

        if (MaxKeys < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxKeys), $"MaxKeys (idempotency.max_keys) is {MaxKeys}; it must be positive.");
        }

        if (MaxMemoryBytes < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxMemoryBytes), $"MaxMemoryBytes (idempotency.max_memory_bytes) is {MaxMemoryBytes}; it must be positive.");
        }

        if (MaxDiskBytes < 1024 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxDiskBytes), $"MaxDiskBytes (idempotency.max_disk_bytes) is {MaxDiskBytes}; it must be at least 1 MiB.");
        }

        if (MaxInFlight < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxInFlight), $"MaxInFlight (idempotency.max_in_flight) is {MaxInFlight}; it must be positive.");
        }
    }
}
