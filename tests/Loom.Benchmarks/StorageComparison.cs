using System.Diagnostics;
using System.Globalization;
using FASTER.core;
using Loom.Streams;
using Microsoft.Data.Sqlite;

namespace Loom.Benchmarks;

/// <summary>
/// The measurement behind the choice of the durable streams' storage engine (docs/performance.md):
/// <c>dotnet run -c Release --project tests/Loom.Benchmarks -- storage [--events N] [--writers N] [--payload N] [--runs N] [--dir DIR]</c>.
/// Each engine appends N records from W concurrent writers, each awaiting its record's
/// durability (fsync) before the next, so commits are shared (group commit); then the log is
/// reopened and read through (recovery). Figures: appends/s, ack latency p50/p99, disk bytes per
/// record, reopen-and-read time.
/// </summary>
public static class StorageComparison
{
    private interface IEngine : IAsyncDisposable
    {
        ValueTask AppendAsync(byte[] data);
    }

    public static async Task<int> RunAsync(string[] args)
    {
        int events = 200_000, writers = 64, payload = 100, runs = 3;
        var root = Path.Combine(Path.GetTempPath(), "loom-storage-bench");
        for (var i = 0; i < args.Length - 1; i++)
        {
            switch (args[i])
            {
                case "--events": events = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--writers": writers = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--payload": payload = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--runs": runs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--dir": root = args[++i]; break;
                default: break;
            }
        }

        Console.WriteLine($"storage: {events} records of {payload} B, {writers} writers awaiting durability, {runs} runs each (median [min..max])");
        Console.WriteLine("| engine | appends/s | ack p50 ms | ack p99 ms | disk B/record | reopen+read all ms |");
        Console.WriteLine("|---|---|---|---|---|---|");
        var engines = new (string Name, Func<string, IEngine> Open, Func<string, int> Recover)[]
        {
            ("segment files (Loom.Streams)", dir => new FileEngine(dir), FileEngine.Recover),
            ("FasterLog 2.6.5", dir => new FasterEngine(dir), FasterEngine.Recover),
            ("SQLite WAL (Microsoft.Data.Sqlite)", dir => new SqliteEngine(dir), SqliteEngine.Recover),
        };
        var data = new byte[payload];
        Random.Shared.NextBytes(data);
        foreach (var (name, open, recover) in engines)
        {
            var rates = new List<double>();
            var p50s = new List<double>();
            var p99s = new List<double>();
            var perRecord = new List<double>();
            var recovery = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                var dir = Path.Combine(root, Guid.NewGuid().ToString("N"));
                Directory.CreateDirectory(dir);
                try
                {
                    var latencies = new double[events];
                    var next = -1;
                    var watch = Stopwatch.StartNew();
                    await using (var engine = open(dir))
                    {
                        await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
                        {
                            int k;
                            while ((k = Interlocked.Increment(ref next)) < events)
                            {
                                var started = Stopwatch.GetTimestamp();
                                await engine.AppendAsync(data);
                                latencies[k] = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                            }
                        })));
                        rates.Add(events / watch.Elapsed.TotalSeconds);
                    }

