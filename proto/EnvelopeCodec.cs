using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Unicode;
using Google.Protobuf;

namespace Loom.Protocol.V1;

/// <summary>
/// Encodes and decodes an <see cref="Envelope"/> by hand on the hot path, byte for byte as the
/// generated code does, without transcoding or allocating the strings that repeat from envelope to
/// envelope: a topic, the sender, a thread id, a reply-to topic and a content type are looked up in a
/// small per-thread cache of their UTF-8 bytes (by reference when writing, by bytes when reading), so
/// a stream of envelopes on one topic shares one topic string and one encoding of it. Envelopes with
/// headers or fields this build does not know, and anything unusual on the wire, go through the
/// generated code, which stays the reference (a property test holds the two to the same bytes).
/// </summary>
public static class EnvelopeCodec
{
    private const int MaxCachedBytes = 128;

    /// <summary>The envelope's encoded size; equal to <see cref="Envelope.CalculateSize"/>.</summary>
    public static int Size(Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        if (!envelope.IsPlain)
        {
            return envelope.CalculateSize();
        }

        var cache = Utf8Cache.Current;
        var size = UniqueStringSize(envelope.Id)
            + CachedStringSize(cache, envelope.Topic)
            + CachedStringSize(cache, envelope.Sender)
            + CachedStringSize(cache, envelope.ThreadId)
            + UniqueStringSize(envelope.CorrelationId)
            + CachedStringSize(cache, envelope.ReplyTo)
            + CachedStringSize(cache, envelope.ContentType)
            + UniqueStringSize(envelope.Traceparent)
            + (envelope.Tracestate.Length == 0 ? 0 : 1 + UniqueStringSize(envelope.Tracestate));
        if (envelope.TtlMs != 0)
        {
            size += 1 + WireFormat.VarintSize(envelope.TtlMs);
        }

        if (envelope.DeadlineUnixMs != 0)
        {
            size += 1 + WireFormat.VarintSize((ulong)envelope.DeadlineUnixMs);
        }

        if (envelope.HopCount != 0)
        {
            size += 1 + WireFormat.VarintSize(envelope.HopCount);
        }

        if (envelope.Qos != QosClass.Unspecified)
        {
            size += 1 + WireFormat.VarintSize((ulong)(long)(int)envelope.Qos);
        }

        if (envelope.TimestampUnixMs != 0)
        {
            size += 1 + WireFormat.VarintSize((ulong)envelope.TimestampUnixMs);
        }

        if (envelope.Payload.Length != 0)
        {
            size += 1 + WireFormat.VarintSize((uint)envelope.Payload.Length) + envelope.Payload.Length;
        }

        return size;
    }

    /// <summary>Writes the envelope into <paramref name="destination"/>, exactly <paramref name="size"/> (its <see cref="Size"/>) bytes.</summary>
    public static void Write(Envelope envelope, int size, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        destination = destination[..size];
        if (!envelope.IsPlain)
        {
            envelope.WriteTo(destination);
            return;
        }

        var cache = Utf8Cache.Current;
        var n = 0;
        n += WriteUnique(destination[n..], 0x0A, envelope.Id);
        n += WriteCached(cache, destination[n..], 0x12, envelope.Topic);
        n += WriteCached(cache, destination[n..], 0x1A, envelope.Sender);
        n += WriteCached(cache, destination[n..], 0x22, envelope.ThreadId);
        n += WriteUnique(destination[n..], 0x2A, envelope.CorrelationId);
        n += WriteCached(cache, destination[n..], 0x32, envelope.ReplyTo);
        n += WriteVarintField(destination[n..], 0x38, envelope.TtlMs);
        n += WriteVarintField(destination[n..], 0x40, (ulong)envelope.DeadlineUnixMs);
        n += WriteVarintField(destination[n..], 0x48, envelope.HopCount);
        n += WriteVarintField(destination[n..], 0x50, (ulong)(long)(int)envelope.Qos);
        n += WriteVarintField(destination[n..], 0x58, (ulong)envelope.TimestampUnixMs);
        n += WriteCached(cache, destination[n..], 0x62, envelope.ContentType);
        if (envelope.Payload.Length != 0)
        {
            destination[n++] = 0x6A;
            n += WireFormat.WriteVarint(destination[n..], (uint)envelope.Payload.Length);
            envelope.Payload.Span.CopyTo(destination[n..]);
            n += envelope.Payload.Length;
        }

        n += WriteUnique(destination[n..], 0x7A, envelope.Traceparent);
        if (envelope.Tracestate.Length != 0)
        {
            destination[n++] = 0x82;
            n += WriteUnique(destination[n..], 0x01, envelope.Tracestate);
        }

        if (n != size)
        {
            throw new InvalidOperationException($"Envelope '{envelope.Id}' changed while it was written ({n} bytes written, {size} expected).");
        }
    }

