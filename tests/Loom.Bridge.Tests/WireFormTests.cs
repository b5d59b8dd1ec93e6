using System.Buffers;
using Google.Protobuf;
using Loom.Bridge.Internal;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>Envelopes forwarded from the bytes they were published with (wire forms) decode to their current values.</summary>
public sealed class WireFormTests
{
    private static Envelope Sample(int i) => new()
    {
        Id = i % 2 == 0 ? "id-" + i : "",
        Topic = "orders.eu.created",
        Sender = i % 3 == 0 ? "spoofed-ü" : "",
        ThreadId = "t-1",
        TtlMs = 5000,
        HopCount = (uint)(i % 4),
        TimestampUnixMs = i % 5 == 0 ? 0 : 1_764_000_000_000 + i,
        DeadlineUnixMs = i % 7 == 0 ? -1 : 0, // a negative int64 is a 10-byte varint
        ContentType = "application/json",
        Payload = ByteString.CopyFrom(new byte[i * 5]),
        Traceparent = i % 2 == 1 ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : "",
        Tracestate = i % 6 == 1 ? "vendor=é" : "",
        Headers = { ["k"] = "v" + i },
    };

    [Fact]
    public void An_unchanged_envelope_is_written_as_the_bytes_it_came_with()
    {
        var bytes = Sample(4).ToByteArray();
        var envelope = Envelope.Parser.ParseFrom(bytes);
        envelope.AttachWireForm(bytes);
        Assert.True(envelope.TryGetWireForm(out var wire));
        Assert.Equal(bytes.Length, wire.Size);
        var written = new byte[wire.Size];
        wire.WriteTo(written);
        Assert.Equal(bytes, written);
    }

    [Fact]
    public void Fields_set_after_parsing_are_appended_and_win()
    {
        for (var i = 0; i < 60; i++)
        {
            var bytes = Sample(i).ToByteArray();
            var envelope = Envelope.Parser.ParseFrom(bytes);
            envelope.AttachWireForm(bytes);

            // What the bridge and the bus set: sender, id when empty, timestamp, deadline, hops, trace context.
            envelope.Sender = "agent-" + (i % 2 == 0 ? "é" : "a");
            if (envelope.Id.Length == 0)
            {
                envelope.Id = Guid.NewGuid().ToString("N");
            }

            envelope.TimestampUnixMs = envelope.TimestampUnixMs == 0 ? 1_764_000_000_123 : envelope.TimestampUnixMs;
            envelope.DeadlineUnixMs = envelope.TimestampUnixMs + 5000;
            envelope.HopCount++;
            if (i % 4 == 1)
            {
                envelope.Traceparent = "00-11111111111111111111111111111111-2222222222222222-01";
                envelope.Tracestate = i % 8 == 1 ? "" : "a=b";
            }

            Assert.True(envelope.TryGetWireForm(out var wire));
            var written = new byte[wire.Size];
            wire.WriteTo(written);
            Assert.Equal(envelope, Envelope.Parser.ParseFrom(written));
        }
    }

    [Fact]
    public void A_second_publication_or_a_clone_has_no_wire_form()
    {
        var bytes = Sample(2).ToByteArray();
        var envelope = Envelope.Parser.ParseFrom(bytes);
        envelope.AttachWireForm(bytes);
        Assert.False(envelope.Clone().HasWireForm);
        envelope.MarkPublished();
        Assert.True(envelope.HasWireForm);
        envelope.Topic = "orders.us.created"; // a change the wire form cannot show, then published again
        envelope.MarkPublished();
        Assert.False(envelope.TryGetWireForm(out _));
    }

    [Fact]
    public void The_frame_decoder_agrees_with_the_generated_parser()
    {
        var frame = new ClientFrame();
        for (var i = 0; i < 200; i++)
        {
            frame.Messages.Add(i % 10 == 3
                ? new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "c" + i, Subscription = new Subscription { Pattern = "a.>" } } }
                : new ClientMessage { Publish = Sample(i) });
        }

        frame.Messages.Add(new ClientMessage { Publish = Sample(1000) }); // over the wire-form size limit: serialized again
        frame.Messages.Add(new ClientMessage { Heartbeat = new HeartbeatPing() });
        var bytes = frame.ToByteArray();

        // One segment, and many small segments (as a pipe delivers a large frame).
        foreach (var sequence in new[] { new ReadOnlySequence<byte>(bytes), Segmented(bytes, 97) })
        {
            var decoded = ClientFrameDecoder.Decode(sequence);
            Assert.Equal(frame, decoded);
            Assert.True(decoded.Messages[0].Publish.HasWireForm);
            Assert.False(decoded.Messages[^2].Publish.HasWireForm);
        }

        // A publish whose envelope comes in two parts (protobuf merges them) goes to the generated parser.
        var first = new ClientMessage { Publish = new Envelope { Topic = "a.b" } }.ToByteArray();
        var second = new ClientMessage { Publish = new Envelope { ThreadId = "t" } }.ToByteArray();
        byte[] split = [0x0A, (byte)(first.Length + second.Length), .. first, .. second];
        var merged = ClientFrameDecoder.Decode(new ReadOnlySequence<byte>(split));
        Assert.Equal(ClientFrame.Parser.ParseFrom(split), merged);
        Assert.Equal("a.b", merged.Messages[0].Publish.Topic);
        Assert.Equal("t", merged.Messages[0].Publish.ThreadId);

        // Malformed bytes fail like the generated parser.
        Assert.Throws<InvalidProtocolBufferException>(() => ClientFrameDecoder.Decode(new ReadOnlySequence<byte>(bytes.AsMemory(0, bytes.Length - 3))));
        Assert.Throws<InvalidProtocolBufferException>(() => ClientFrameDecoder.Decode(new ReadOnlySequence<byte>([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])));
    }

    private static ReadOnlySequence<byte> Segmented(byte[] bytes, int size)
    {
        Segment? first = null, last = null;
        for (var offset = 0; offset < bytes.Length; offset += size)
        {
            var memory = bytes.AsMemory(offset, Math.Min(size, bytes.Length - offset));
            last = last is null ? first = new Segment(memory, 0) : last.Append(memory);
        }

        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
