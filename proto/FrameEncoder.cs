using System.Buffers;
using System.Text;
using Google.Protobuf;

namespace Loom.Protocol.V1;

/// <summary>
/// Encodes a <see cref="ServerFrame"/> or a <see cref="ClientFrame"/> by hand, so that each
/// envelope is sized once and written once (the generated code sizes a nested message again at
/// every level it is nested in: four times for an envelope inside Delivery inside ServerMessage
/// inside ServerFrame). The bytes are exactly what the generated <c>WriteTo</c> produces; a delivered
/// envelope that went to several subscriptions is serialized once for all of them
/// (<see cref="Envelope.TryGetSharedEncoding"/>). The buffer is rented from the shared pool per frame and given back by
/// <see cref="Reset"/>, so an idle stream holds none. One per write loop; not thread-safe. Both
/// frames are <c>repeated messages = 1</c>, so one encoder writes either kind: add only
/// <see cref="ServerMessage"/>s and deliveries, or only <see cref="ClientMessage"/>s and publishes.
/// </summary>
public sealed class FrameEncoder
{
    private const byte FieldOneLength = (1 << 3) | 2; // *Frame.messages, ServerMessage.deliver, Delivery.subscription_id, ClientMessage.publish
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

    /// <summary>The bytes a message of <paramref name="size"/> bytes adds to a frame (its tag and length included).</summary>
    public static int EntryLength(int size) => 1 + WireFormat.VarintSize((uint)size) + size;

    /// <summary>The bytes <see cref="AddDelivery(string, Envelope, int, byte[])"/> adds to a frame for an envelope of <paramref name="envelopeSize"/> bytes.</summary>
    public static int DeliveryLength(string subscriptionId, int envelopeSize)
    {
        ArgumentNullException.ThrowIfNull(subscriptionId);
        var idBytes = Encoding.UTF8.GetByteCount(subscriptionId);
        return EntryLength(EntryLength(1 + WireFormat.VarintSize((uint)idBytes) + idBytes + EntryLength(envelopeSize)));
    }

    /// <summary>Appends one message (a ServerMessage or a ClientMessage, as the frame's kind).</summary>
    public void AddMessage(IMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        AddMessage(message, message.CalculateSize());
    }

    /// <summary>Appends one message whose <see cref="IMessage.CalculateSize"/> the caller already has.</summary>
    public void AddMessage(IMessage message, int size)
    {
        ArgumentNullException.ThrowIfNull(message);
        var span = GetSpan(1 + 5 + size);
        var n = WireFormat.WriteTagAndLength(span, FieldOneLength, size);
        message.WriteTo(span.Slice(n, size));
        _written += n + size;
        Count++;
    }

    /// <summary>Appends ClientMessage{publish: envelope}.</summary>
    public void AddPublish(Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        var envelopeSize = EnvelopeCodec.Size(envelope);
        var messageSize = 1 + WireFormat.VarintSize((uint)envelopeSize) + envelopeSize;
        var span = GetSpan(1 + 5 + messageSize);
        var n = WireFormat.WriteTagAndLength(span, FieldOneLength, messageSize);
        n += WireFormat.WriteTagAndLength(span[n..], FieldOneLength, envelopeSize);
        EnvelopeCodec.Write(envelope, envelopeSize, span[n..]);
        _written += n + envelopeSize;
        Count++;
    }

    /// <summary>Appends ServerMessage{deliver: Delivery{subscription_id, envelope}}.</summary>
    public void AddDelivery(string subscriptionId, Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        var shared = envelope.TryGetSharedEncoding(out var encoding);
        AddDelivery(subscriptionId, envelope, shared ? encoding.Length : EnvelopeCodec.Size(envelope), shared ? encoding : null);
    }

    /// <summary>
    /// Appends ServerMessage{deliver: Delivery{subscription_id, envelope}} for an envelope the caller
    /// has sized: <paramref name="encoding"/> is its shared encoding (<see cref="Envelope.TryGetSharedEncoding"/>)
    /// or null, and <paramref name="envelopeSize"/> that encoding's length or the envelope's size.
    /// </summary>
    public void AddDelivery(string subscriptionId, Envelope envelope, int envelopeSize, byte[]? encoding)
    {
        ArgumentNullException.ThrowIfNull(subscriptionId);
        ArgumentNullException.ThrowIfNull(envelope);
        var idBytes = Encoding.UTF8.GetByteCount(subscriptionId);
        var deliverySize = 1 + WireFormat.VarintSize((uint)idBytes) + idBytes + 1 + WireFormat.VarintSize((uint)envelopeSize) + envelopeSize;
        var messageSize = 1 + WireFormat.VarintSize((uint)deliverySize) + deliverySize;
        var span = GetSpan(1 + 5 + messageSize);
        var n = WireFormat.WriteTagAndLength(span, FieldOneLength, messageSize);
        n += WireFormat.WriteTagAndLength(span[n..], FieldOneLength, deliverySize);
        n += WireFormat.WriteTagAndLength(span[n..], FieldOneLength, idBytes);
        n += Encoding.UTF8.GetBytes(subscriptionId, span[n..]);
        n += WireFormat.WriteTagAndLength(span[n..], FieldTwoLength, envelopeSize);
        if (encoding is not null)
        {
            encoding.CopyTo(span[n..]);
        }
        else
        {
            EnvelopeCodec.Write(envelope, envelopeSize, span[n..]);
        }

        _written += n + envelopeSize;
        Count++;
    }
}
