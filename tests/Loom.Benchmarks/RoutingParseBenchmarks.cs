using System.Buffers;
using System.Text;
using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Benchmarks;

/// <summary>
/// What the bridge pays to read a published frame, and what a lazy reader of only the routing
/// fields (id, topic, ttl, deadline, hops, QoS) would pay instead: a frame of 1,024 publishes of
/// 100-byte envelopes as the .NET SDK sends it. The lazy reader here is a lower bound (it keeps
/// the payload and every other field as a slice of the frame, validates nothing else, and builds
/// no <see cref="Envelope"/>), so the difference between the two is the most that parsing only the
/// routing fields could save per event.
/// </summary>
[MemoryDiagnoser]
public class RoutingParseBenchmarks
{
    private ReadOnlySequence<byte> _frame;

    [GlobalSetup]
    public void Setup()
    {
        var frame = new ClientFrame();
        var payload = ByteString.CopyFrom(new byte[100]);
        for (var i = 0; i < 1024; i++)
        {
            frame.Messages.Add(new ClientMessage
            {
                Publish = new Envelope
                {
                    Id = Guid.NewGuid().ToString("N"),
                    Topic = "bench.pubsub.1",
                    ThreadId = "t-1",
                    Qos = QosClass.Batch,
                    ContentType = "application/octet-stream",
                    Payload = payload,
                },
            });
        }

        _frame = new ReadOnlySequence<byte>(frame.ToByteArray());
    }

    [Benchmark(Baseline = true, Description = "generated parser: ClientFrame with 1,024 Envelopes", OperationsPerInvoke = 1024)]
    public int FullParse() => ClientFrame.Parser.ParseFrom(_frame).Messages.Count;

    [Benchmark(Description = "routing fields only (topic string, id string, numbers; the rest as slices)", OperationsPerInvoke = 1024)]
    public int RoutingFieldsOnly()
    {
        var bytes = _frame.FirstSpan;
        var count = 0;
        var offset = 0;
        while (offset < bytes.Length)
        {
            // ClientFrame.messages (1) -> ClientMessage.publish (1) -> Envelope
            offset = Field(bytes, offset, out _, out var message);
            Field(bytes[message], 0, out _, out var envelopeRange);
            var envelope = bytes[message][envelopeRange];
            var routing = ReadRouting(envelope);
            count += routing.Topic.Length > 0 ? 1 : 0;
        }

        return count;
    }

    private readonly record struct Routing(string Id, string Topic, uint TtlMs, long DeadlineUnixMs, uint HopCount, int Qos, int PayloadStart, int PayloadLength);

    private static Routing ReadRouting(ReadOnlySpan<byte> envelope)
    {
        string id = "", topic = "";
        uint ttl = 0, hops = 0;
        long deadline = 0;
        int qos = 0, payloadStart = 0, payloadLength = 0;
        var offset = 0;
        while (offset < envelope.Length)
        {
            var tag = (int)ReadVarint(envelope, ref offset);
            var field = tag >> 3;
            if ((tag & 7) == 2)
            {
                var length = (int)ReadVarint(envelope, ref offset);
                switch (field)
                {
                    case 1:
                        id = Encoding.UTF8.GetString(envelope.Slice(offset, length));
                        break;
                    case 2:
                        topic = Encoding.UTF8.GetString(envelope.Slice(offset, length));
                        break;
                    case 13:
                        payloadStart = offset;
                        payloadLength = length;
                        break;
                    default:
                        break;
                }

                offset += length;
            }
            else
            {
                var value = ReadVarint(envelope, ref offset);
                switch (field)
                {
                    case 7: ttl = (uint)value; break;
                    case 8: deadline = (long)value; break;
                    case 9: hops = (uint)value; break;
                    case 10: qos = (int)value; break;
                    default: break;
                }
            }
        }

        return new Routing(id, topic, ttl, deadline, hops, qos, payloadStart, payloadLength);
    }

    private static int Field(ReadOnlySpan<byte> bytes, int offset, out int tag, out Range value)
    {
        tag = (int)ReadVarint(bytes, ref offset);
        var length = (int)ReadVarint(bytes, ref offset);
        value = offset..(offset + length);
        return offset + length;
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> bytes, ref int offset)
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            var b = bytes[offset++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                break;
            }
        }

        return value;
    }
}
