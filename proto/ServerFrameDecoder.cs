using System.Buffers;
using System.Text;

namespace Loom.Protocol.V1;

/// <summary>
/// Decodes EventStream <see cref="ServerFrame"/>s for one stream, like the generated parser but
/// without allocating per delivery what the reader drops at once: the <see cref="ServerMessage"/>
/// and <see cref="Delivery"/> wrappers of deliveries are reused from frame to frame (so a frame is
/// valid until the next one is decoded, and only its envelopes may be kept), and a subscription
/// id repeated by consecutive deliveries is one string. Anything unusual goes to the generated parser.
/// One per stream; not thread-safe.
/// </summary>
public sealed class ServerFrameDecoder
{
    private const byte FieldOneLength = (1 << 3) | 2; // ServerFrame.messages, ServerMessage.deliver, Delivery.subscription_id
    private const byte FieldTwoLength = (2 << 3) | 2; // Delivery.envelope

    /// <summary>Wrappers kept for reuse; a frame with more deliveries allocates the rest.</summary>
    private const int MaxReusedWrappers = 1024; // the bridge's default max_batch_messages

    private readonly List<ServerMessage> _wrappers = [];
    private byte[] _lastIdBytes = [];
    private string _lastId = "";
    private int _used;

    /// <summary>Decodes one frame; bytes spanning several segments are first copied into one pooled array.</summary>
    /// <exception cref="Google.Protobuf.InvalidProtocolBufferException">The bytes are not a ServerFrame.</exception>
    public ServerFrame Decode(ReadOnlySequence<byte> message)
    {
        return WireFormat.Contiguous(message, Decode);
    }

    private ServerFrame Decode(ReadOnlySpan<byte> bytes)
    {
        _used = 0;
        var frame = new ServerFrame();
        var messages = frame.Messages;
        var i = 0;
        while (i < bytes.Length)
        {
            if (bytes[i] != FieldOneLength || !WireFormat.TryReadLength(bytes, i + 1, out var start, out var length))
            {
                return ServerFrame.Parser.ParseFrom(bytes);
            }

            var message = bytes.Slice(start, length);
            messages.Add(TryDecodeDelivery(message) ?? ServerMessage.Parser.ParseFrom(message));
            i = start + length;
        }

        return frame;
    }

    /// <summary>ServerMessage{deliver: Delivery{subscription_id, envelope}} written in field order, as bridges write it; else null.</summary>
    private ServerMessage? TryDecodeDelivery(ReadOnlySpan<byte> message)
    {
        if (message.Length == 0 || message[0] != FieldOneLength || !WireFormat.TryReadLength(message, 1, out var start, out var length) || start + length != message.Length)
        {
            return null;
        }

        var delivery = message[start..];
        if (delivery.Length == 0 || delivery[0] != FieldOneLength || !WireFormat.TryReadLength(delivery, 1, out var idStart, out var idLength))
        {
            return null;
        }

        var id = delivery.Slice(idStart, idLength);
        var rest = delivery[(idStart + idLength)..];
        if (rest.Length == 0 || rest[0] != FieldTwoLength || !WireFormat.TryReadLength(rest, 1, out var envelopeStart, out var envelopeLength) || envelopeStart + envelopeLength != rest.Length)
        {
            return null;
        }

        var envelope = EnvelopeCodec.Parse(rest[envelopeStart..]);
        if (!id.SequenceEqual(_lastIdBytes))
        {
            _lastId = Encoding.UTF8.GetString(id);
            _lastIdBytes = id.ToArray();
        }

        ServerMessage wrapper;
        if (_used < _wrappers.Count)
        {
            wrapper = _wrappers[_used++];
        }
        else
        {
            wrapper = new ServerMessage { Deliver = new Delivery() };
            if (_wrappers.Count < MaxReusedWrappers)
            {
                _wrappers.Add(wrapper);
                _used++;
            }
        }

        wrapper.Deliver.SubscriptionId = _lastId;
        wrapper.Deliver.Envelope = envelope;
        return wrapper;
    }
}
