using System.Buffers;
using System.Buffers.Binary;
using System.Diagnostics;
using Loom.Streams.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Streams;

/// <summary>
/// The file backend of <see cref="IStreamLog"/>: a directory of segment files, each a run of
/// length-prefixed, CRC-32C-checked records. Appends from any number of threads are gathered
/// into one write and one fsync (group commit) by a single writer. Opening the directory
/// validates the last segment and cuts a torn or corrupted tail with a log line; sealed
/// segments are validated the first time they are read.
/// </summary>
public sealed class FileStreamLog : IStreamLog
{
    private const int MaxPendingBytes = 8 * 1024 * 1024;
    private const int PreallocateBytes = 4 * 1024 * 1024;

    private readonly string _directory;
    private readonly StreamLogOptions _options;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly object _appendGate = new();
    private readonly object _segmentsGate = new();

    private Segment[] _segments = [];
    private long _firstSequence;
    private long _lastSequence;
    private long _bytes;

    // Appends waiting for the writer (guarded by _appendGate).
    private ArrayBufferWriter<byte> _pending = new(64 * 1024);
    private List<int> _pendingLengths = [];
    private ArrayBufferWriter<byte> _spare = new(64 * 1024);
    private List<int> _spareLengths = [];
    private TaskCompletionSource _pendingCommit = NewCommit();
    private TaskCompletionSource? _inFlightCommit;
    private long _nextSequence;
    private long _lastTimestamp;
    private bool _writerRunning;
    private Exception? _faulted;
    private bool _disposed;
    private Task _writer = Task.CompletedTask;

    // Completed (and replaced) after every commit: WaitForAsync's signal.
    private TaskCompletionSource _appended = NewCommit();

    private FileStreamLog(string directory, StreamLogOptions options, ILogger logger, TimeProvider time)
    {
        _directory = directory;
        _options = options;
        _logger = logger;
        _time = time;
    }

    /// <summary>Opens (or creates) the log in <paramref name="directory"/>, recovering from a torn tail.</summary>
    public static FileStreamLog Open(string directory, StreamLogOptions? options = null, ILogger? logger = null, TimeProvider? time = null)
    {
        var log = new FileStreamLog(directory, options ?? new StreamLogOptions(), logger ?? NullLogger.Instance, time ?? TimeProvider.System);
        log.Recover();
        return log;
    }

    public long FirstSequence => Math.Min(Volatile.Read(ref _firstSequence), Volatile.Read(ref _lastSequence) + 1);

    public long LastSequence => Volatile.Read(ref _lastSequence);

    public long Count => LastSequence - FirstSequence + 1;

    public long Bytes => Volatile.Read(ref _bytes);

    /// <summary>Segment files held.</summary>
    public int SegmentCount => Volatile.Read(ref _segments).Length;

    private static TaskCompletionSource NewCommit() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    private void Recover()
    {
        var started = Stopwatch.GetTimestamp();
        Directory.CreateDirectory(_directory);
        var names = new List<(long First, string Path)>();
        foreach (var path in Directory.EnumerateFiles(_directory, "*.log"))
        {
            if (Segment.TryParseName(Path.GetFileName(path), out var first))
            {
                names.Add((first, path));
            }
        }

        names.Sort((a, b) => a.First.CompareTo(b.First));
        var segments = new List<Segment>();
        foreach (var (first, path) in names)
        {
            segments.Add(new Segment(path, first, File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete)));
        }

        for (var i = 0; i < segments.Count - 1; i++)
        {
            var s = segments[i];
            s.EndSequence = segments[i + 1].FirstSequence;
            s.Length = RandomAccess.GetLength(s.ReadHandle);
            s.LastTimestamp = new DateTimeOffset(File.GetLastWriteTimeUtc(s.Path)).ToUnixTimeMilliseconds();
            _bytes += s.Length;
        }

        if (segments.Count == 0)
        {
            segments.Add(CreateSegment(1));
        }

        var last = segments[^1];
        var scan = last.Scan(_options.MaxRecordBytes);
        if (scan.BadReason is not null)
        {
            Log.TailCut(_logger, _directory, last.FileName, scan.ValidLength, scan.BadReason, scan.FileLength - scan.ValidLength, last.EndSequence - 1);
        }