    /// <summary>Parses an envelope, as <c>Envelope.Parser.ParseFrom</c> does.</summary>
    /// <exception cref="InvalidProtocolBufferException">The bytes are not an Envelope.</exception>
    public static Envelope Parse(ReadOnlySpan<byte> bytes) => TryParse(bytes) ?? Envelope.Parser.ParseFrom(bytes);

    /// <summary>The envelope when its bytes hold only known fields, well formed, without headers; else null.</summary>
    private static Envelope? TryParse(ReadOnlySpan<byte> bytes)
    {
        var cache = Utf8Cache.Current;
        var envelope = new Envelope();
        var i = 0;
        while (i < bytes.Length)
        {
            var tag = bytes[i++];
            if (tag == 0x82)
            {
                // Field 16 (tracestate) is the only two-byte tag Envelope has.
                if (i >= bytes.Length || bytes[i++] != 0x01 || !TryReadUnique(bytes, ref i, out var tracestate))
                {
                    return null;
                }

                envelope.Tracestate = tracestate;
                continue;
            }

            switch (tag)
            {
                case 0x0A:
                    if (!TryReadUnique(bytes, ref i, out var id))
                    {
                        return null;
                    }

                    envelope.Id = id;
                    break;
                case 0x12:
                case 0x1A:
                case 0x22:
                case 0x32:
                case 0x62:
                    if (!TryReadLength(bytes, ref i, out var slice))
                    {
                        return null;
                    }

                    var value = slice.Length <= MaxCachedBytes ? cache.Get(slice) : Decode(slice);
                    if (value is null)
                    {
                        return null;
                    }

                    switch (tag)
                    {
                        case 0x12: envelope.Topic = value; break;
                        case 0x1A: envelope.Sender = value; break;
                        case 0x22: envelope.ThreadId = value; break;
                        case 0x32: envelope.ReplyTo = value; break;
                        default: envelope.ContentType = value; break;
                    }

                    break;
                case 0x2A:
                    if (!TryReadUnique(bytes, ref i, out var correlationId))
                    {
                        return null;
                    }

                    envelope.CorrelationId = correlationId;
                    break;
                case 0x7A:
                    if (!TryReadUnique(bytes, ref i, out var traceparent))
                    {
                        return null;
                    }

                    envelope.Traceparent = traceparent;
                    break;
                case 0x6A:
                    if (!TryReadLength(bytes, ref i, out var payload))
                    {
                        return null;
                    }

                    envelope.Payload = payload.Length == 0 ? ByteString.Empty : ByteString.CopyFrom(payload);
                    break;
                case 0x38:
                case 0x40:
                case 0x48:
                case 0x50:
                case 0x58:
                    if (!TryReadVarint(bytes, ref i, out var number))
                    {
                        return null;
                    }

                    switch (tag)
                    {
                        case 0x38: envelope.TtlMs = (uint)number; break;
                        case 0x40: envelope.DeadlineUnixMs = (long)number; break;
                        case 0x48: envelope.HopCount = (uint)number; break;
                        case 0x50: envelope.Qos = (QosClass)(int)number; break;
                        default: envelope.TimestampUnixMs = (long)number; break;
                    }

                    break;
                default:
                    return null; // headers, an unknown field or a wire type the generated parser must judge
            }
        }

        return envelope;
    }

    private static int WriteVarintField(Span<byte> span, byte tag, ulong value)
    {
        if (value == 0)
        {
            return 0;
        }

        span[0] = tag;
        return 1 + WireFormat.WriteVarint(span[1..], value);
    }

    private static int UniqueStringSize(string value)
    {
        if (value.Length == 0)
        {
            return 0;
        }

        var bytes = Encoding.UTF8.GetByteCount(value);
        return 1 + WireFormat.VarintSize((uint)bytes) + bytes;
    }

    private static int CachedStringSize(Utf8Cache cache, string value)
    {
        if (value.Length == 0)
        {
            return 0;
        }

        var bytes = value.Length <= MaxCachedBytes ? cache.Encode(value).Length : Encoding.UTF8.GetByteCount(value);
        return 1 + WireFormat.VarintSize((uint)bytes) + bytes;
    }

    private static int WriteUnique(Span<byte> span, byte tag, string value)
    {
        if (value.Length == 0)
        {
            return 0;
        }

        span[0] = tag;
        var length = Encoding.UTF8.GetByteCount(value);
        var n = 1 + WireFormat.WriteVarint(span[1..], (uint)length);
        return n + Encoding.UTF8.GetBytes(value, span[n..]);
    }