                    Array.Sort(latencies);
                    p50s.Add(latencies[events / 2]);
                    p99s.Add(latencies[(int)(events * 0.99)]);
                    perRecord.Add(Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length) / (double)events);
                    watch.Restart();
                    var read = recover(dir);
                    recovery.Add(watch.Elapsed.TotalMilliseconds);
                    if (read != events)
                    {
                        Console.Error.WriteLine($"{name}: read back {read} of {events} records");
                    }
                }
                finally
                {
                    Directory.Delete(dir, recursive: true);
                }
            }

            Console.WriteLine($"| {name} | {Fmt(rates, "N0")} | {Fmt(p50s, "0.00")} | {Fmt(p99s, "0.00")} | {Fmt(perRecord, "0.0")} | {Fmt(recovery, "0")} |");
        }

        return 0;
    }

    private static string Fmt(List<double> values, string format)
    {
        values.Sort();
        return $"{values[values.Count / 2].ToString(format, CultureInfo.InvariantCulture)} [{values[0].ToString(format, CultureInfo.InvariantCulture)}..{values[^1].ToString(format, CultureInfo.InvariantCulture)}]";
    }

    private sealed class FileEngine(string dir) : IEngine
    {
        private readonly FileStreamLog _log = FileStreamLog.Open(dir);

        public async ValueTask AppendAsync(byte[] data) => await _log.AppendAsync(data, 0);

        public ValueTask DisposeAsync() => _log.DisposeAsync();

        public static int Recover(string dir)
        {
            var log = FileStreamLog.Open(dir);
            var n = 0;
            var from = 1L;
            while (true)
            {
                var batch = log.Read(from, 4096);
                if (batch.Count == 0)
                {
                    break;
                }

                n += batch.Count;
                from = batch[^1].Sequence + 1;
            }

            log.DisposeAsync().AsTask().GetAwaiter().GetResult();
            return n;
        }
    }

    private sealed class FasterEngine : IEngine
    {
        private readonly IDevice _device;
        private readonly FasterLog _log;

        public FasterEngine(string dir)
        {
            _device = Devices.CreateLogDevice(Path.Combine(dir, "hlog.log"));
            _log = new FasterLog(new FasterLogSettings { LogDevice = _device, LogChecksum = LogChecksumType.PerEntry, AutoCommit = true, LogCommitDir = dir });
        }

        public async ValueTask AppendAsync(byte[] data) => await _log.EnqueueAndWaitForCommitAsync(data);

        public ValueTask DisposeAsync()
        {
            _log.Dispose();
            _device.Dispose();
            return ValueTask.CompletedTask;
        }

        public static int Recover(string dir)
        {
            using var device = Devices.CreateLogDevice(Path.Combine(dir, "hlog.log"));
            using var log = new FasterLog(new FasterLogSettings { LogDevice = device, LogChecksum = LogChecksumType.PerEntry, LogCommitDir = dir });
            using var iterator = log.Scan(log.BeginAddress, log.TailAddress);
            var n = 0;
            while (iterator.GetNext(out _, out _, out _))
            {
                n++;
            }

            return n;
        }
    }

    private sealed class SqliteEngine : IEngine
    {
        private readonly SqliteConnection _connection;
        private readonly object _gate = new();
        private List<(byte[] Data, TaskCompletionSource Done)> _pending = [];
        private bool _writing;

        public SqliteEngine(string dir)
        {
            _connection = Open(dir);
            using var create = _connection.CreateCommand();
            create.CommandText = "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, data BLOB NOT NULL)";
            create.ExecuteNonQuery();
        }

        private static SqliteConnection Open(string dir)
        {
            var connection = new SqliteConnection($"Data Source={Path.Combine(dir, "log.db")};Pooling=False");
            connection.Open();
            using var pragma = connection.CreateCommand();
            pragma.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;";
            pragma.ExecuteNonQuery();
            return connection;
        }

        // Group commit as in the file engine: whoever finds no writer running writes every
        // pending record in one transaction (one WAL fsync).
        public async ValueTask AppendAsync(byte[] data)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            bool start;
            lock (_gate)
            {
                _pending.Add((data, done));
                start = !_writing;
                _writing = true;
            }

            if (start)
            {
                _ = Task.Run(WriteLoop);
            }

            await done.Task;
        }

        private void WriteLoop()
        {
            while (true)
            {
                List<(byte[] Data, TaskCompletionSource Done)> batch;
                lock (_gate)
                {
                    if (_pending.Count == 0)
                    {
                        _writing = false;
                        return;
                    }

                    batch = _pending;
                    _pending = [];
                }

                using (var tx = _connection.BeginTransaction())
                using (var insert = _connection.CreateCommand())
                {
                    insert.Transaction = tx;
                    insert.CommandText = "INSERT INTO log (ts, data) VALUES ($ts, $data)";
                    var ts = insert.Parameters.Add("$ts", SqliteType.Integer);
                    var blob = insert.Parameters.Add("$data", SqliteType.Blob);
                    insert.Prepare();
                    foreach (var (bytes, _) in batch)
                    {
                        ts.Value = 0L;
                        blob.Value = bytes;
                        insert.ExecuteNonQuery();
                    }

                    tx.Commit();
                }

                foreach (var (_, done) in batch)
                {
                    done.SetResult();
                }
            }
        }

        public ValueTask DisposeAsync()
        {
            _connection.Dispose();
            return ValueTask.CompletedTask;
        }

        public static int Recover(string dir)
        {
            using var connection = Open(dir);
            using var select = connection.CreateCommand();
            select.CommandText = "SELECT seq, ts, data FROM log ORDER BY seq";
            using var reader = select.ExecuteReader();
            var n = 0;
            while (reader.Read())
            {
                _ = reader.GetFieldValue<byte[]>(2);
                n++;
            }

            return n;
        }
    }
}
