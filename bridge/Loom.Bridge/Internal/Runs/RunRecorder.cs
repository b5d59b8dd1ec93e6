using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Streams;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Runs;

/// <summary>
/// Run records: the bus's and the broker's observers (chained after the dashboard's, if any) turn
/// every envelope and call that carries a thread id into a <see cref="RunStep"/> and offer it to
/// a bounded queue without waiting (a full queue drops the step and counts it); one writer
/// appends the steps to the run log (a <see cref="FileStreamLog"/> under <c>{data_dir}/runs</c>,
/// or a <see cref="MemoryRunLog"/>) in batches that share one commit, then indexes them by
/// thread (bounded; rebuilt from the log when the bridge starts).
/// </summary>
internal sealed class RunRecorder : IAsyncDisposable
{
    private const int WriteBatch = 512;
    private const int MaxAgentsPerThread = 64;
    private static readonly TimeSpan QueueFullLogEvery = TimeSpan.FromMinutes(1);

    private readonly RunsOptions _options;
    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly IStreamLog _log;
    private readonly Channel<RunStep> _queue;
    private readonly Lock _indexGate = new();
    private readonly Dictionary<string, ThreadEntry> _threads = new(StringComparer.Ordinal);
    private readonly LinkedList<ThreadEntry> _byActivity = new(); // least recently active first
    private readonly Action<Envelope> _onEnvelope;
    private readonly Action<ActionRequest, ActionOutcome, TimeSpan> _onCall;
    private readonly Task _writer;
    private long _dropped;
    private long _recorded;
    private long _notKept;
    private long _lastQueueFullLog = long.MinValue;
    private int _disposed;
    private FileStream? _lockFile;

