using Google.Protobuf;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

public sealed class FrameEncoderTests
{
    [Fact]
    public void Hand_encoded_frames_are_byte_identical_to_the_generated_encoding()
    {
        var encoder = new FrameEncoder();
        var expected = new ServerFrame();
        var ack = new ServerMessage { Ack = new Ack { CorrelationId = "c-1", SubscriptionId = "s-1" } };
        encoder.AddMessage(ack);
        expected.Messages.Add(ack);
        for (var i = 0; i < 300; i++)
        {
            var envelope = new Envelope
            {
                Id = "id-" + i,
                Topic = "orders.eu.created",
                Sender = "agent-é", // non-ASCII sender: UTF-8 lengths must be right
                Payload = ByteString.CopyFrom(new byte[i * 7]), // sizes that cross varint boundaries
                HopCount = (uint)i,
                TimestampUnixMs = 1_764_000_000_000 + i,
                Traceparent = i % 2 == 0 ? "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" : "",
            };
            envelope.Headers["k" + i] = "v";
            var subscription = i % 3 == 0 ? "sub-ü" : "5f0c2b6a9d8e4f7a8b1c2d3e4f5a6b7c";
            var before = encoder.Length;
            encoder.AddDelivery(subscription, envelope);
            Assert.Equal(FrameEncoder.DeliveryLength(subscription, envelope.CalculateSize()), encoder.Length - before); // what the write loop sizes frames by
            expected.Messages.Add(new ServerMessage { Deliver = new Delivery { SubscriptionId = subscription, Envelope = envelope } });
        }

        var large = new ServerMessage { Result = new ActionResult { CallId = "b1", OutputJson = ByteString.CopyFrom(new byte[70_000]) } };
        var beforeLarge = encoder.Length;
        encoder.AddMessage(large);
        Assert.Equal(FrameEncoder.EntryLength(large.CalculateSize()), encoder.Length - beforeLarge);
        expected.Messages.Add(large);

        Assert.Equal(302, encoder.Count);
        Assert.Equal(expected.ToByteArray(), encoder.Written.ToArray());
        Assert.Equal(expected, ServerFrame.Parser.ParseFrom(encoder.Written.Span));
        encoder.Reset();
        Assert.Equal(0, encoder.Length);
        Assert.Equal(0, encoder.Count);
    }

    [Fact]
    public void Hand_encoded_client_frames_are_byte_identical_to_the_generated_encoding()
    {
        var encoder = new FrameEncoder();
        var expected = new ClientFrame();
        for (var i = 0; i < 300; i++)
        {
            ClientMessage message = i % 5 == 0
                ? new ClientMessage { Call = new ActionCall { CallId = "c" + i, Capability = "math.add", InputJson = ByteString.CopyFromUtf8("{}") } }
                : new ClientMessage { Publish = new Envelope { Id = "id-" + i, Topic = "orders.eu.created", ThreadId = "t-é", Payload = ByteString.CopyFrom(new byte[i * 7]), Headers = { ["k"] = "v" } } };
            if (message.KindCase == ClientMessage.KindOneofCase.Publish)
            {
                encoder.AddPublish(message.Publish);
            }
            else
            {
                encoder.AddMessage(message);
            }

            expected.Messages.Add(message);
        }

        Assert.Equal(300, encoder.Count);
        Assert.Equal(expected.ToByteArray(), encoder.Written.ToArray());
        encoder.Reset();
        Assert.Equal(0, encoder.Length);
    }
}
