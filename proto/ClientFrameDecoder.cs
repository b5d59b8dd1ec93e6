using System.Buffers;

namespace Loom.Protocol.V1;

/// <summary>
/// Decodes EventStream <see cref="ClientFrame"/>s on the bridge like the generated parser, with
/// published envelopes read by <see cref="EnvelopeCodec"/> (their repeated strings, such as the
/// topic, come from its cache instead of being decoded per envelope). Every other message, and
/// anything unusual, goes to the generated parser. Stateless and thread-safe.
/// </summary>
public static class ClientFrameDecoder
{
    private const byte FieldOneLength = (1 << 3) | 2; // ClientFrame.messages, ClientMessage.publish

    /// <summary>Decodes one frame; bytes spanning several segments are first copied into one pooled array.</summary>
    /// <exception cref="Google.Protobuf.InvalidProtocolBufferException">The bytes are not a ClientFrame.</exception>
    public static ClientFrame Decode(ReadOnlySequence<byte> message)
    {
        return WireFormat.Contiguous(message, Decode);
    }

    /// <inheritdoc cref="Decode(ReadOnlySequence{byte})"/>
    public static ClientFrame Decode(ReadOnlySpan<byte> bytes)
    {
        var frame = new ClientFrame();
        var messages = frame.Messages;
        var i = 0;
        while (i < bytes.Length)
        {
            if (bytes[i] != FieldOneLength || !WireFormat.TryReadLength(bytes, i + 1, out var start, out var length))
            {
                return ClientFrame.Parser.ParseFrom(bytes);
            }

            var message = bytes.Slice(start, length);
            messages.Add(message.Length > 0 && message[0] == FieldOneLength && WireFormat.TryReadLength(message, 1, out var envelopeStart, out var envelopeLength) && envelopeStart + envelopeLength == message.Length
                ? new ClientMessage { Publish = EnvelopeCodec.Parse(message[envelopeStart..]) }
                : ClientMessage.Parser.ParseFrom(message));
            i = start + length;
        }

        return frame;
    }
}
