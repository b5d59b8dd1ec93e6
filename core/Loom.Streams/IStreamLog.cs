namespace Loom.Streams;

/// <summary>One stored record: its sequence (1, 2, 3, ... per stream), when it was stored, and its bytes.</summary>
public readonly record struct StreamRecord(long Sequence, long TimestampUnixMs, ReadOnlyMemory<byte> Data);

/// <summary>
/// An append-only log of records numbered from 1: the storage engine behind a durable stream.
/// Appends are acknowledged only once persisted (group commit: concurrent appends share one
/// flush); readers see only persisted records. Retention removes records from the head only.
/// The shape is the one a NATS JetStream stream offers, so a clustered backend can implement it.
/// </summary>
public interface IStreamLog : IAsyncDisposable
{
    /// <summary>The first sequence still held; LastSequence + 1 when the log is empty.</summary>
    long FirstSequence { get; }

    /// <summary>The last persisted sequence; 0 when nothing was ever appended.</summary>
    long LastSequence { get; }

    /// <summary>Records held (LastSequence - FirstSequence + 1).</summary>
    long Count { get; }

    /// <summary>Bytes on disk, headers included.</summary>
    long Bytes { get; }

    /// <summary>Appends one record; completes with its sequence once it is persisted.</summary>
    ValueTask<long> AppendAsync(ReadOnlyMemory<byte> data, long timestampUnixMs, CancellationToken cancellationToken = default);

    /// <summary>Reads up to <paramref name="maxRecords"/> persisted records from <paramref name="fromSequence"/> (or the first held one when that was removed).</summary>
    IReadOnlyList<StreamRecord> Read(long fromSequence, int maxRecords, long maxBytes = long.MaxValue);

    /// <summary>The first held sequence stored at or after <paramref name="unixMs"/>; LastSequence + 1 when none.</summary>
    long SequenceAt(long unixMs);

    /// <summary>Completes when LastSequence reaches <paramref name="sequence"/> (at once when it has).</summary>
    Task WaitForAsync(long sequence, CancellationToken cancellationToken);

    /// <summary>Applies the retention limits now (they are also applied when a segment fills).</summary>
    void ApplyRetention();
}
