using System.Buffers;
using Google.Protobuf;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>Envelopes serialized once for many deliveries, and the SDK's frame decoder.</summary>
public sealed class FrameCodecTests
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
    public void An_envelope_for_several_subscriptions_is_serialized_once_and_a_new_publication_serializes_again()
    {
        var envelope = Sample(3);
        envelope.PrepareDeliveries(1);
        Assert.False(envelope.TryGetSharedEncoding(out _)); // one delivery: nothing to share

        envelope.PrepareDeliveries(3);
        Assert.True(envelope.TryGetSharedEncoding(out var first));
        Assert.True(envelope.HasSharedEncoding);
        Assert.False(envelope.Clone().HasSharedEncoding);
        Assert.True(envelope.TryGetSharedEncoding(out var again));
        Assert.Same(first, again);
        Assert.Equal(envelope.ToByteArray(), first);
        Assert.True(envelope.TryGetSharedEncoding(out _));
        Assert.False(envelope.HasSharedEncoding); // the third and last delivery took them: not kept any longer

        // Deliveries written from the shared bytes are what the generated code writes.
        envelope.PrepareDeliveries(3);
        var encoder = new FrameEncoder();
        var expected = new ServerFrame();
        for (var i = 0; i < 3; i++)
        {
            encoder.AddDelivery("sub-" + i, envelope);
            expected.Messages.Add(new ServerMessage { Deliver = new Delivery { SubscriptionId = "sub-" + i, Envelope = envelope } });
        }

        Assert.Equal(expected.ToByteArray(), encoder.Written.ToArray());

        // Changed and published again: the bytes follow.
        envelope.Topic = "orders.us.created";
        envelope.HopCount++;
        envelope.PrepareDeliveries(2);
        Assert.True(envelope.TryGetSharedEncoding(out var changed));
        Assert.Equal(envelope, Envelope.Parser.ParseFrom(changed));

        // An encoder still serializing for the earlier publication cannot hand its bytes to the next one.
        envelope.PrepareDeliveries(2);
        var stale = envelope.ToByteArray();
        envelope.HopCount++;
        envelope.PrepareDeliveries(2);
        Assert.True(envelope.TryGetSharedEncoding(out var current));
        Assert.NotEqual(stale, current);
        Assert.Equal(envelope.HopCount, Envelope.Parser.ParseFrom(current).HopCount);

        // Large envelopes are not kept (they would live on the large object heap).
        var large = new Envelope { Topic = "a.b", Payload = ByteString.CopyFrom(new byte[70_000]) };
        large.PrepareDeliveries(5);
        Assert.False(large.TryGetSharedEncoding(out _));
    }

    [Fact]
    public void The_server_frame_decoder_agrees_with_the_generated_parser_and_reuses_wrappers()
    {
        var encoder = new FrameEncoder();
        var expected = new ServerFrame();
        for (var i = 0; i < 400; i++)
        {
            var subscription = i < 150 ? "sub-a" : i % 2 == 0 ? "sub-ü" : "sub-b";
            if (i % 50 == 7)
            {
                var ack = new ServerMessage { Ack = new Ack { CorrelationId = "c" + i, SubscriptionId = subscription } };
                encoder.AddMessage(ack);
                expected.Messages.Add(ack);
                continue;
            }

            encoder.AddDelivery(subscription, Sample(i));
            expected.Messages.Add(new ServerMessage { Deliver = new Delivery { SubscriptionId = subscription, Envelope = Sample(i) } });
        }

        var bytes = encoder.Written.ToArray();
        var decoder = new ServerFrameDecoder();
        var first = decoder.Decode(Segmented(bytes, 61));
        Assert.Equal(expected, first);
        var kept = first.Messages[0].Deliver.Envelope;
        var firstWrapper = first.Messages[0];

        // The next frame reuses the wrappers; the envelopes taken from the first stay as they were.
        var second = decoder.Decode(new ReadOnlySequence<byte>(bytes));
        Assert.Equal(expected, second);
        Assert.Same(firstWrapper, second.Messages[0]);
        Assert.Equal(Sample(0), kept);
        Assert.NotSame(kept, second.Messages[0].Deliver.Envelope);

        // Deliveries whose fields come in another order, or an empty frame, still decode.
        var reordered = new ServerMessage { Deliver = new Delivery { Envelope = new Envelope { Topic = "a.b" } } }.ToByteArray()
            .Concat(new Delivery { SubscriptionId = "late" }.ToByteArray() is var late ? new byte[] { 0x0A, (byte)late.Length }.Concat(late) : []).ToArray();
        byte[] frame = [0x0A, (byte)reordered.Length, .. reordered];
        Assert.Equal(ServerFrame.Parser.ParseFrom(frame), decoder.Decode(new ReadOnlySequence<byte>(frame)));
        Assert.Empty(decoder.Decode(ReadOnlySequence<byte>.Empty).Messages);
        Assert.Throws<InvalidProtocolBufferException>(() => decoder.Decode(new ReadOnlySequence<byte>(bytes.AsMemory(0, bytes.Length - 2))));
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
