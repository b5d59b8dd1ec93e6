namespace Loom.Bridge;

/// <summary>
/// Run records (loom.yaml <c>runs:</c>, docs/durability.md): every thread (an envelope's or a
/// call's thread id) gets a record of its events, capability calls and collaboration steps, in
/// order, served at <c>GET /v1/threads</c> and <c>GET /v1/threads/{id}</c> and by <c>loom inspect</c>.
/// Kept under <c>{data_dir}/runs</c> when the bridge has a data directory, else in memory
/// (bounded by <see cref="MemoryMaxBytes"/>). Recording never waits: steps go through a bounded
/// queue and are dropped (counted in <c>loom_run_records_dropped_total</c>) when it is full.
/// </summary>
public sealed record RunsOptions
{
    /// <summary>Record runs at all. Default true.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Steps older than this are removed (a segment at a time). Default 7 days; zero: no age limit.</summary>
    public TimeSpan MaxAge { get; init; } = TimeSpan.FromDays(7);

    /// <summary>The record log is kept under this many bytes on disk. Default 256 MiB; zero: no limit.</summary>
    public long MaxBytes { get; init; } = 256L * 1024 * 1024;

    /// <summary>At most this many steps (of all threads) are kept. Default 1,000,000; zero: no limit.</summary>
    public long MaxSteps { get; init; } = 1_000_000;

    /// <summary>With no data directory, steps are kept in memory up to this many bytes. Default 32 MiB.</summary>
    public long MemoryMaxBytes { get; init; } = 32L * 1024 * 1024;

    /// <summary>Threads the index holds (the least recently active is forgotten past it). Default 10,000.</summary>
    public int MaxThreads { get; init; } = 10_000;

    /// <summary>Steps recorded per thread; later ones are counted, not kept (the thread is marked truncated). Default 10,000.</summary>
    public int MaxStepsPerThread { get; init; } = 10_000;

    /// <summary>Steps waiting to be written; a step that finds it full is dropped and counted. Default 65,536.</summary>
    public int QueueCapacity { get; init; } = 65_536;

    /// <summary>Bytes of an event's payload, a call's input or a call's result kept as a preview. Default 1,024.</summary>
    public int PreviewBytes { get; init; } = 1024;

    /// <summary>False (default): written to the OS (survives a crash of the bridge, not of the machine). True: fsynced.</summary>
    public bool Fsync { get; init; }

    /// <summary>Size of one segment file. Default 16 MiB.</summary>
    public long SegmentBytes { get; init; } = 16L * 1024 * 1024;

    internal void Validate()
    {
        if (MaxAge < TimeSpan.Zero || MaxBytes < 0 || MaxSteps < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAge), "Runs (runs:): max_age, max_bytes and max_steps must not be negative (zero means no limit).");
        }

        if (MemoryMaxBytes < 64 * 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MemoryMaxBytes), $"Runs (runs:): memory_max_bytes is {MemoryMaxBytes}; use at least 65536.");
        }

        if (MaxThreads < 1 || MaxStepsPerThread < 1 || QueueCapacity < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxThreads), "Runs (runs:): max_threads, max_steps_per_thread and queue_capacity must be positive.");
        }

        if (PreviewBytes < 0 || PreviewBytes > 65_536)
        {
            throw new ArgumentOutOfRangeException(nameof(PreviewBytes), $"Runs (runs:): preview_bytes is {PreviewBytes}; use 0 to 65536.");
        }

        if (SegmentBytes < 4096)
        {
            throw new ArgumentOutOfRangeException(nameof(SegmentBytes), $"Runs (runs:): segment_bytes is {SegmentBytes}; use at least 4096.");
        }
    }
}