        last.Writer = new FileStream(last.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        if (scan.FileLength != scan.ValidLength)
        {
            last.Writer.SetLength(scan.ValidLength);
            last.Writer.Flush(flushToDisk: true);
        }

        _bytes += last.Length;
        _segments = [.. segments];
        _firstSequence = segments[0].FirstSequence;
        _lastSequence = last.EndSequence - 1;
        _nextSequence = last.EndSequence;
        _lastTimestamp = last.Count > 0 ? last.LastTimestamp : 0;
        ApplyRetention();
        Log.Opened(_logger, _directory, FirstSequence, LastSequence, _segments.Length, Bytes, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    private Segment CreateSegment(long first)
    {
        var path = Path.Combine(_directory, Segment.NameFor(first));
        using (File.Create(path))
        {
        }

        var segment = new Segment(path, first, File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
        {
            EndSequence = first,
        };
        segment.MarkIndexed();
        return segment;
    }

    public async ValueTask<long> AppendAsync(ReadOnlyMemory<byte> data, long timestampUnixMs, CancellationToken cancellationToken = default)
    {
        if (data.Length > _options.MaxRecordBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(data), $"A record of {data.Length} bytes is over the {_options.MaxRecordBytes}-byte limit of this stream.");
        }

        while (true)
        {
            Task? wait = null;
            long sequence = 0;
            var start = false;
            lock (_appendGate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                if (_faulted is not null)
                {
                    throw new IOException($"The stream log in {_directory} failed a write and takes no more appends: {_faulted.Message}", _faulted);
                }

                if (_pending.WrittenCount >= MaxPendingBytes && _inFlightCommit is not null)
                {
                    wait = _inFlightCommit.Task; // backpressure: the disk is behind
                }
                else
                {
                    sequence = _nextSequence++;
                    var timestamp = Math.Max(timestampUnixMs, _lastTimestamp);
                    _lastTimestamp = timestamp;
                    var total = Segment.Overhead + data.Length;
                    var span = _pending.GetSpan(total)[..total];
                    BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)(Segment.BodyPrefixBytes + data.Length));
                    BinaryPrimitives.WriteInt64LittleEndian(span[8..], sequence);
                    BinaryPrimitives.WriteInt64LittleEndian(span[16..], timestamp);
                    data.Span.CopyTo(span[24..]);
                    BinaryPrimitives.WriteUInt32LittleEndian(span[4..], Crc32C.Compute(span[8..]));
                    _pending.Advance(total);
                    _pendingLengths.Add(total);
                    wait = _pendingCommit.Task;
                    if (!_writerRunning)
                    {
                        _writerRunning = true;
                        start = true;
                    }
                }
            }

            if (start)
            {
                _writer = Task.Run(WriterLoop, CancellationToken.None);
            }

            if (sequence == 0)
            {
                await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
            return sequence;
        }
    }

    private void WriterLoop()
    {
        while (true)
        {
            ArrayBufferWriter<byte> batch;
            List<int> lengths;
            TaskCompletionSource commit;
            long firstSequence;
            lock (_appendGate)
            {
                if (_pending.WrittenCount == 0 || _faulted is not null)
                {
                    _writerRunning = false;
                    _inFlightCommit = null;
                    return;
                }

                batch = _pending;
                lengths = _pendingLengths;
                commit = _pendingCommit;
                _pending = _spare;
                _pendingLengths = _spareLengths;
                _pendingCommit = NewCommit();
                _inFlightCommit = commit;
                firstSequence = _nextSequence - lengths.Count;
            }

            try
            {
                Commit(batch.WrittenSpan, lengths, firstSequence);
                commit.TrySetResult();
            }
            catch (Exception ex)
            {
                Log.CommitFailed(_logger, ex, _directory);
                lock (_appendGate)
                {
                    _faulted = ex;
                    _pendingCommit.TrySetException(ex);
                }

                commit.TrySetException(ex);
                return;
            }
            finally
            {
                batch.ResetWrittenCount();
                lengths.Clear();
                lock (_appendGate)
                {
                    _spare = batch;
                    _spareLengths = lengths;
                }
            }
        }
    }

    private void Commit(ReadOnlySpan<byte> bytes, List<int> lengths, long firstSequence)
    {
        var segment = Volatile.Read(ref _segments)[^1];
        if (segment.Length >= _options.SegmentBytes)
        {
            segment = Roll(segment, firstSequence);
        }

        var writer = segment.Writer!;
        if (segment.Length + bytes.Length > segment.Allocated)
        {
            var chunk = Math.Max(PreallocateBytes, bytes.Length);
            segment.Allocated = NativeFile.Allocate(writer.SafeFileHandle, segment.Length, chunk) ? segment.Length + chunk : 0;
        }

        writer.Position = segment.Length;
        writer.Write(bytes);
        if (_options.Fsync)
        {
            NativeFile.DataSync(writer);
        }
        var offset = segment.Length;
        long lastTimestamp = 0;
        foreach (var length in lengths)
        {
            if (segment.Count == 0)
            {
                segment.FirstTimestamp = BinaryPrimitives.ReadInt64LittleEndian(bytes[(int)(offset - segment.Length + 16)..]);
            }

            segment.AddRecord((int)offset);
            offset += length;
        }

        lastTimestamp = BinaryPrimitives.ReadInt64LittleEndian(bytes[(bytes.Length - lengths[^1] + 16)..]);
        segment.LastTimestamp = lastTimestamp;
        segment.Length = offset;
        segment.EndSequence = firstSequence + lengths.Count;
        Interlocked.Add(ref _bytes, bytes.Length);
        Volatile.Write(ref _lastSequence, firstSequence + lengths.Count - 1);
        if (_options.MaxCount > 0)
        {
            var floor = LastSequence - _options.MaxCount + 1;
            if (floor > Volatile.Read(ref _firstSequence))
            {
                Volatile.Write(ref _firstSequence, floor);
            }
        }

        Interlocked.Exchange(ref _appended, NewCommit()).TrySetResult();
    }

    private Segment Roll(Segment full, long firstSequence)
    {
        Seal(full);
        var next = CreateSegment(firstSequence);
        next.Writer = new FileStream(next.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
        lock (_segmentsGate)
        {
            _segments = [.. _segments, next];
        }

        ApplyRetention();
        return next;
    }

    // Gives back the preallocated tail and closes the writer.
    private static void Seal(Segment segment)
    {
        if (segment.Writer is { } writer)
        {
            writer.SetLength(segment.Length);
            writer.Dispose();
            segment.Writer = null;
        }
    }

    public void ApplyRetention()
    {
        var removed = new List<(Segment Segment, string Why)>();
        lock (_segmentsGate)
        {
            var segments = _segments;
            var keepFrom = 0;
            var bytes = Volatile.Read(ref _bytes);
            var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
            var countFloor = _options.MaxCount > 0 ? LastSequence - _options.MaxCount + 1 : long.MinValue;
            while (keepFrom < segments.Length - 1)
            {
                var s = segments[keepFrom];
                string? why = null;
                if (s.EndSequence - 1 < countFloor)
                {
                    why = $"over max count {_options.MaxCount}";
                }
                else if (_options.MaxBytes > 0 && bytes > _options.MaxBytes)
                {
                    why = $"over max bytes {_options.MaxBytes}";
                }
                else if (_options.MaxAge > TimeSpan.Zero && s.LastTimestamp < now - (long)_options.MaxAge.TotalMilliseconds)
                {
                    why = $"older than max age {_options.MaxAge}";
                }

                if (why is null)
                {
                    break;
                }

                bytes -= s.Length;
                removed.Add((s, why));
                keepFrom++;
            }

            if (keepFrom == 0)
            {
                return;
            }

            _segments = segments[keepFrom..];
            var first = _segments[0].FirstSequence;
            if (first > Volatile.Read(ref _firstSequence))
            {
                Volatile.Write(ref _firstSequence, first);
            }
        }

        foreach (var (segment, why) in removed)
        {
            Interlocked.Add(ref _bytes, -segment.Length);
            Log.SegmentRemoved(_logger, _directory, segment.FileName, segment.EndSequence - segment.FirstSequence, segment.Length, why);
            segment.Dispose();
            File.Delete(segment.Path);
        }
    }

    public IReadOnlyList<StreamRecord> Read(long fromSequence, int maxRecords, long maxBytes = long.MaxValue)
    {
        var result = new List<StreamRecord>();
        for (var attempt = 0; attempt < 3; attempt++)
        {
            try
            {
                ReadCore(fromSequence, maxRecords, maxBytes, result);
                return result;
            }
            catch (ObjectDisposedException)
            {
                // Retention removed the segment under us: read again from what is left.
                result.Clear();
            }
        }

        return result;
    }

    private void ReadCore(long from, int maxRecords, long maxBytes, List<StreamRecord> result)
    {
        var last = LastSequence;
        from = Math.Max(from, FirstSequence);
        var segments = Volatile.Read(ref _segments);
        long bytes = 0;
        while (from <= last && result.Count < maxRecords && bytes < maxBytes)
        {
            var i = FindSegment(segments, from);
            if (i < 0)
            {
                return;
            }

            var segment = segments[i];
            if (!segment.Indexed)
            {
                var scan = segment.Scan(_options.MaxRecordBytes);
                if (scan.BadReason is not null)
                {
                    Log.TailCut(_logger, _directory, segment.FileName, scan.ValidLength, scan.BadReason, scan.FileLength - scan.ValidLength, segment.EndSequence - 1);
                }
            }

            var (start, end, n) = segment.Range((int)(from - segment.FirstSequence), maxRecords - result.Count);
            if (n == 0)
            {
                // A gap (a sealed segment cut short by corruption): go on with the next segment.
                if (i + 1 < segments.Length)
                {
                    from = segments[i + 1].FirstSequence;
                    continue;
                }

                return;
            }

            var buffer = new byte[end - start];
            var read = 0;
            while (read < buffer.Length)
            {
                var k = RandomAccess.Read(segment.ReadHandle, buffer.AsSpan(read), start + read);
                if (k == 0)
                {
                    break;
                }

                read += k;
            }

            var offset = 0;
            for (var r = 0; r < n && offset + Segment.Overhead <= read; r++)
            {
                var bodyLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(offset));
                var sequence = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(offset + 8));
                var timestamp = BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(offset + 16));
                if (sequence > last)
                {
                    return;
                }

                result.Add(new StreamRecord(sequence, timestamp, buffer.AsMemory(offset + Segment.Overhead, bodyLength - Segment.BodyPrefixBytes)));
                bytes += bodyLength;
                offset += Segment.HeaderBytes + bodyLength;
                from = sequence + 1;
                if (bytes >= maxBytes)
                {
                    return;
                }
            }
        }
    }

    private static int FindSegment(Segment[] segments, long sequence)
    {
        int lo = 0, hi = segments.Length - 1, found = -1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            if (segments[mid].FirstSequence <= sequence)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        return found;
    }

    public long SequenceAt(long unixMs)
    {
        var segments = Volatile.Read(ref _segments);
        foreach (var segment in segments)
        {
            if (!segment.Indexed)
            {
                segment.Scan(_options.MaxRecordBytes);
            }

            var count = segment.Count;
            if (count == 0 || segment.LastTimestamp < unixMs)
            {
                continue;
            }

            int lo = 0, hi = count - 1;
            while (lo < hi)
            {
                var mid = (lo + hi) / 2;
                if (segment.TimestampAt(mid) >= unixMs)
                {
                    hi = mid;
                }
                else
                {
                    lo = mid + 1;
                }
            }

            return Math.Max(segment.FirstSequence + lo, FirstSequence);
        }

        return LastSequence + 1;
    }

    public async Task WaitForAsync(long sequence, CancellationToken cancellationToken)
    {
        while (LastSequence < sequence)
        {
            var signal = Volatile.Read(ref _appended).Task;
            if (LastSequence >= sequence)
            {
                return;
            }

            await signal.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        lock (_appendGate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        try
        {
            await _writer.ConfigureAwait(false);
        }
        catch (IOException)
        {
            // Already logged and reported to the appends that waited on it.
        }

        lock (_segmentsGate)
        {
            if (_faulted is null)
            {
                Seal(_segments[^1]);
            }

            foreach (var segment in _segments)
            {
                segment.Dispose();
            }
        }
    }
}
