using Google.Protobuf;
using Loom.Protocol.V1;
using CsCheck;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>The hand codec of envelopes and client frames against the generated code, on random input.</summary>
public sealed class EnvelopeCodecTests
{
    private static readonly Gen<string> Text = Gen.OneOf(
        Gen.Const(""),
        Gen.OneOf("orders.eu.created", "bench.pubsub.r1", "agent-7", "application/json", "_loom.reply.x"),
        Gen.String[Gen.Char.AlphaNumeric, 1, 40],
        Gen.String[Gen.Char, 0, 20], // any UTF-16 unit, lone surrogates included
        Gen.String[Gen.Char['é', 'ü'], 1, 50],
        Gen.Const("emoji 😀 and 日本"),
        Gen.String[Gen.Char.AlphaNumeric, 120, 300]); // past the cache's bound

    private static readonly Gen<Envelope> Envelopes =
        Gen.Select(Gen.Select(Text, Text, Text, Text, Text, Text),
                   Gen.Select(Gen.UInt, Gen.Long, Gen.UInt, Gen.Int[-3, 5], Gen.Long, Text),
                   Gen.Select(Gen.Byte.Array[0, 300], Gen.Dictionary(Gen.String[Gen.Char.AlphaNumeric, 1, 5], Text)[0, 2], Text, Text, Gen.Int[0, 4]))
        .Select((s, n, r) =>
        {
            var envelope = new Envelope
            {
                Id = s.Item1,
                Topic = s.Item2,
                Sender = s.Item3,
                ThreadId = s.Item4,
                CorrelationId = s.Item5,
                ReplyTo = s.Item6,
                TtlMs = n.Item1,
                DeadlineUnixMs = n.Item2,
                HopCount = n.Item3,
                Qos = (QosClass)n.Item4,
                TimestampUnixMs = n.Item5,
                ContentType = n.Item6,
                Payload = ByteString.CopyFrom(r.Item1),
                Traceparent = r.Item3,
                Tracestate = r.Item4,
            };
            if (r.Item5 == 0)
            {
                envelope.Headers.Add(r.Item2);
            }

            if (r.Item5 == 1)
            {
                // A field this build does not know (number 99), as a newer peer would send.
                envelope = Envelope.Parser.ParseFrom([.. envelope.ToByteArray(), 0x9A, 0x06, 0x02, 0x68, 0x69]);
            }

            return envelope;
        });

    [Fact]
    public void Writes_the_bytes_the_generated_code_writes()
    {
        Envelopes.Sample(envelope =>
        {
            var size = EnvelopeCodec.Size(envelope);
            Assert.Equal(envelope.CalculateSize(), size);
            var bytes = new byte[size];
            EnvelopeCodec.Write(envelope, size, bytes);
            Assert.Equal(envelope.ToByteArray(), bytes);
        }, iter: 5000);
    }

    [Fact]
    public void Reads_what_the_generated_parser_reads()
    {
        Envelopes.Sample(envelope =>
        {
            var bytes = envelope.ToByteArray();
            Assert.Equal(Envelope.Parser.ParseFrom(bytes), EnvelopeCodec.Parse(bytes));
        }, iter: 5000);
    }

    [Fact]
    public void Damaged_bytes_are_read_or_refused_as_the_generated_parser_does()
    {
        Gen.Select(Envelopes, Gen.Int[0, 1000], Gen.Byte, Gen.Int[0, 2]).Sample((envelope, at, value, how) =>
        {
            var bytes = envelope.ToByteArray();
            if (bytes.Length == 0)
            {
                return;
            }

            var i = at % bytes.Length;
            bytes = how switch
            {
                0 => [.. bytes[..i], value, .. bytes[(i + 1)..]], // one byte changed
                1 => bytes[..i],                                   // cut short
                _ => [.. bytes[..i], value, .. bytes[i..]],        // one byte inserted
            };
            Envelope? expected = null, actual = null;
            Exception? expectedError = null, actualError = null;
            try { expected = Envelope.Parser.ParseFrom(bytes); } catch (InvalidProtocolBufferException ex) { expectedError = ex; }
            try { actual = EnvelopeCodec.Parse(bytes); } catch (InvalidProtocolBufferException ex) { actualError = ex; }
            Assert.Equal(expectedError is null, actualError is null);
            Assert.Equal(expected, actual);
        }, iter: 20000);
    }

    [Fact]
    public void A_repeated_topic_is_one_string_and_a_frame_reads_as_the_generated_parser_reads_it()
    {
        var frame = new ClientFrame();
        for (var i = 0; i < 50; i++)
        {
            frame.Messages.Add(new ClientMessage { Publish = new Envelope { Id = "e" + i, Topic = "orders.eu.created", Payload = ByteString.CopyFromUtf8("p" + i), Qos = QosClass.Batch } });
            if (i % 10 == 0)
            {
                frame.Messages.Add(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "r" + i } });
                frame.Messages.Add(new ClientMessage { Heartbeat = new HeartbeatPing() });
            }
        }

        var bytes = frame.ToByteArray();
        var decoded = ClientFrameDecoder.Decode(bytes);
        Assert.Equal(ClientFrame.Parser.ParseFrom(bytes), decoded);
        var topics = decoded.Messages.Where(m => m.KindCase == ClientMessage.KindOneofCase.Publish).Select(m => m.Publish.Topic).ToList();
        Assert.All(topics, topic => Assert.Same(topics[0], topic));

        // A frame the generated parser refuses is refused the same way.
        Assert.Throws<InvalidProtocolBufferException>(() => ClientFrameDecoder.Decode(bytes.AsSpan(0, bytes.Length - 3)));
    }
}