    private static int WriteCached(Utf8Cache cache, Span<byte> span, byte tag, string value)
    {
        if (value.Length == 0)
        {
            return 0;
        }

        if (value.Length > MaxCachedBytes)
        {
            return WriteUnique(span, tag, value);
        }

        var utf8 = cache.Encode(value);
        span[0] = tag;
        var n = 1 + WireFormat.WriteVarint(span[1..], (uint)utf8.Length);
        utf8.CopyTo(span[n..]);
        return n + utf8.Length;
    }

    private static bool TryReadVarint(ReadOnlySpan<byte> bytes, ref int i, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64 && i < bytes.Length; shift += 7)
        {
            var b = bytes[i++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return true;
            }
        }

        return false;
    }

    private static bool TryReadLength(ReadOnlySpan<byte> bytes, ref int i, out ReadOnlySpan<byte> slice)
    {
        if (!WireFormat.TryReadLength(bytes, i, out var start, out var length))
        {
            slice = default;
            return false;
        }

        slice = bytes.Slice(start, length);
        i = start + length;
        return true;
    }

    private static bool TryReadUnique(ReadOnlySpan<byte> bytes, ref int i, out string value)
    {
        if (!TryReadLength(bytes, ref i, out var slice) || Decode(slice) is not { } decoded)
        {
            value = "";
            return false;
        }

        value = decoded;
        return true;
    }

    /// <summary>The string, or null for bytes that are not UTF-8 (the generated parser decides what that is).</summary>
    private static string? Decode(ReadOnlySpan<byte> utf8) =>
        utf8.Length == 0 ? "" : Utf8.IsValid(utf8) ? Encoding.UTF8.GetString(utf8) : null;

    /// <summary>
    /// Strings that repeat across envelopes and their UTF-8 bytes, one table per thread (no locks):
    /// writing looks a string up by reference, reading by its bytes. A slot holds the last string
    /// that hashed to it, so the table never grows; a miss costs what no cache would.
    /// </summary>
    private sealed class Utf8Cache
    {
        private const int Slots = 128;

        [ThreadStatic]
        private static Utf8Cache? t_current;

        private readonly Entry?[] _byReference = new Entry?[Slots];
        private readonly Entry?[] _byBytes = new Entry?[Slots];

        public static Utf8Cache Current => t_current ??= new Utf8Cache();

        /// <summary>The UTF-8 bytes of a string of at most <see cref="MaxCachedBytes"/> characters.</summary>
        public byte[] Encode(string value)
        {
            var slot = RuntimeHelpers.GetHashCode(value) & (Slots - 1);
            var entry = _byReference[slot];
            if (entry is not null && ReferenceEquals(entry.Value, value))
            {
                return entry.Utf8;
            }

            entry = new Entry(value, Encoding.UTF8.GetBytes(value));
            _byReference[slot] = entry;
            return entry.Utf8;
        }

        /// <summary>The string of at most <see cref="MaxCachedBytes"/> bytes, or null when they are not UTF-8.</summary>
        public string? Get(ReadOnlySpan<byte> utf8)
        {
            if (utf8.Length == 0)
            {
                return "";
            }

            var slot = Hash(utf8) & (Slots - 1);
            var entry = _byBytes[slot];
            if (entry is not null && utf8.SequenceEqual(entry.Utf8))
            {
                return entry.Value;
            }

            if (Decode(utf8) is not { } value)
            {
                return null;
            }

            entry = new Entry(value, utf8.ToArray());
            _byBytes[slot] = entry;
            // The string read is also the one written next (a bridge forwards what it parsed).
            _byReference[RuntimeHelpers.GetHashCode(value) & (Slots - 1)] = entry;
            return value;
        }

        /// <summary>Length and the first and last eight bytes: enough to tell topics apart, cheap to compute.</summary>
        private static int Hash(ReadOnlySpan<byte> utf8)
        {
            ulong head, tail;
            if (utf8.Length >= 8)
            {
                head = BinaryPrimitives.ReadUInt64LittleEndian(utf8);
                tail = BinaryPrimitives.ReadUInt64LittleEndian(utf8[^8..]);
            }
            else
            {
                head = 0;
                foreach (var b in utf8)
                {
                    head = (head << 8) | b;
                }

                tail = 0;
            }

            var h = ((head * 0x9E3779B97F4A7C15UL) ^ (tail * 0xC2B2AE3D27D4EB4FUL)) + (ulong)utf8.Length;
            return (int)(h >> 32) ^ (int)h;
        }

        private sealed record Entry(string Value, byte[] Utf8);
    }
}
