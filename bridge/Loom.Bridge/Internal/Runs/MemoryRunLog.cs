using Loom.Streams;

namespace Loom.Bridge.Internal.Runs;

/// <summary>
/// The run records' log when the bridge has no data directory: the same <see cref="IStreamLog"/>
/// shape, held in memory within byte, count and age limits (the oldest records go first).
/// </summary>
internal sealed class MemoryRunLog(long maxBytes, long maxCount, TimeSpan maxAge, TimeProvider time) : IStreamLog
{
    private const int RecordOverhead = 64;
    private readonly Lock _gate = new();
    private readonly List<StreamRecord> _records = [];
    private int _head;
    private long _first = 1;
    private long _last;
    private long _bytes;

    public long FirstSequence
    {
        get
        {
            lock (_gate)
            {
                return _first;
            }
        }
    }

    public long LastSequence => Volatile.Read(ref _last);

    public long Count => LastSequence - FirstSequence + 1;

    public long Bytes => Volatile.Read(ref _bytes);

    public ValueTask<long> AppendAsync(ReadOnlyMemory<byte> data, long timestampUnixMs, CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            var sequence = _last + 1;
            _records.Add(new StreamRecord(sequence, timestampUnixMs, data.ToArray()));
            _bytes += data.Length + RecordOverhead;
            Volatile.Write(ref _last, sequence);
            TrimLocked();
            return ValueTask.FromResult(sequence);
        }
    }

    public IReadOnlyList<StreamRecord> Read(long fromSequence, int maxRecords, long maxBytes = long.MaxValue)
    {
        lock (_gate)
        {
            var result = new List<StreamRecord>();
            long bytes = 0;
            for (var s = Math.Max(fromSequence, _first); s <= _last && result.Count < maxRecords && bytes < maxBytes; s++)
            {
                var record = _records[_head + (int)(s - _first)];
                result.Add(record);
                bytes += record.Data.Length;
            }

            return result;
        }
    }

    public long SequenceAt(long unixMs)
    {
        lock (_gate)
        {
            for (var i = _head; i < _records.Count; i++)
            {
                if (_records[i].TimestampUnixMs >= unixMs)
                {
                    return _records[i].Sequence;
                }
            }

            return _last + 1;
        }
    }

    public Task WaitForAsync(long sequence, CancellationToken cancellationToken) =>
        LastSequence >= sequence ? Task.CompletedTask : Task.FromException(new NotSupportedException("The in-memory run log does not wait."));

    public void ApplyRetention()
    {
        lock (_gate)
        {
            TrimLocked();
        }
    }

    private void TrimLocked()
    {
        var oldest = maxAge > TimeSpan.Zero ? time.GetUtcNow().ToUnixTimeMilliseconds() - (long)maxAge.TotalMilliseconds : long.MinValue;
        while (_head < _records.Count)
        {
            var record = _records[_head];
            var over = (maxBytes > 0 && _bytes > maxBytes) || (maxCount > 0 && _last - _first + 1 > maxCount) || record.TimestampUnixMs < oldest;
            if (!over)
            {
                break;
            }

            _bytes -= record.Data.Length + RecordOverhead;
            _records[_head] = default;
            _head++;
            _first++;
        }

        if (_head > 1024 && _head > _records.Count / 2)
        {
            _records.RemoveRange(0, _head);
            _head = 0;
        }
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
