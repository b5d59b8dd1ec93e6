using System.Buffers;
using System.Buffers.Binary;
using Google.Protobuf;

namespace Loom.Benchmarks;

/// <summary>
/// The gRPC length-prefixed message framing (1 flag byte, 4-byte big-endian length) as the transport
/// does it, so the batching benchmarks measure what a frame costs around the serializer.
/// </summary>
internal static class GrpcFrames
{
    public static void WriteMessage(IBufferWriter<byte> output, IMessage message, int size)
    {
        var header = output.GetSpan(5);
        header[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(header[1..], (uint)size);
        output.Advance(5);
        message.WriteTo(output);
    }

    public static bool TryReadMessage(ref ReadOnlySequence<byte> buffer, int maxSize, out ReadOnlySequence<byte> message)
    {
        message = default;
        if (buffer.Length < 5)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[5];
        buffer.Slice(0, 5).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > maxSize || buffer.Length < 5 + length)
        {
            return false;
        }

        message = buffer.Slice(5, length);
        buffer = buffer.Slice(5 + length);
        return true;
    }
}
