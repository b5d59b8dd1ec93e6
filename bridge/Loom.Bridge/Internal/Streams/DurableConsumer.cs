using System.Text.Json;
using System.Threading.Channels;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Streams;

/// <summary>
/// A named consumer of a durable stream: where it is (every sequence below the first pending one,
/// and below <c>next</c> when none is pending, is done), what is delivered and not acknowledged
/// (at most max_ack_pending; each with its delivery count and when it is due again). Its state is
/// saved (write, fsync, rename) within 100 ms of a change, so after a crash it resumes from at
/// most that long ago: what it had not saved as acknowledged is delivered again.
/// </summary>
internal sealed class DurableConsumer : IAsyncDisposable
{
    public const uint DefaultAckWaitMs = 30_000;
    public const uint DefaultMaxDeliver = 5;
    public const uint DefaultMaxAckPending = 1000;
    private static readonly TimeSpan SaveInterval = TimeSpan.FromMilliseconds(100);

    private readonly object _gate = new();
    private readonly DurableStream _stream;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly SortedDictionary<long, Pending> _pending = [];
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly ITimer _saveTimer;
    private ConsumerConfig _config;
    private long _next;
    private bool _dirty;
    private Attachment? _attachment;
    private int _disposed;

    private sealed class Pending
    {
        public int Deliveries;
        public long DueMs;
    }

    private sealed record Attachment(object Owner, Func<ServerMessage, CancellationToken, ValueTask> Send, CancellationTokenSource Cts)
    {
        public Task Loop { get; set; } = Task.CompletedTask;
    }

    private DurableConsumer(string path, ConsumerConfig config, long next, DurableStream stream, TimeProvider time, ILogger logger)
    {
        StatePath = path;
        _config = Normalize(config, stream);
        _next = next;
        _stream = stream;
        _time = time;
        _logger = logger;
        _saveTimer = time.CreateTimer(_ => SaveIfDirty(), null, SaveInterval, SaveInterval);
    }

    public string Name => _config.Name;

    public string StatePath { get; }

    public bool IsAttached
    {
        get { lock (_gate) { return _attachment is not null; } }
    }

    private static ConsumerConfig Normalize(ConsumerConfig config, DurableStream stream)
    {
        var c = config.Clone();
        c.Stream = stream.Name;
        c.AckWaitMs = c.AckWaitMs == 0 ? DefaultAckWaitMs : c.AckWaitMs;
        c.MaxDeliver = c.MaxDeliver == 0 ? DefaultMaxDeliver : c.MaxDeliver;
        c.MaxAckPending = c.MaxAckPending == 0 ? DefaultMaxAckPending : c.MaxAckPending;
        if (string.IsNullOrEmpty(c.DeadLetterTopic))
        {
            c.DeadLetterTopic = $"loom.dead.{stream.Name}.{c.Name}";
        }

        return c;
    }

    /// <summary>Checks a consumer configuration from the wire; the message says what to fix.</summary>
    public static InvalidParamsException? Check(ConsumerConfig config)
    {
        if (string.IsNullOrEmpty(config.Name) || config.Name.Length > 64 || !config.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            return new InvalidParamsException($"Consumer name '{config.Name}' is not valid: use 1 to 64 letters, digits, '-' or '_'.", "/config/name");
        }

        if (!string.IsNullOrEmpty(config.Filter) && !Topics.IsValidPattern(config.Filter))
        {
            return new InvalidParamsException($"Consumer filter '{config.Filter}' is not a valid topic pattern.", "/config/filter");
        }

        if (!string.IsNullOrEmpty(config.DeadLetterTopic) && !Topics.IsValidTopic(config.DeadLetterTopic))
        {
            return new InvalidParamsException($"Dead-letter topic '{config.DeadLetterTopic}' is not a valid topic (no wildcards).", "/config/dead_letter_topic");
        }

        if (config.MaxAckPending > 100_000)
        {
            return new InvalidParamsException($"max_ack_pending is {config.MaxAckPending}; at most 100000.", "/config/max_ack_pending");
        }

        return null;
    }

