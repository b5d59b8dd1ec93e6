namespace Loom.Bridge;

/// <summary>
/// The bridge's audit trail (<see cref="BridgeOptions.Audit"/>): every refusal, credential failure,
/// admin action, limit hit and registration, as JSON lines in <see cref="File"/> and as events on
/// <c>_loom.audit.{kind}</c>. Records go through a bounded queue to one background writer: when it is
/// full, a record is dropped and counted (<c>loom_audit_dropped_total</c>), never waited for.
/// </summary>
public sealed record AuditOptions
{
    /// <summary>
    /// The JSON-lines file records are appended to (audit_log, <c>--audit-log</c>); made with its folder,
    /// readable by the owner only. Default null: no file (<c>loom up</c> and <c>loom run</c> default to
    /// <c>.loom/audit.log</c> when auth is on).
    /// </summary>
    public string? File { get; init; }

    /// <summary>
    /// Whether auditing runs at all. Default null: on when <see cref="BridgeOptions.Auth"/> is not Off or
    /// <see cref="File"/> is set; off otherwise (loopback development, where every caller is trusted).
    /// </summary>
    public bool? Enabled { get; init; }

    /// <summary>Publish each record on <c>_loom.audit.{kind}</c> too (audit_events). Default true.</summary>
    public bool Events { get; init; } = true;

    /// <summary>
    /// Also record admin reads that succeed (audit_reads): <c>GET /v1/*</c> and MCP requests other than
    /// <c>tools/call</c>. Default false: refused reads are always recorded; <c>/metrics</c> scrapes never are.
    /// </summary>
    public bool IncludeReads { get; init; }

    /// <summary>Records waiting for the writer, at most (audit_queue). Default 16,384; past it records are dropped and counted.</summary>
    public int QueueCapacity { get; init; } = 16_384;

    /// <summary>
    /// Size at which <see cref="File"/> is rotated (audit_max_file_bytes): renamed to <c>FILE.1</c> (older ones
    /// shift up to <see cref="MaxFiles"/>) and a new one started. Default 100 MiB; 0: never rotated.
    /// </summary>
    public long MaxFileBytes { get; init; } = 100L * 1024 * 1024;

    /// <summary>Rotated files kept beside <see cref="File"/> (audit_max_files). Default 5.</summary>
    public int MaxFiles { get; init; } = 5;

    /// <summary>Longest time a written record waits in the file's buffer before it is flushed. Default 1 s.</summary>
    public TimeSpan FlushInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Bound on flushing the queue at shutdown; what is left then is dropped and counted. Default 2 s.</summary>
    public TimeSpan DisposeTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Whether auditing runs under <paramref name="auth"/>.</summary>
    public bool IsOn(AuthMode auth) => Enabled ?? (auth != AuthMode.Off || File is not null);

    /// <summary>Checks the numbers.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is out of range; the message names it.</exception>
    public void Validate()
    {
        if (QueueCapacity < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(QueueCapacity), $"QueueCapacity (audit_queue) is {QueueCapacity}; it must be positive.");
        }

        if (MaxFileBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFileBytes), $"MaxFileBytes (audit_max_file_bytes) is {MaxFileBytes}; use 0 (never rotate) or a positive number of bytes.");
        }

        if (MaxFiles is < 1 or > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFiles), $"MaxFiles (audit_max_files) is {MaxFiles}; use 1 to 1000.");
        }

        if (FlushInterval <= TimeSpan.Zero || DisposeTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(FlushInterval), "FlushInterval must be positive and DisposeTimeout not negative.");
        }
    }
}
