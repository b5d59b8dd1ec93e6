using System.Buffers;
using System.Text;
using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>
/// Encodes a <see cref="ServerFrame"/> by hand, so that each delivered envelope is sized once and
/// written once (the generated code sizes a nested message again at every level it is nested in:
/// four times for an envelope inside Delivery inside ServerMessage inside ServerFrame). The bytes
/// are exactly what <c>ServerFrame.WriteTo</c> produces. The buffer is rented from the shared
/// pool per frame and given back by <see cref="Reset"/>, so an idle session holds none. One per
/// write loop; not thread-safe. An envelope that carries its wire form (the bytes it was published
/// with, see <see cref="ClientFrameDecoder"/>) is written from those bytes, not serialized again.
/// </summary>
internal sealed class ServerFrameEncoder
{
    private const byte FieldOneLength = (1 << 3) | 2; // ServerFrame.messages, ServerMessage.deliver, Delivery.subscription_id
    private const byte FieldTwoLength = (2 << 3) | 2; // Delivery.envelope

    private byte[] _array = [];
    private int _written;

    public int Count { get; private set; }

    public int Length => _written;

    public ReadOnlyMemory<byte> Written => _array.AsMemory(0, _written);

    /// <summary>Empties the frame and gives the buffer back to the pool.</summary>
    public void Reset()
    {
        if (_array.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_array);
            _array = [];
        }

        _written = 0;
        Count = 0;
    }

    private Span<byte> GetSpan(int sizeHint)
    {
        if (_array.Length - _written < sizeHint)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Max(Math.Max(4096, _array.Length * 2), _written + sizeHint));
            _array.AsSpan(0, _written).CopyTo(grown);
            if (_array.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_array);
            }

            _array = grown;
        }

        return _array.AsSpan(_written);
    }

    /// <summary>Appends one ServerMessage (a control message).</summary>
    public void AddMessage(ServerMessage message)
    {
        var size = message.CalculateSize();
        var span = GetSpan(1 + 5 + size);
        span[0] = FieldOneLength;
        var n = 1 + WriteVarint(span[1..], (uint)size);
        message.WriteTo(span.Slice(n, size));
        _written += n + size;
        Count++;
    }

    /// <summary>Appends ServerMessage{deliver: Delivery{subscription_id, envelope}}.</summary>
    public void AddDelivery(string subscriptionId, Envelope envelope)
    {
        var idBytes = Encoding.UTF8.GetByteCount(subscriptionId);
        var raw = envelope.TryGetWireForm(out var wire);
        var envelopeSize = raw ? wire.Size : envelope.CalculateSize();
        var deliverySize = 1 + VarintSize((uint)idBytes) + idBytes + 1 + VarintSize((uint)envelopeSize) + envelopeSize;
        var messageSize = 1 + VarintSize((uint)deliverySize) + deliverySize;
        var span = GetSpan(1 + 5 + messageSize);
        var n = 0;
        span[n++] = FieldOneLength;
        n += WriteVarint(span[n..], (uint)messageSize);
        span[n++] = FieldOneLength;
        n += WriteVarint(span[n..], (uint)deliverySize);
        span[n++] = FieldOneLength;
        n += WriteVarint(span[n..], (uint)idBytes);
        n += Encoding.UTF8.GetBytes(subscriptionId, span[n..]);
        span[n++] = FieldTwoLength;
        n += WriteVarint(span[n..], (uint)envelopeSize);
        if (raw)
        {
            // The publisher's bytes with the fields the bridge set appended (the last occurrence of a field wins).
            wire.WriteTo(span.Slice(n, envelopeSize));
        }
        else
        {
            envelope.WriteTo(span.Slice(n, envelopeSize));
        }

        _written += n + envelopeSize;
        Count++;
    }

    private static int VarintSize(uint value) => value < 1 << 7 ? 1 : value < 1 << 14 ? 2 : value < 1 << 21 ? 3 : value < 1 << 28 ? 4 : 5;

    private static int WriteVarint(Span<byte> span, uint value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        span[i++] = (byte)value;
        return i;
    }
}
