using System.Buffers;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Loom.Core;
using Loom.Core.Internal;
using Loom.Protocol.V1;

namespace Loom.Benchmarks;

/// <summary>Encoding and decoding a frame of 1,024 deliveries of 100-byte envelopes (what the bridge writes and the SDK reads).</summary>
[MemoryDiagnoser]
public class EnvelopeCodecBenchmarks
{
    private ServerFrame _frame = null!;
    private byte[] _encoded = null!;
    private Envelope _envelope = null!;
    private byte[] _envelopeBytes = null!;
    private readonly ArrayBufferWriter<byte> _output = new(1 << 20);

    [GlobalSetup]
    public void Setup()
    {
        _envelope = new Envelope
        {
            Id = "0123456789abcdef0123456789abcdef",
            Topic = "orders.eu.created",
            Sender = "bench-publisher-1",
            Payload = ByteString.CopyFrom(new byte[100]),
            TimestampUnixMs = 1_764_000_000_000,
            DeadlineUnixMs = 1_764_000_300_000,
            HopCount = 1,
            Qos = QosClass.Batch,
        };
        _envelopeBytes = _envelope.ToByteArray();
        _frame = new ServerFrame();
        for (var i = 0; i < 1024; i++)
        {
            _frame.Messages.Add(new ServerMessage { Deliver = new Delivery { SubscriptionId = "5f0c2b6a9d8e4f7a8b1c2d3e4f5a6b7c", Envelope = _envelope } });
        }

        _encoded = _frame.ToByteArray();
    }

    [Benchmark(Description = "encode 1 envelope")]
    public int EncodeEnvelope()
    {
        _output.ResetWrittenCount();
        _envelope.WriteTo(_output);
        return _output.WrittenCount;
    }

    [Benchmark(Description = "decode 1 envelope")]
    public Envelope DecodeEnvelope() => Envelope.Parser.ParseFrom(_envelopeBytes);

    [Benchmark(Description = "encode frame of 1024 deliveries", OperationsPerInvoke = 1024)]
    public int EncodeFrame()
    {
        _output.ResetWrittenCount();
        var size = _frame.CalculateSize();
        GrpcFrames.WriteMessage(_output, _frame, size);
        return _output.WrittenCount;
    }

    [Benchmark(Description = "bridge hand-encoded frame of 1024 deliveries", OperationsPerInvoke = 1024)]
    public int EncodeFrameByHand()
    {
        _encoder.Reset();
        foreach (var message in _frame.Messages)
        {
            _encoder.AddDelivery(message.Deliver.SubscriptionId, message.Deliver.Envelope);
        }

        var length = _encoder.Length;
        _encoder.Reset();
        return length;
    }

    private readonly FrameEncoder _encoder = new();

    [Benchmark(Description = "decode frame of 1024 deliveries", OperationsPerInvoke = 1024)]
    public ServerFrame DecodeFrame() => ServerFrame.Parser.ParseFrom(new ReadOnlySequence<byte>(_encoded));
}

/// <summary>
/// Fan-out on the bridge: 1,024 envelopes, each delivered to 10 subscribers (10,240 deliveries encoded),
/// serialized for every delivery or once per envelope (<see cref="Envelope.TryGetSharedEncoding"/>).
/// </summary>
[MemoryDiagnoser]
public class FanOutEncodingBenchmarks
{
    private const int Subscribers = 10;
    private readonly FrameEncoder _encoder = new();
    private Envelope[] _envelopes = [];

    [Params(1, Subscribers)]
    public int ExpectedDeliveries { get; set; }

    [IterationSetup]
    public void Setup()
    {
        // Fresh envelopes per iteration, so the shared encoding is made (once per envelope) inside the measurement.
        _envelopes = Enumerable.Range(0, 1024).Select(i =>
        {
            var envelope = new Envelope { Id = "pub-" + i, Topic = "orders.eu.created", Sender = "bench-publisher-1", Payload = ByteString.CopyFrom(new byte[100]), TimestampUnixMs = 1_764_000_000_000, DeadlineUnixMs = 1_764_000_300_000, HopCount = 1 };
            envelope.PrepareDeliveries(ExpectedDeliveries);
            return envelope;
        }).ToArray();
    }

    [Benchmark(Description = "encode 1024 envelopes x 10 deliveries", OperationsPerInvoke = 1024 * Subscribers)]
    public int Encode()
    {
        var length = 0;
        for (var s = 0; s < Subscribers; s++)
        {
            foreach (var envelope in _envelopes)
            {
                _encoder.AddDelivery("5f0c2b6a9d8e4f7a8b1c2d3e4f5a6b7c", envelope);
            }

            length += _encoder.Length;
            _encoder.Reset();
        }

        return length;
    }
}

