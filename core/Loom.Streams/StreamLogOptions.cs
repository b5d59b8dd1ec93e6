namespace Loom.Streams;

/// <summary>Limits and tuning of one stream log.</summary>
public sealed class StreamLogOptions
{
    /// <summary>Records older than this are removed (whole segments at a time). Default: none (zero).</summary>
    public TimeSpan MaxAge { get; init; }

    /// <summary>The log is kept under this many bytes by removing its oldest segments. Default: none (zero).</summary>
    public long MaxBytes { get; init; }

    /// <summary>At most this many records are held (older ones are dropped from reads at once and from disk a segment at a time). Default: none (zero).</summary>
    public long MaxCount { get; init; }

    /// <summary>A segment file is closed and a new one begun past this size. Default: 64 MiB.</summary>
    public long SegmentBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>The largest record accepted (and believed when recovering). Default: 16 MiB.</summary>
    public int MaxRecordBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>True (default): every commit is fsynced before appends are acknowledged. False: written to the OS only (survives a process crash, not a power loss).</summary>
    public bool Fsync { get; init; } = true;
}
