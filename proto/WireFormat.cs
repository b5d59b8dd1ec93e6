using System.Buffers;

namespace Loom.Protocol.V1;

/// <summary>Protobuf wire primitives for the hand-written frame encoder and decoder.</summary>
internal static class WireFormat
{
    public static int VarintSize(uint value) => value < 1 << 7 ? 1 : value < 1 << 14 ? 2 : value < 1 << 21 ? 3 : value < 1 << 28 ? 4 : 5;

    /// <summary>Bytes of a 64-bit varint (a negative int32 or int64 field takes ten).</summary>
    public static int VarintSize(ulong value) => value < 1UL << 7 ? 1 : (System.Numerics.BitOperations.Log2(value) / 7) + 1;

    public static int WriteVarint(Span<byte> span, uint value) => WriteVarint(span, (ulong)value);

    public static int WriteVarint(Span<byte> span, ulong value)
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

    /// <summary>Writes a one-byte tag and a length; returns the bytes written.</summary>
    public static int WriteTagAndLength(Span<byte> span, byte tag, int length)
    {
        span[0] = tag;
        return 1 + WriteVarint(span[1..], (uint)length);
    }

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

    /// <summary>Parses a gRPC message with a span parser: bytes spanning several segments are first copied into one pooled array.</summary>
    public static T Contiguous<T>(ReadOnlySequence<byte> message, SpanParser<T> parse)
    {
        if (message.IsSingleSegment)
        {
            return parse(message.FirstSpan);
        }

        var length = checked((int)message.Length);
        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            message.CopyTo(rented);
            return parse(rented.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    public delegate T SpanParser<out T>(ReadOnlySpan<byte> bytes);
}