/// <summary>Topic matching: one pattern against one topic, and a trie of many subscriptions.</summary>
[MemoryDiagnoser]
public class TopicMatchingBenchmarks
{
    private readonly TopicTrie<string> _trie = new();
    private readonly List<string> _results = [];

    [GlobalSetup]
    public void Setup()
    {
        for (var i = 0; i < 1000; i++)
        {
            _trie.Add($"orders.r{i}.created", "exact" + i);
            _trie.Add($"thread.t{i}.>", "thread" + i);
        }

        _trie.Add("orders.*.created", "star");
        _trie.Add("orders.>", "rest");
    }

    [Benchmark(Description = "Topics.Matches wildcard")]
    public bool MatchesWildcard() => Topics.Matches("orders.*.created", "orders.eu.created");

    [Benchmark(Description = "Topics.Matches tail")]
    public bool MatchesTail() => Topics.Matches("thread.>", "thread.42.reply");

    [Benchmark(Description = "trie of 2,002 patterns: match")]
    public int TrieMatch()
    {
        _results.Clear();
        _trie.Match("orders.r500.created", _results);
        return _results.Count;
    }

    [Benchmark(Description = "validate topic")]
    public bool ValidateTopic() => Topics.IsValidTopic("orders.eu.created");

    [Benchmark(Description = "TopicGroups.GroupOf (derived)")]
    public string GroupOf() => Groups.GroupOf("thread.t42.reply");

    private static readonly TopicGroups Groups = new();
}

/// <summary>The bounded MPMC ring under every subscription, and a publish through the bus on one thread.</summary>
[MemoryDiagnoser]
public class QueueBenchmarks
{
    private readonly BoundedQueue<object> _queue = new(65_536);
    private readonly object _item = new();
    private EventBus _bus = null!;
    private EventSubscription _subscription = null!;
    private Envelope _envelope = null!;

    [GlobalSetup]
    public void Setup()
    {
        _bus = new EventBus();
        _subscription = _bus.Subscribe("bench.>", new SubscriptionOptions(QosClass.Normal));
        _envelope = new Envelope { Id = "e", Topic = "bench.q", Payload = ByteString.CopyFrom(new byte[100]) };
    }

    [GlobalCleanup]
    public void Cleanup() => _bus.Dispose();

    [Benchmark(Description = "ring enqueue + dequeue")]
    public bool EnqueueDequeue() => _queue.TryEnqueue(_item) && _queue.TryDequeue(out _);

    [Benchmark(Description = "ring 64 enqueues then 64 dequeues", OperationsPerInvoke = 64)]
    public int Burst()
    {
        for (var i = 0; i < 64; i++)
        {
            _queue.TryEnqueue(_item);
        }

        var n = 0;
        while (_queue.TryDequeue(out _))
        {
            n++;
        }

        return n;
    }

    [Benchmark(Description = "EventBus publish + TryRead (1 subscriber)")]
    public bool PublishAndRead()
    {
        _envelope.HopCount = 0;
        _envelope.DeadlineUnixMs = 0;
        _envelope.TimestampUnixMs = 0;
        var published = _bus.PublishAsync(_envelope);
        return published.IsCompletedSuccessfully && published.Result.Delivered == 1 && _subscription.TryRead(out _);
    }
}

/// <summary>Frame batching: gRPC length-prefixed framing of a batch, and reading messages back off a sequence.</summary>
[MemoryDiagnoser]
public class FrameBatchingBenchmarks
{
    private readonly ArrayBufferWriter<byte> _output = new(1 << 20);
    private ClientFrame _batch = null!;
    private ReadOnlySequence<byte> _stream;

    [Params(1, 64, 1024)]
    public int Messages { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _batch = new ClientFrame();
        var payload = ByteString.CopyFrom(new byte[100]);
        for (var i = 0; i < Messages; i++)
        {
            _batch.Messages.Add(new ClientMessage { Publish = new Envelope { Id = "p" + i, Topic = "orders.eu.created", Payload = payload } });
        }

        var writer = new ArrayBufferWriter<byte>();
        for (var i = 0; i < 16; i++)
        {
            GrpcFrames.WriteMessage(writer, _batch, _batch.CalculateSize());
        }

        _stream = new ReadOnlySequence<byte>(writer.WrittenMemory);
    }

    [Benchmark(Description = "frame a batch (size + write)")]
    public int WriteFrame()
    {
        _output.ResetWrittenCount();
        GrpcFrames.WriteMessage(_output, _batch, _batch.CalculateSize());
        return _output.WrittenCount;
    }

    [Benchmark(Description = "unframe + parse 16 batches", OperationsPerInvoke = 16)]
    public int ReadFrames()
    {
        var buffer = _stream;
        var messages = 0;
        while (GrpcFrames.TryReadMessage(ref buffer, 4 << 20, out var message))
        {
            messages += ClientFrame.Parser.ParseFrom(message).Messages.Count;
        }

        return messages;
    }
}
