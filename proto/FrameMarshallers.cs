using System.Buffers;
using Google.Protobuf;
using Grpc.Core;

namespace Loom.Protocol.V1;

/// <summary>
/// gRPC marshallers for Loom's messages on the official stack (Grpc.AspNetCore, Grpc.Net.Client).
/// Both sides write EventStream frames as a <see cref="FrameEncoder"/>'s bytes, so an envelope is
/// sized and written once and a fan-out shares one encoding; the SDK reads frames with a
/// <see cref="ServerFrameDecoder"/>. Every other message uses the generated code, through the
/// contextual (buffer writer / payload sequence) API so no intermediate array is made.
/// </summary>
public static class FrameMarshallers
{
    /// <summary>Writes a hand-encoded frame: its bytes are copied once into the transport's buffer.</summary>
    public static Marshaller<FrameEncoder> Encoded { get; } = new(
        static (encoder, context) =>
        {
            var bytes = encoder.Written.Span;
            context.SetPayloadLength(bytes.Length);
            context.GetBufferWriter().Write(bytes);
            context.Complete();
        },
        static _ => throw new NotSupportedException("Hand-encoded frames are written, never read: read frames with the generated parser or a ServerFrameDecoder."));

    /// <summary>A marshaller of a generated message through the contextual API.</summary>
    public static Marshaller<T> For<T>(MessageParser<T> parser)
        where T : IMessage<T>, IBufferMessage
    {
        ArgumentNullException.ThrowIfNull(parser);
        return new Marshaller<T>(
            static (message, context) =>
            {
                context.SetPayloadLength(message.CalculateSize());
                message.WriteTo(context.GetBufferWriter());
                context.Complete();
            },
            context => Parse(parser, context));
    }

    /// <summary>Reads server frames with a decoder of one stream (which reuses delivery wrappers).</summary>
    public static Marshaller<ServerFrame> Decoded(ServerFrameDecoder decoder)
    {
        ArgumentNullException.ThrowIfNull(decoder);
        return new Marshaller<ServerFrame>(
            static (_, _) => throw new NotSupportedException("This marshaller only reads server frames."),
            context => decoder.Decode(context.PayloadAsReadOnlySequence()));
    }

    /// <summary>Reads client frames on the bridge with <see cref="ClientFrameDecoder"/>; a malformed one is INVALID_ARGUMENT.</summary>
    public static Marshaller<ClientFrame> ClientFrames { get; } = new(
        static (_, _) => throw new NotSupportedException("This marshaller only reads client frames; write them with a FrameEncoder."),
        static context => Parse(context, static sequence => ClientFrameDecoder.Decode(sequence)));

    /// <summary>
    /// Parses one message; a malformed one is INVALID_ARGUMENT naming the message type (the
    /// transport's default would be a bare INTERNAL), so a client can tell its own fault.
    /// </summary>
    private static T Parse<T>(MessageParser<T> parser, DeserializationContext context)
        where T : IMessage<T> =>
        Parse(context, parser.ParseFrom);

    private static T Parse<T>(DeserializationContext context, Func<ReadOnlySequence<byte>, T> parse)
    {
        try
        {
            return parse(context.PayloadAsReadOnlySequence());
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"The request is not a valid {typeof(T).Name} message: {ex.Message}"));
        }
    }
}
