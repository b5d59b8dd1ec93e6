using System.Text;
using Loom.Streams;
using Microsoft.Extensions.Logging;

namespace Loom.Core.Tests;

public sealed class StreamLogTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loom-streamlog-" + Guid.NewGuid().ToString("N"));
    private readonly ListLogger _log = new();

    public void Dispose()
    {
        if (Directory.Exists(_dir))
        {
            Directory.Delete(_dir, recursive: true);
        }
    }

    private static byte[] Payload(long i) => Encoding.UTF8.GetBytes($"record-{i}-" + new string('x', (int)(i % 50)));

    private static async Task AppendMany(FileStreamLog log, int n, long timestamp = 1000)
    {
        var tasks = new List<Task<long>>();
        for (var i = 1; i <= n; i++)
        {
            tasks.Add(log.AppendAsync(Payload(log.LastSequence + tasks.Count + 1), timestamp).AsTask());
        }

        await Task.WhenAll(tasks);
    }

    [Fact]
    public async Task Concurrent_appends_get_distinct_consecutive_sequences_and_read_back_in_order()
    {
        await using var log = FileStreamLog.Open(_dir);
        var tasks = Enumerable.Range(0, 8).Select(t => Task.Run(async () =>
        {
            var seqs = new List<long>();
            for (var i = 0; i < 500; i++)
            {
                seqs.Add(await log.AppendAsync(Encoding.UTF8.GetBytes($"{t}:{i}"), 5));
            }

            return seqs;
        })).ToArray();
        var all = (await Task.WhenAll(tasks)).SelectMany(s => s).OrderBy(s => s).ToList();
        Assert.Equal(Enumerable.Range(1, 4000).Select(i => (long)i), all);
        Assert.Equal(4000, log.LastSequence);
        var read = log.Read(1, 10_000);
        Assert.Equal(4000, read.Count);
        for (var i = 0; i < read.Count; i++)
        {
            Assert.Equal(i + 1, read[i].Sequence);
        }

        // Each writer's own records keep their order.
        var perWriter = read.Select(r => Encoding.UTF8.GetString(r.Data.Span).Split(':')).GroupBy(p => p[0]);
        foreach (var group in perWriter)
        {
            Assert.Equal(group.Select(p => int.Parse(p[1])).Order(), group.Select(p => int.Parse(p[1])));
        }
    }

    [Fact]
    public async Task Reopen_keeps_every_record_and_continues_the_sequence_across_segments()
    {
        var options = new StreamLogOptions { SegmentBytes = 4096 };
        await using (var log = FileStreamLog.Open(_dir, options))
        {
            for (var i = 1; i <= 1000; i++)
            {
                Assert.Equal(i, await log.AppendAsync(Payload(i), i));
            }

            Assert.True(log.SegmentCount > 5);
        }

        await using (var log = FileStreamLog.Open(_dir, options))
        {
            Assert.Equal(1, log.FirstSequence);
            Assert.Equal(1000, log.LastSequence);
            var read = log.Read(1, 2000);
            Assert.Equal(1000, read.Count);
            Assert.All(read, r => Assert.Equal(Payload(r.Sequence), r.Data.ToArray()));
            Assert.Equal(1001, await log.AppendAsync(Payload(1001), 2000));
            Assert.Equal(500, log.SequenceAt(500));
            Assert.Equal(1001, log.SequenceAt(1500));
            Assert.Equal(1002, log.SequenceAt(5000));
            Assert.Equal(Payload(777), log.Read(777, 1)[0].Data.ToArray());
        }
    }

    [Fact]
    public async Task A_torn_or_corrupted_tail_is_cut_with_a_log_line_and_never_crashes()
    {
        // Property: whatever happens to the last segment's tail (cut at any byte, or any byte
        // flipped), opening keeps a prefix of the records intact, logs the cut, and appends go on.
        var random = new Random(17);
        for (var trial = 0; trial < 60; trial++)
        {
            var dir = Path.Combine(_dir, trial.ToString());
            await using (var log = FileStreamLog.Open(dir, new StreamLogOptions { SegmentBytes = 2048 }))
            {
                for (var i = 1; i <= 80; i++)
                {
                    await log.AppendAsync(Payload(i), i);
                }
            }

            var last = Directory.GetFiles(dir, "*.log").Order().Last();
            var bytes = File.ReadAllBytes(last);
            var damaged = trial % 2 == 0;
            if (damaged)
            {
                var at = random.Next(bytes.Length);
                bytes[at] ^= (byte)(1 + random.Next(255));
            }
            else
            {
                bytes = bytes[..random.Next(bytes.Length)];
            }

            File.WriteAllBytes(last, bytes);
            _log.Lines.Clear();
            await using (var log = FileStreamLog.Open(dir, new StreamLogOptions { SegmentBytes = 2048 }, _log))
            {
                Assert.True(log.LastSequence < 80 || !damaged, $"trial {trial}: a flipped byte went unnoticed");
                var cut = new FileInfo(last).Length < bytes.Length;
                Assert.True(!damaged || cut, $"trial {trial}: a flipped byte was not cut");
                Assert.Equal(cut, _log.Lines.Any(l => l.Contains("cutting", StringComparison.Ordinal)));
                var read = log.Read(1, 1000);
                Assert.Equal(log.LastSequence, read.Count);
                Assert.All(read, r => Assert.Equal(Payload(r.Sequence), r.Data.ToArray()));
                var next = await log.AppendAsync(Payload(log.LastSequence + 1), 100);
                Assert.Equal(read.Count + 1, next);
            }

            await using (var log = FileStreamLog.Open(dir, new StreamLogOptions { SegmentBytes = 2048 }))
            {
                Assert.Equal(log.LastSequence, log.Read(1, 1000).Count);
            }
        }
    }

    [Fact]
    public async Task A_corrupted_record_in_a_sealed_segment_is_skipped_when_read_with_a_log_line()
    {
        var options = new StreamLogOptions { SegmentBytes = 1024 };
        await using (var log = FileStreamLog.Open(_dir, options))
        {
            for (var i = 1; i <= 200; i++)
            {
                await log.AppendAsync(Payload(i), i);
            }
        }

        var first = Directory.GetFiles(_dir, "*.log").Order().First();
        var bytes = File.ReadAllBytes(first);
        bytes[bytes.Length / 2] ^= 0x55;
        File.WriteAllBytes(first, bytes);
        await using (var log = FileStreamLog.Open(_dir, options, _log))
        {
            var read = log.Read(1, 1000);
            Assert.Contains(_log.Lines, l => l.Contains("cutting", StringComparison.Ordinal));
            Assert.True(read.Count < 200);
            Assert.Equal(200, read[^1].Sequence);
            Assert.All(read, r => Assert.Equal(Payload(r.Sequence), r.Data.ToArray()));
        }
    }

    [Fact]
    public async Task Retention_by_count_hides_old_records_at_once_and_removes_segments()
    {
        await using var log = FileStreamLog.Open(_dir, new StreamLogOptions { SegmentBytes = 1024, MaxCount = 100 });
        for (var i = 1; i <= 1000; i++)
        {
            await log.AppendAsync(Payload(i), i);
        }

        Assert.Equal(901, log.FirstSequence);
        Assert.Equal(100, log.Count);
        Assert.Equal(901, log.Read(1, 10)[0].Sequence);
        Assert.True(log.Bytes < 1024 * 20, $"{log.Bytes} bytes held");
        Assert.True(Directory.GetFiles(_dir, "*.log").Length < 20);
    }

    [Fact]
    public async Task Retention_by_bytes_and_by_age_removes_the_oldest_segments()
    {
        await using (var log = FileStreamLog.Open(Path.Combine(_dir, "bytes"), new StreamLogOptions { SegmentBytes = 1024, MaxBytes = 8192 }))
        {
            for (var i = 1; i <= 1000; i++)
            {
                await log.AppendAsync(Payload(i), i);
            }

            Assert.True(log.Bytes <= 8192 + 2048, $"{log.Bytes} bytes held");
            Assert.True(log.FirstSequence > 1);
            Assert.Equal(log.FirstSequence, log.Read(1, 1)[0].Sequence);
        }

        var time = new FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(1_000_000));
        var ageDir = Path.Combine(_dir, "age");
        await using (var log = FileStreamLog.Open(ageDir, new StreamLogOptions { SegmentBytes = 1024, MaxAge = TimeSpan.FromSeconds(10) }, time: time))
        {
            for (var i = 1; i <= 300; i++)
            {
                await log.AppendAsync(Payload(i), 1_000_000 + i);
            }

            log.ApplyRetention();
            Assert.Equal(1, log.FirstSequence);
            time.Advance(TimeSpan.FromSeconds(20));
            log.ApplyRetention();
            // Every sealed segment is older than 10 s; the one being written is kept.
            Assert.True(log.FirstSequence > 250, $"first {log.FirstSequence}");
            Assert.Equal(300, log.LastSequence);
        }
    }

    [Fact]
    public async Task WaitFor_completes_when_a_later_append_is_persisted()
    {
        await using var log = FileStreamLog.Open(_dir);
        await AppendMany(log, 3);
        await log.WaitForAsync(3, CancellationToken.None);
        var waiting = log.WaitForAsync(5, CancellationToken.None);
        Assert.False(waiting.IsCompleted);
        await AppendMany(log, 2);
        await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => log.WaitForAsync(100, cts.Token));
    }

    [Fact]
    public async Task A_record_over_the_limit_is_refused_with_a_clear_error()
    {
        await using var log = FileStreamLog.Open(_dir, new StreamLogOptions { MaxRecordBytes = 100 });
        var ex = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () => await log.AppendAsync(new byte[101], 1));
        Assert.Contains("100-byte limit", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, log.LastSequence);
    }

    private sealed class ListLogger : ILogger
    {
        public List<string> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (Lines)
            {
                Lines.Add(formatter(state, exception));
            }
        }
    }
}