    public static DurableConsumer Create(string path, ConsumerConfig config, DurableStream stream, TimeProvider time, ILogger logger)
    {
        var log = stream.Log;
        var start = config.Deliver switch
        {
            DeliverPolicy.New => log.LastSequence + 1,
            DeliverPolicy.BySequence => Math.Max((long)config.StartSequence, 1),
            DeliverPolicy.ByTime => log.SequenceAt(config.StartUnixMs),
            _ => log.FirstSequence,
        };
        var consumer = new DurableConsumer(path, config, start, stream, time, logger);
        consumer._dirty = true;
        consumer.SaveIfDirty();
        return consumer;
    }

    public static DurableConsumer? Load(string path, DurableStream stream, TimeProvider time, ILogger logger)
    {
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = document.RootElement;
            var config = new ConsumerConfig
            {
                Name = root.GetProperty("name").GetString() ?? "",
                Filter = root.GetProperty("filter").GetString() ?? "",
                AckWaitMs = root.GetProperty("ack_wait_ms").GetUInt32(),
                MaxDeliver = root.GetProperty("max_deliver").GetUInt32(),
                MaxAckPending = root.GetProperty("max_ack_pending").GetUInt32(),
                DeadLetterTopic = root.GetProperty("dead_letter_topic").GetString() ?? "",
            };
            var consumer = new DurableConsumer(path, config, root.GetProperty("next").GetInt64(), stream, time, logger);
            foreach (var item in root.GetProperty("pending").EnumerateArray())
            {
                consumer._pending[item[0].GetInt64()] = new Pending { Deliveries = item[1].GetInt32(), DueMs = 0 };
            }

            return consumer;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IOException)
        {
            StreamsLog.ConsumerStateUnreadable(logger, path, ex.Message);
            return null;
        }
    }

    public void Reconfigure(ConsumerConfig config)
    {
        lock (_gate)
        {
            _config = Normalize(config, _stream);
            _dirty = true;
        }

        Signal();
    }

    public ConsumerInfo Info()
    {
        lock (_gate)
        {
            return new ConsumerInfo
            {
                Config = _config.Clone(),
                AckFloor = (ulong)Math.Max(0, AckFloor()),
                NextSequence = (ulong)_next,
                Pending = (uint)_pending.Count,
                StreamLastSequence = (ulong)_stream.Log.LastSequence,
            };
        }
    }

    private long AckFloor() => _pending.Count > 0 ? _pending.Keys.First() - 1 : _next - 1;

    /// <summary>Starts delivering to <paramref name="owner"/> (taking over from any earlier attachment); what was pending is due at once.</summary>
    public void Attach(object owner, Func<ServerMessage, CancellationToken, ValueTask> send)
    {
        var attachment = new Attachment(owner, send, new CancellationTokenSource());
        Attachment? previous;
        lock (_gate)
        {
            previous = _attachment;
            _attachment = attachment;
            foreach (var pending in _pending.Values)
            {
                pending.DueMs = 0;
            }
        }

        previous?.Cts.Cancel();
        attachment.Loop = Task.Run(async () =>
        {
            if (previous is not null)
            {
                // One delivery loop at a time: the one taken over from ends first.
                await previous.Loop.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            await RunAsync(attachment);
        });
    }

    public void Detach(object owner)
    {
        Attachment? current;
        lock (_gate)
        {
            current = _attachment;
            if (current is null || !ReferenceEquals(current.Owner, owner))
            {
                return;
            }

            _attachment = null;
        }

        current.Cts.Cancel();
    }

    public void Acknowledge(IEnumerable<ulong> sequences, AckKind kind, uint delayMs)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        lock (_gate)
        {
            foreach (var s in sequences)
            {
                var sequence = (long)s;
                if (!_pending.TryGetValue(sequence, out var pending))
                {
                    continue; // already acknowledged, or not delivered: nothing to do
                }

                switch (kind)
                {
                    case AckKind.Nak:
                        pending.DueMs = now + delayMs;
                        break;
                    case AckKind.InProgress:
                        pending.DueMs = now + _config.AckWaitMs;
                        break;
                    default: // Ack, Terminate, Unspecified
                        _pending.Remove(sequence);
                        break;
                }
            }

            _dirty = true;
        }

        Signal();
    }

    private void Signal() => _wake.Writer.TryWrite(true);

    private async Task RunAsync(Attachment attachment)
    {
        var token = attachment.Cts.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                var sent = await DeliverDueAsync(attachment, token) + await DeliverNewAsync(attachment, token);
                if (sent > 0)
                {
                    continue;
                }

                long room;
                long waitMs;
                lock (_gate)
                {
                    room = _config.MaxAckPending - _pending.Count;
                    var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
                    waitMs = _pending.Count == 0 ? 60_000 : Math.Clamp(_pending.Values.Min(p => p.DueMs) - now, 1, 60_000);
                }

                using var round = CancellationTokenSource.CreateLinkedTokenSource(token);
                var waits = new List<Task> { _wake.Reader.WaitToReadAsync(round.Token).AsTask(), Task.Delay(TimeSpan.FromMilliseconds(waitMs), _time, round.Token) };
                if (room > 0)
                {
                    waits.Add(_stream.Log.WaitForAsync(_next, round.Token));
                }

                await Task.WhenAny(waits);
                _wake.Reader.TryRead(out _);
                await round.CancelAsync();
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Detached.
        }
        catch (Exception ex)
        {
            StreamsLog.ConsumerFailed(_logger, ex, Name, _stream.Name);
            lock (_gate)
            {
                if (ReferenceEquals(_attachment, attachment))
                {
                    _attachment = null;
                }
            }
        }
    }

    private async Task<int> DeliverDueAsync(Attachment attachment, CancellationToken token)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var due = new List<(long Sequence, int Deliveries)>();
        var dead = new List<(long Sequence, int Deliveries)>();
        string deadTopic;
        lock (_gate)
        {
            deadTopic = _config.DeadLetterTopic;
            foreach (var (sequence, pending) in _pending)
            {
                if (pending.DueMs > now)
                {
                    continue;
                }

                if (pending.Deliveries >= _config.MaxDeliver)
                {
                    dead.Add((sequence, pending.Deliveries));
                }
                else
                {
                    pending.Deliveries++;
                    pending.DueMs = now + _config.AckWaitMs;
                    due.Add((sequence, pending.Deliveries));
                }
            }

            foreach (var (sequence, _) in dead)
            {
                _pending.Remove(sequence);
                _dirty = true;
            }
        }

        foreach (var (sequence, deliveries) in dead)
        {
            var record = _stream.Log.Read(sequence, 1);
            if (record.Count == 1 && record[0].Sequence == sequence && _stream.TryDecode(record[0], out var envelope))
            {
                var letter = envelope.Clone();
                letter.Id = $"{_stream.Name}.{Name}.{sequence}";
                letter.Topic = deadTopic;
                letter.HopCount = 0;
                letter.Headers["loom-dead-topic"] = envelope.Topic;
                letter.Headers["loom-dead-stream"] = _stream.Name;
                letter.Headers["loom-dead-consumer"] = Name;
                letter.Headers["loom-dead-sequence"] = sequence.ToString(System.Globalization.CultureInfo.InvariantCulture);
                letter.Headers["loom-dead-deliveries"] = deliveries.ToString(System.Globalization.CultureInfo.InvariantCulture);
                await _stream.PublishDeadLetter(letter);
                StreamsLog.DeadLettered(_logger, Name, _stream.Name, sequence, deliveries, deadTopic);
            }
        }

        var sent = 0;
        foreach (var (sequence, deliveries) in due)
        {
            var record = _stream.Log.Read(sequence, 1);
            if (record.Count == 1 && record[0].Sequence == sequence && _stream.TryDecode(record[0], out var envelope))
            {
                await attachment.Send(Delivery(sequence, deliveries, envelope), token);
                sent++;
            }
            else
            {
                lock (_gate)
                {
                    _pending.Remove(sequence); // removed by retention meanwhile
                    _dirty = true;
                }
            }
        }

        return sent + dead.Count;
    }

    private async Task<int> DeliverNewAsync(Attachment attachment, CancellationToken token)
    {
        int room;
        string filter;
        lock (_gate)
        {
            room = (int)_config.MaxAckPending - _pending.Count;
            filter = _config.Filter;
        }

        if (room <= 0 || _next > _stream.Log.LastSequence)
        {
            return 0;
        }

        var records = _stream.Log.Read(_next, Math.Min(room, 256), 1024 * 1024);
        var sent = 0;
        foreach (var record in records)
        {
            var deliver = _stream.TryDecode(record, out var envelope) && (filter.Length == 0 || Topics.Matches(filter, envelope.Topic));
            lock (_gate)
            {
                _next = record.Sequence + 1;
                _dirty = true;
                if (deliver)
                {
                    _pending[record.Sequence] = new Pending { Deliveries = 1, DueMs = _time.GetUtcNow().ToUnixTimeMilliseconds() + _config.AckWaitMs };
                }
            }

            if (deliver)
            {
                await attachment.Send(Delivery(record.Sequence, 1, envelope), token);
                sent++;
            }
        }

        return Math.Max(sent, records.Count > 0 ? 1 : 0);
    }

    private ServerMessage Delivery(long sequence, int deliveries, Envelope envelope) => new()
    {
        Deliver = new Delivery
        {
            Consumer = Name,
            Stream = _stream.Name,
            StreamSequence = (ulong)sequence,
            DeliveryCount = (uint)deliveries,
            Envelope = envelope,
        },
    };

    /// <summary>Writes the state when it changed: a temporary file, fsync, then rename over the old one.</summary>
    public void SaveIfDirty()
    {
        byte[] json;
        lock (_gate)
        {
            if (!_dirty)
            {
                return;
            }

            _dirty = false;
            using var buffer = new MemoryStream();
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                writer.WriteString("name", _config.Name);
                writer.WriteString("filter", _config.Filter);
                writer.WriteNumber("ack_wait_ms", _config.AckWaitMs);
                writer.WriteNumber("max_deliver", _config.MaxDeliver);
                writer.WriteNumber("max_ack_pending", _config.MaxAckPending);
                writer.WriteString("dead_letter_topic", _config.DeadLetterTopic);
                writer.WriteNumber("next", _next);
                writer.WriteStartArray("pending");
                foreach (var (sequence, pending) in _pending)
                {
                    writer.WriteStartArray();
                    writer.WriteNumberValue(sequence);
                    writer.WriteNumberValue(pending.Deliveries);
                    writer.WriteEndArray();
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            json = buffer.ToArray();
        }

        try
        {
            var temp = StatePath + ".tmp";
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 4096))
            {
                file.Write(json);
                file.Flush(flushToDisk: true);
            }

            File.Move(temp, StatePath, overwrite: true);
        }
        catch (IOException ex)
        {
            StreamsLog.ConsumerSaveFailed(_logger, ex, Name, _stream.Name);
            lock (_gate)
            {
                _dirty = true;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        Attachment? current;
        lock (_gate)
        {
            current = _attachment;
            _attachment = null;
        }

        if (current is not null)
        {
            await current.Cts.CancelAsync();
            await current.Loop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await _saveTimer.DisposeAsync();
        SaveIfDirty();
    }
}
