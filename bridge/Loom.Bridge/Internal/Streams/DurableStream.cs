using System.Collections.Concurrent;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Streams;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Streams;

/// <summary>
/// One durable stream: its log, its dedup window of envelope ids (rebuilt from the log when the
/// bridge starts, so it survives a restart) and its named consumers.
/// </summary>
internal sealed class DurableStream : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Task<long>> _recentIds = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<(string Id, long AtMs)> _idOrder = new();
    private readonly ConcurrentDictionary<string, DurableConsumer> _consumers = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _consumerDir;
    private readonly long _windowMs;

    private DurableStream(StreamConfig config, IStreamLog log, string directory, TimeProvider time, ILogger logger)
    {
        Config = config;
        Log = log;
        _time = time;
        _logger = logger;
        _consumerDir = Path.Combine(directory, "consumers");
        _windowMs = (long)config.DuplicateWindow.TotalMilliseconds;
    }

    public StreamConfig Config { get; }

    public string Name => Config.Name;

    public IStreamLog Log { get; }

    /// <summary>Publishes dead letters (set by the host: to the bus, and to a stream that captures the topic).</summary>
    public required Func<Envelope, ValueTask> PublishDeadLetter { get; init; }

    public IEnumerable<DurableConsumer> Consumers => _consumers.Values;

    public static DurableStream Open(StreamConfig config, string dataDirectory, TimeProvider time, ILogger logger, Func<Envelope, ValueTask> deadLetter)
    {
        var directory = Path.Combine(dataDirectory, "streams", config.Name);
        var log = FileStreamLog.Open(
            Path.Combine(directory, "log"),
            new StreamLogOptions { MaxAge = config.MaxAge, MaxBytes = config.MaxBytes, MaxCount = config.MaxEvents, Fsync = config.Fsync, SegmentBytes = config.SegmentBytes },
            logger,
            time);
        var stream = new DurableStream(config, log, directory, time, logger) { PublishDeadLetter = deadLetter };
        stream.RebuildDedupWindow();
        stream.LoadConsumers();
        StreamsLog.StreamOpened(logger, config.Name, string.Join(", ", config.Subjects), log.FirstSequence, log.LastSequence, stream._consumers.Count, stream._recentIds.Count);
        return stream;
    }

    public bool Captures(string topic)
    {
        foreach (var subject in Config.Subjects)
        {
            if (Topics.Matches(subject, topic))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Stores the envelope (its sequence is taken at once, in call order) and completes when it is
    /// persisted. A duplicate id within the window completes with the first copy's sequence.
    /// </summary>
    public (Task<long> Stored, bool Duplicate) Append(Envelope envelope)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        Prune(now);
        if (_windowMs > 0 && _recentIds.TryGetValue(envelope.Id, out var existing))
        {
            return (existing, true);
        }

        // Stored events do not expire by TTL: the stream's retention applies.
        var stored = envelope.Clone();
        stored.TtlMs = 0;
        stored.DeadlineUnixMs = 0;
        if (stored.TimestampUnixMs == 0)
        {
            stored.TimestampUnixMs = now;
        }

        var task = Log.AppendAsync(stored.ToByteArray(), now).AsTask();
        if (_windowMs > 0)
        {
            if (!_recentIds.TryAdd(envelope.Id, task) && _recentIds.TryGetValue(envelope.Id, out existing))
            {
                return (existing, true); // a concurrent publish of the same id won; this copy is stored twice at worst
            }

            _idOrder.Enqueue((envelope.Id, now));
        }

        return (task, false);
    }

    private void Prune(long now)
    {
        while (_idOrder.TryPeek(out var head) && head.AtMs < now - _windowMs && _idOrder.TryDequeue(out head))
        {
            _recentIds.TryRemove(head.Id, out _);
        }
    }

    private void RebuildDedupWindow()
    {
        if (_windowMs <= 0)
        {
            return;
        }

        var from = Log.SequenceAt(_time.GetUtcNow().ToUnixTimeMilliseconds() - _windowMs);
        while (true)
        {
            var batch = Log.Read(from, 4096);
            if (batch.Count == 0)
            {
                break;
            }

            foreach (var record in batch)
            {
                if (TryDecode(record, out var envelope) && !string.IsNullOrEmpty(envelope.Id))
                {
                    _recentIds[envelope.Id] = Task.FromResult(record.Sequence);
                    _idOrder.Enqueue((envelope.Id, record.TimestampUnixMs));
                }
            }

            from = batch[^1].Sequence + 1;
        }
    }

    public bool TryDecode(StreamRecord record, out Envelope envelope)
    {
        try
        {
            envelope = Envelope.Parser.ParseFrom(record.Data.Span);
            return true;
        }
        catch (InvalidProtocolBufferException)
        {
            StreamsLog.UndecodableEvent(_logger, Name, record.Sequence);
            envelope = null!;
            return false;
        }
    }

    /// <summary>Up to <paramref name="max"/> events from <paramref name="from"/>, within <paramref name="maxBytes"/>.</summary>
    public List<StoredEvent> ReadEvents(long from, int max, long maxBytes)
    {
        var events = new List<StoredEvent>();
        foreach (var record in Log.Read(from, max, maxBytes))
        {
            if (TryDecode(record, out var envelope))
            {
                events.Add(new StoredEvent { Sequence = (ulong)record.Sequence, StoredUnixMs = record.TimestampUnixMs, Envelope = envelope });
            }
        }

        return events;
    }

    private void LoadConsumers()
    {
        Directory.CreateDirectory(_consumerDir);
        foreach (var path in Directory.EnumerateFiles(_consumerDir, "*.json"))
        {
            if (DurableConsumer.Load(path, this, _time, _logger) is { } consumer)
            {
                _consumers[consumer.Name] = consumer;
            }
        }
    }

    public DurableConsumer GetOrCreateConsumer(ConsumerConfig config)
    {
        return _consumers.AddOrUpdate(
            config.Name,
            _ => DurableConsumer.Create(Path.Combine(_consumerDir, config.Name + ".json"), config, this, _time, _logger),
            (_, existing) =>
            {
                existing.Reconfigure(config);
                return existing;
            });
    }

    public bool TryGetConsumer(string name, out DurableConsumer consumer) => _consumers.TryGetValue(name, out consumer!);

    public async ValueTask DeleteConsumerAsync(string name)
    {
        if (_consumers.TryRemove(name, out var consumer))
        {
            await consumer.DisposeAsync();
            File.Delete(consumer.StatePath);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var consumer in _consumers.Values)
        {
            await consumer.DisposeAsync();
        }

        await Log.DisposeAsync();
    }
}
