using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace Loom.Streams.Internal;

/// <summary>
/// One segment file: records [u32 body length][u32 CRC-32C of body][body: i64 sequence, i64
/// timestamp, data], sequences consecutive from the number in the file name. Its index (record
/// offsets) is built when the segment is first read (sealed segments) or at open (the last one).
/// </summary>
internal sealed class Segment : IDisposable
{
    public const int HeaderBytes = 8;
    public const int BodyPrefixBytes = 16;
    public const int Overhead = HeaderBytes + BodyPrefixBytes;

    private int[] _offsets = [];
    private int _count;
    private bool _indexed;

    public Segment(string path, long firstSequence, SafeFileHandle read)
    {
        Path = path;
        FirstSequence = firstSequence;
        ReadHandle = read;
    }

    public string Path { get; }

    public string FileName => System.IO.Path.GetFileName(Path);

    public long FirstSequence { get; }

    public SafeFileHandle ReadHandle { get; }

    /// <summary>Open for appends (the last segment only).</summary>
    public FileStream? Writer { get; set; }

    /// <summary>Valid bytes (the file may be longer only while a commit is under way).</summary>
    public long Length { get; set; }

    public long FirstTimestamp { get; set; }

    public long LastTimestamp { get; set; }

    /// <summary>Sequence one past the last record, known without an index for sealed segments (the next segment's first).</summary>
    public long EndSequence { get; set; }

    public bool Indexed
    {
        get { lock (this) { return _indexed; } }
    }

    public static string NameFor(long firstSequence) => $"{firstSequence:D20}.log";

    public static bool TryParseName(string fileName, out long firstSequence)
    {
        firstSequence = 0;
        return fileName.Length == 24 && fileName.EndsWith(".log", StringComparison.Ordinal)
            && long.TryParse(fileName.AsSpan(0, 20), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out firstSequence)
            && firstSequence > 0;
    }

    public int Count
    {
        get { lock (this) { return _count; } }
    }

    public void AddRecord(int offset)
    {
        lock (this)
        {
            if (_count == _offsets.Length)
            {
                Array.Resize(ref _offsets, Math.Max(1024, _count * 2));
            }

            _offsets[_count++] = offset;
        }
    }

    public void MarkIndexed()
    {
        lock (this)
        {
            _indexed = true;
        }
    }

    /// <summary>The byte range [start, end) of records index..index+n-1 (clamped), and how many.</summary>
    public (long Start, long End, int Records) Range(int index, int max)
    {
        lock (this)
        {
            if (index < 0 || index >= _count)
            {
                return (0, 0, 0);
            }

            var n = Math.Min(max, _count - index);
            var end = index + n < _count ? _offsets[index + n] : Length;
            return (_offsets[index], end, n);
        }
    }

    public long TimestampAt(int index)
    {
        long offset;
        lock (this)
        {
            offset = _offsets[index];
        }

        Span<byte> ts = stackalloc byte[8];
        RandomAccess.Read(ReadHandle, ts, offset + HeaderBytes + 8);
        return BinaryPrimitives.ReadInt64LittleEndian(ts);
    }

    public void Dispose()
    {
        Writer?.Dispose();
        ReadHandle.Dispose();
    }

    private static bool ZeroTail(ReadOnlySpan<byte> rest) => !rest.ContainsAnyExcept((byte)0);

    /// <summary>Bytes reserved on disk (fallocate); at least Length.</summary>
    public long Allocated { get; set; }

    /// <summary>Result of validating a segment from its start.</summary>
    public readonly record struct ScanResult(long ValidLength, long FileLength, int Records, string? BadReason);

    /// <summary>
    /// Reads the segment from the start, indexing each good record, and stops at the first bad
    /// one: short header, impossible length, short body, CRC mismatch or a sequence out of order.
    /// </summary>
    public ScanResult Scan(int maxRecordBytes)
    {
        lock (this)
        {
            _count = 0;
            var fileLength = RandomAccess.GetLength(ReadHandle);
            var buffer = new byte[1 << 20];
            long bufferStart = 0;
            var bufferLength = 0;
            long offset = 0;
            string? bad = null;
            var expected = FirstSequence;

            bool Ensure(long at, int need)
            {
                if (at >= bufferStart && at + need <= bufferStart + bufferLength)
                {
                    return true;
                }

                if (need > buffer.Length)
                {
                    buffer = new byte[need];
                }

                bufferStart = at;
                bufferLength = 0;
                while (bufferLength < buffer.Length)
                {
                    var n = RandomAccess.Read(ReadHandle, buffer.AsSpan(bufferLength), at + bufferLength);
                    if (n == 0)
                    {
                        break;
                    }

                    bufferLength += n;
                }

                return bufferLength >= need;
            }

            while (offset < fileLength)
            {
                if (!Ensure(offset, HeaderBytes))
                {
                    bad = "truncated header";
                    break;
                }

                var header = buffer.AsSpan((int)(offset - bufferStart), HeaderBytes);
                var bodyLength = BinaryPrimitives.ReadUInt32LittleEndian(header);
                var crc = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
                if (bodyLength == 0 && crc == 0 && ZeroTail(buffer.AsSpan((int)(offset - bufferStart), (int)Math.Min(bufferLength - (offset - bufferStart), fileLength - offset))))
                {
                    break; // the preallocated end of the file: a clean end, not damage
                }

                if (bodyLength < BodyPrefixBytes || bodyLength > (uint)maxRecordBytes + BodyPrefixBytes)
                {
                    bad = bodyLength == 0 ? "zeroed bytes" : $"impossible length {bodyLength}";
                    break;
                }

                if (!Ensure(offset + HeaderBytes, (int)bodyLength))
                {
                    bad = "truncated record";
                    break;
                }

                var body = buffer.AsSpan((int)(offset + HeaderBytes - bufferStart), (int)bodyLength);
                if (Crc32C.Compute(body) != crc)
                {
                    bad = "checksum mismatch";
                    break;
                }

                var sequence = BinaryPrimitives.ReadInt64LittleEndian(body);
                if (sequence != expected)
                {
                    bad = $"sequence {sequence} where {expected} was expected";
                    break;
                }

                var timestamp = BinaryPrimitives.ReadInt64LittleEndian(body[8..]);
                if (_count == 0)
                {
                    FirstTimestamp = timestamp;
                }

                LastTimestamp = timestamp;
                if (_count == _offsets.Length)
                {
                    Array.Resize(ref _offsets, Math.Max(1024, _count * 2));
                }

                _offsets[_count++] = (int)offset;
                expected++;
                offset += HeaderBytes + bodyLength;
            }

            Length = offset;
            EndSequence = expected;
            _indexed = true;
            return new ScanResult(offset, fileLength, _count, bad);
        }
    }
}
