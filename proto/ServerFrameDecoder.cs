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
    private readonly WireFormat.SpanDecoder<ServerFrame> _decodeSpan;
    private byte[] _lastIdBytes = [];
    private string _lastId = "";
    private int _used;

    /// <summary>Creates a decoder for one stream.</summary>
    public ServerFrameDecoder()
    {
        _decodeSpan = Decode;
    }

    /// <exception cref="Google.Protobuf.InvalidProtocolBufferException">The bytes are not a ServerFrame.</exception>
    public ServerFrame Decode(ReadOnlySequence<byte> message) => WireFormat.Contiguous(message, _decodeSpan);

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

        var envelope = Envelope.Parser.ParseFrom(rest[envelopeStart..]);
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

/// <summary>Small helpers for reading protobuf bytes by hand.</summary>
internal static class WireFormat
{
    /// <summary>Reads a length varint at <paramref name="offset"/>; false when it is malformed or the bytes it counts are not all there.</summary>
    public static bool TryReadLength(ReadOnlySpan<byte> bytes, int offset, out int start, out int length)
    {
        uint value = 0;
        for (var shift = 0; shift < 32 && offset < bytes.Length; shift += 7)
        {
            var b = bytes[offset++];
            value |= (uint)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                start = offset;
                length = (int)value;
                return value <= (uint)(bytes.Length - offset);
            }
        }

        start = length = 0;
        return false;
    }


    /// <summary>Runs <paramref name="decode"/> over the bytes as one span (copied into a pooled array when they span segments).</summary>
    public static T Contiguous<T>(ReadOnlySequence<byte> message, SpanDecoder<T> decode)
    {
        if (message.IsSingleSegment)
        {
            return decode(message.FirstSpan);
        }

        var length = checked((int)message.Length);
        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            message.CopyTo(rented);
            return decode(rented.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    public delegate T SpanDecoder<T>(ReadOnlySpan<byte> bytes);
}
