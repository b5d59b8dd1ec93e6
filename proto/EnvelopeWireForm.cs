using System.Text;

namespace Loom.Protocol.V1;

/// <summary>
/// An envelope can carry the bytes it was parsed from (its wire form), so that a bridge forwarding
/// it writes those bytes instead of serializing it again. Only the fields a bridge sets after
/// parsing (id, sender, deadline, hop count, timestamp, trace context) may change afterwards: the
/// ones that did are appended after the original bytes, and protobuf's rule that the last
/// occurrence of a singular field wins makes the result decode to the current values. Any other
/// change must detach the wire form first (<see cref="DetachWireForm"/>); a clone never has one.
/// </summary>
public sealed partial class Envelope
{
    private WireForm? _wireForm;

    /// <summary>True while the envelope carries the bytes it was parsed from.</summary>
    public bool HasWireForm => _wireForm is not null;

    /// <summary>
    /// Records <paramref name="encoded"/> (which must be this envelope's own encoding, as just parsed, and must
    /// not change while the envelope lives) and the values of the fields a bridge may set afterwards.
    /// </summary>
    public void AttachWireForm(ReadOnlyMemory<byte> encoded) =>
        _wireForm = new WireForm(encoded, id_, sender_, deadlineUnixMs_, hopCount_, timestampUnixMs_, traceparent_, tracestate_);

    /// <summary>Forgets the wire form: the envelope is serialized from its fields again.</summary>
    public void DetachWireForm() => _wireForm = null;

    /// <summary>
    /// Marks one publication of the envelope. The first keeps the wire form; a second one (the same
    /// object published again, possibly changed in between) detaches it, since changes other than
    /// the bridge's own cannot be seen.
    /// </summary>
    public void MarkPublished()
    {
        if (_wireForm is { } wire && Interlocked.Exchange(ref wire.Published, 1) == 1)
        {
            _wireForm = null;
        }
    }

    /// <summary>
    /// Takes the wire form with the current values of the fields that changed since it was parsed, or
    /// returns false when the envelope has none. The result is a snapshot: later changes do not affect it.
    /// </summary>
    public bool TryGetWireForm(out EnvelopeWireForm form)
    {
        if (_wireForm is not { } wire)
        {
            form = default;
            return false;
        }

        var id = id_;
        var sender = sender_;
        var deadline = deadlineUnixMs_;
        var hops = hopCount_;
        var timestamp = timestampUnixMs_;
        var traceparent = traceparent_;
        var tracestate = tracestate_;
        form = new EnvelopeWireForm(
            wire.Bytes,
            StringChanged(id, wire.Id) ? id : null,
            StringChanged(sender, wire.Sender) ? sender : null,
            deadline != wire.DeadlineUnixMs ? deadline : null,
            hops != wire.HopCount ? hops : null,
            timestamp != wire.TimestampUnixMs ? timestamp : null,
            StringChanged(traceparent, wire.Traceparent) ? traceparent : null,
            StringChanged(tracestate, wire.Tracestate) ? tracestate : null);
        return true;
    }

    private static bool StringChanged(string current, string original) =>
        !ReferenceEquals(current, original) && !string.Equals(current, original, StringComparison.Ordinal);

    internal static int StringSize(string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        return VarintSize((uint)length) + length;
    }

    internal static int WriteString(Span<byte> destination, string value)
    {
        var length = Encoding.UTF8.GetByteCount(value);
        var n = WriteVarint(destination, (uint)length);
        return n + Encoding.UTF8.GetBytes(value, destination[n..]);
    }

    internal static int VarintSize(ulong value)
    {
        var size = 1;
        while (value >= 0x80)
        {
            value >>= 7;
            size++;
        }

        return size;
    }

    internal static int WriteVarint(Span<byte> destination, ulong value)
    {
        var i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }

        destination[i++] = (byte)value;
        return i;
    }

    private sealed class WireForm(ReadOnlyMemory<byte> bytes, string id, string sender, long deadlineUnixMs, uint hopCount, long timestampUnixMs, string traceparent, string tracestate)
    {
        public readonly ReadOnlyMemory<byte> Bytes = bytes;
        public readonly string Id = id;
        public readonly string Sender = sender;
        public readonly long DeadlineUnixMs = deadlineUnixMs;
        public readonly uint HopCount = hopCount;
        public readonly long TimestampUnixMs = timestampUnixMs;
        public readonly string Traceparent = traceparent;
        public readonly string Tracestate = tracestate;
        public int Published;
    }
}

/// <summary>
/// An envelope's wire form and the fields changed since it was parsed, taken at one moment by
/// <see cref="Envelope.TryGetWireForm"/>: <see cref="Size"/> bytes, written by <see cref="WriteTo"/>.
/// </summary>
public readonly struct EnvelopeWireForm
{
    private const byte IdTag = (1 << 3) | 2;
    private const byte SenderTag = (3 << 3) | 2;
    private const byte DeadlineTag = 8 << 3;
    private const byte HopCountTag = 9 << 3;
    private const byte TimestampTag = 11 << 3;
    private const byte TraceparentTag = (15 << 3) | 2;
    private const byte TracestateTag0 = 0x82; // (16 << 3) | 2 as a two-byte varint
    private const byte TracestateTag1 = 0x01;

    private readonly ReadOnlyMemory<byte> _bytes;
    private readonly string? _id;
    private readonly string? _sender;
    private readonly long? _deadline;
    private readonly uint? _hops;
    private readonly long? _timestamp;
    private readonly string? _traceparent;
    private readonly string? _tracestate;

    internal EnvelopeWireForm(ReadOnlyMemory<byte> bytes, string? id, string? sender, long? deadline, uint? hops, long? timestamp, string? traceparent, string? tracestate)
    {
        _bytes = bytes;
        _id = id;
        _sender = sender;
        _deadline = deadline;
        _hops = hops;
        _timestamp = timestamp;
        _traceparent = traceparent;
        _tracestate = tracestate;
        var size = bytes.Length;
        size += _id is null ? 0 : 1 + Envelope.StringSize(_id);
        size += _sender is null ? 0 : 1 + Envelope.StringSize(_sender);
        size += _deadline is { } d ? 1 + Envelope.VarintSize((ulong)d) : 0;
        size += _hops is { } h ? 1 + Envelope.VarintSize(h) : 0;
        size += _timestamp is { } t ? 1 + Envelope.VarintSize((ulong)t) : 0;
        size += _traceparent is null ? 0 : 1 + Envelope.StringSize(_traceparent);
        size += _tracestate is null ? 0 : 2 + Envelope.StringSize(_tracestate);
        Size = size;
    }

    /// <summary>Encoded size in bytes.</summary>
    public int Size { get; }

    /// <summary>Writes the encoding; <paramref name="destination"/> must hold at least <see cref="Size"/> bytes.</summary>
    public void WriteTo(Span<byte> destination)
    {
        _bytes.Span.CopyTo(destination);
        var n = _bytes.Length;
        if (_id is not null)
        {
            destination[n++] = IdTag;
            n += Envelope.WriteString(destination[n..], _id);
        }

        if (_sender is not null)
        {
            destination[n++] = SenderTag;
            n += Envelope.WriteString(destination[n..], _sender);
        }

        if (_deadline is { } deadline)
        {
            destination[n++] = DeadlineTag;
            n += Envelope.WriteVarint(destination[n..], (ulong)deadline);
        }

        if (_hops is { } hops)
        {
            destination[n++] = HopCountTag;
            n += Envelope.WriteVarint(destination[n..], hops);
        }

        if (_timestamp is { } timestamp)
        {
            destination[n++] = TimestampTag;
            n += Envelope.WriteVarint(destination[n..], (ulong)timestamp);
        }

        if (_traceparent is not null)
        {
            destination[n++] = TraceparentTag;
            n += Envelope.WriteString(destination[n..], _traceparent);
        }

        if (_tracestate is not null)
        {
            destination[n++] = TracestateTag0;
            destination[n++] = TracestateTag1;
            Envelope.WriteString(destination[n..], _tracestate);
        }
    }
}