    private RunRecorder(RunsOptions options, IStreamLog log, string where, EventBus bus, ActionBroker broker, TimeProvider time, ILogger logger)
    {
        _options = options;
        _log = log;
        _bus = bus;
        _broker = broker;
        _time = time;
        _logger = logger;
        Where = where;
        _queue = Channel.CreateBounded<RunStep>(new BoundedChannelOptions(options.QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        Rebuild();
        _onEnvelope = OnEnvelope;
        _onCall = OnCall;
        bus.Observer += _onEnvelope;
        broker.CallObserver += _onCall;
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Opens the run records (null when they are off): in <c>{data_dir}/runs</c> when the bridge has a data directory, else in memory.</summary>
    public static RunRecorder? Open(BridgeOptions options, EventBus bus, ActionBroker broker, TimeProvider time, ILogger logger)
    {
        var runs = options.Runs;
        if (!runs.Enabled)
        {
            return null;
        }

        IStreamLog? log = null;
        FileStream? lockFile = null;
        var where = "in memory";
        if (options.DataDirectory is { } dataDir)
        {
            var directory = Path.Combine(dataDir, "runs");
            try
            {
                // One bridge per directory: a second one (another 'loom run' of the same project) keeps its runs in memory.
                Directory.CreateDirectory(directory);
                lockFile = new FileStream(Path.Combine(directory, "LOCK"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                log = FileStreamLog.Open(directory, new StreamLogOptions
                {
                    MaxAge = runs.MaxAge,
                    MaxBytes = runs.MaxBytes,
                    MaxCount = runs.MaxSteps,
                    SegmentBytes = runs.SegmentBytes,
                    MaxRecordBytes = 1024 * 1024,
                    Fsync = runs.Fsync,
                }, logger, time);
                where = directory;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                lockFile?.Dispose();
                lockFile = null;
                RunsLog.OpenFailed(logger, directory, ex.Message);
            }
        }

        log ??= new MemoryRunLog(runs.MemoryMaxBytes, runs.MaxSteps, runs.MaxAge, time);
        return new RunRecorder(runs, log, where, bus, broker, time, logger) { _lockFile = lockFile };
    }

    /// <summary>Where the records are kept: a directory, or "in memory".</summary>
    public string Where { get; }

    public bool Persistent => _log is FileStreamLog;

    /// <summary>Steps dropped because the queue was full (or a write failed).</summary>
    public long Dropped => Volatile.Read(ref _dropped);

    /// <summary>Steps written to the log.</summary>
    public long Recorded => Volatile.Read(ref _recorded);

    /// <summary>Steps not kept because their thread was over <see cref="RunsOptions.MaxStepsPerThread"/>.</summary>
    public long NotKept => Volatile.Read(ref _notKept);

    public int QueueDepth => _queue.Reader.Count;

    public long Bytes => _log.Bytes;

    public int ThreadCount
    {
        get
        {
            lock (_indexGate)
            {
                return _threads.Count;
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Observing (on the publishing and calling threads: quick, bounded, never throws)
    // ---------------------------------------------------------------------------------------

    private void OnEnvelope(Envelope envelope)
    {
        if (envelope.ThreadId.Length == 0)
        {
            return;
        }

        Offer(RunStep.FromEnvelope(envelope, _options.PreviewBytes));
    }

    private void OnCall(ActionRequest request, ActionOutcome outcome, TimeSpan elapsed)
    {
        if (request.ThreadId.Length == 0)
        {
            return;
        }

        Offer(RunStep.FromCall(request, outcome, elapsed, _time.GetUtcNow().ToUnixTimeMilliseconds(), _options.PreviewBytes));
    }

    private void Offer(RunStep step)
    {
        if (_queue.Writer.TryWrite(step))
        {
            return;
        }

        Interlocked.Increment(ref _dropped);
        var now = _time.GetTimestamp();
        var last = Volatile.Read(ref _lastQueueFullLog);
        if ((last == long.MinValue || _time.GetElapsedTime(last, now) > QueueFullLogEvery) && Interlocked.CompareExchange(ref _lastQueueFullLog, now, last) == last)
        {
            RunsLog.QueueFull(_logger, _options.QueueCapacity);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Writing
    // ---------------------------------------------------------------------------------------

    private async Task WriteLoopAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<RunStep>(WriteBatch);
        var appends = new List<Task<long>>(WriteBatch);
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            appends.Clear();
            while (batch.Count < WriteBatch && reader.TryRead(out var step))
            {
                batch.Add(step);
            }

            try
            {
                var kept = new List<RunStep>(batch.Count);
                foreach (var step in batch)
                {
                    if (!Admit(step))
                    {
                        Interlocked.Increment(ref _notKept);
                        continue;
                    }

                    step.Decode();
                    var bytes = JsonSerializer.SerializeToUtf8Bytes(step, RunsJsonContext.Default.RunStep);
                    appends.Add(_log.AppendAsync(bytes, step.TimestampUnixMs).AsTask());
                    kept.Add(step);
                }

                for (var i = 0; i < appends.Count; i++)
                {
                    var sequence = await appends[i].ConfigureAwait(false);
                    Index(kept[i], sequence);
                    Interlocked.Increment(ref _recorded);
                }
            }
            catch (Exception ex)
            {
                // The loop goes on whatever failed: a dead writer would drop every later step.
                Interlocked.Add(ref _dropped, batch.Count);
                RunsLog.WriteFailed(_logger, ex, batch.Count);
            }
        }
    }

    /// <summary>Whether the step's thread may hold one more step (counting it either way).</summary>
    private bool Admit(RunStep step)
    {
        lock (_indexGate)
        {
            if (_threads.TryGetValue(step.ThreadId, out var entry) && entry.Sequences.Count + entry.Pending >= _options.MaxStepsPerThread)
            {
                entry.Truncated = true;
                entry.NotKept++;
                return false;
            }

            if (entry is not null)
            {
                entry.Pending++;
            }

            return true;
        }
    }

    private void Index(RunStep step, long sequence)
    {
        lock (_indexGate)
        {
            if (_threads.TryGetValue(step.ThreadId, out var entry))
            {
                entry.Pending = Math.Max(0, entry.Pending - 1);
                _byActivity.Remove(entry.Node);
            }
            else
            {
                while (_threads.Count >= _options.MaxThreads && _byActivity.First is { } oldest)
                {
                    _byActivity.RemoveFirst();
                    _threads.Remove(oldest.Value.Id);
                }

                entry = new ThreadEntry(step.ThreadId, step.TimestampUnixMs);
                entry.Node = new LinkedListNode<ThreadEntry>(entry);
                _threads[step.ThreadId] = entry;
            }

            entry.Add(step, sequence);
            _byActivity.AddLast(entry.Node);
        }
    }

    /// <summary>Reads the whole log back into the index (at start).</summary>
    private void Rebuild()
    {
        var started = Stopwatch.GetTimestamp();
        var from = _log.FirstSequence;
        var last = _log.LastSequence;
        long steps = 0;
        while (from <= last)
        {
            var records = _log.Read(from, 4096, 16L * 1024 * 1024);
            if (records.Count == 0)
            {
                break;
            }

            foreach (var record in records)
            {
                from = record.Sequence + 1;
                RunStep? step;
                try
                {
                    step = JsonSerializer.Deserialize(record.Data.Span, RunsJsonContext.Default.RunStep);
                }
                catch (JsonException)
                {
                    step = null;
                }

                if (step is null || step.ThreadId.Length == 0)
                {
                    RunsLog.Undecodable(_logger, record.Sequence);
                    continue;
                }

                Index(step, record.Sequence);
                steps++;
            }
        }

        RunsLog.Opened(_logger, Where, ThreadCount, steps, _log.FirstSequence, _log.LastSequence, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    // ---------------------------------------------------------------------------------------
    // Reading
    // ---------------------------------------------------------------------------------------

    /// <summary>Threads by last activity, newest first.</summary>
    public RunThreadList List(int offset, int limit)
    {
        var first = _log.FirstSequence;
        lock (_indexGate)
        {
            // Threads whose every step retention has removed are forgotten.
            var node = _byActivity.First;
            while (node is not null && node.Value.LastSequence < first)
            {
                var next = node.Next;
                _byActivity.Remove(node);
                _threads.Remove(node.Value.Id);
                node = next;
            }

            var result = new List<RunThreadSummary>(Math.Min(limit, _threads.Count));
            var skipped = 0;
            for (var n = _byActivity.Last; n is not null && result.Count < limit; n = n.Previous)
            {
                if (skipped++ < offset)
                {
                    continue;
                }

                result.Add(n.Value.Summary(first));
            }

            return new RunThreadList(result, _threads.Count, offset, Persistent);
        }
    }

    /// <summary>One thread's steps in order, or null when it is not recorded (or no longer).</summary>
    public RunThreadDetail? Get(string id)
    {
        long[] sequences;
        RunThreadSummary summary;
        var first = _log.FirstSequence;
        lock (_indexGate)
        {
            if (!_threads.TryGetValue(id, out var entry) || entry.LastSequence < first)
            {
                return null;
            }

            sequences = [.. entry.Sequences];
            summary = entry.Summary(first);
        }

        var steps = new List<RunStep>(sequences.Length);
        var i = Array.FindIndex(sequences, s => s >= first);
        while (i >= 0 && i < sequences.Length)
        {
            // A run of consecutive sequences is one read.
            var j = i + 1;
            while (j < sequences.Length && sequences[j] == sequences[j - 1] + 1 && j - i < 4096)
            {
                j++;
            }

            foreach (var record in _log.Read(sequences[i], j - i))
            {
                if (record.Sequence > sequences[j - 1])
                {
                    break;
                }

                if (Array.BinarySearch(sequences, i, j - i, record.Sequence) < 0)
                {
                    continue;
                }

                try
                {
                    if (JsonSerializer.Deserialize(record.Data.Span, RunsJsonContext.Default.RunStep) is { } step && step.ThreadId == id)
                    {
                        step.Seq = record.Sequence;
                        steps.Add(step);
                    }
                }
                catch (JsonException)
                {
                    RunsLog.Undecodable(_logger, record.Sequence);
                }
            }

            i = j;
        }

        // Events carry the publisher's timestamp and calls their start: the order shown is by time (ties by sequence).
        steps.Sort(static (a, b) => a.TimestampUnixMs != b.TimestampUnixMs ? a.TimestampUnixMs.CompareTo(b.TimestampUnixMs) : a.Seq.CompareTo(b.Seq));
        return new RunThreadDetail(summary.Id, summary.FirstUnixMs, summary.LastUnixMs, summary.Agents, summary.Events, summary.Calls, summary.Collab, summary.Errors, summary.Count, summary.Truncated, steps);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _bus.Observer -= _onEnvelope;
        _broker.CallObserver -= _onCall;
        _queue.Writer.TryComplete();
        try
        {
            await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // Past the bound: steps still queued are lost (the log keeps what it committed).
        }

        await _log.DisposeAsync().ConfigureAwait(false);
        if (_lockFile is not null)
        {
            await _lockFile.DisposeAsync().ConfigureAwait(false);
        }
    }

    private sealed class ThreadEntry(string id, long firstUnixMs)
    {
        public string Id { get; } = id;

        public LinkedListNode<ThreadEntry> Node { get; set; } = null!;

        public List<long> Sequences { get; } = [];

        public long FirstUnixMs { get; private set; } = firstUnixMs;

        public long LastUnixMs { get; private set; } = firstUnixMs;

        public long LastSequence => Sequences.Count == 0 ? 0 : Sequences[^1];

        public int Pending { get; set; }

        public int Events { get; private set; }

        public int Calls { get; private set; }

        public int Collab { get; private set; }

        public int Errors { get; private set; }

        public long NotKept { get; set; }

        public bool Truncated { get; set; }

        private readonly List<string> _agents = [];

        public void Add(RunStep step, long sequence)
        {
            Sequences.Add(sequence);
            FirstUnixMs = Math.Min(FirstUnixMs, step.TimestampUnixMs);
            LastUnixMs = Math.Max(LastUnixMs, step.EndUnixMs ?? step.TimestampUnixMs);
            switch (step.Kind)
            {
                case "call":
                    Calls++;
                    break;
                case "collab":
                    Collab++;
                    break;
                default:
                    Events++;
                    break;
            }

            if (step.IsError)
            {
                Errors++;
            }

            AddAgent(step.Sender);
            AddAgent(step.Target);
        }

        private void AddAgent(string agent)
        {
            if (agent.Length != 0 && _agents.Count < MaxAgentsPerThread && !_agents.Contains(agent, StringComparer.Ordinal))
            {
                _agents.Add(agent);
            }
        }

        public RunThreadSummary Summary(long firstHeld) => new(
            Id,
            FirstUnixMs,
            LastUnixMs,
            [.. _agents],
            Events,
            Calls,
            Collab,
            Errors,
            Sequences.Count,
            Truncated || (Sequences.Count != 0 && Sequences[0] < firstHeld));
    }
}
