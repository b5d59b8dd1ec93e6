using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using Google.Protobuf;

namespace Loom.Grpc.Internal;

/// <summary>
/// Length-Prefixed-Message framing: a 1-byte compressed flag, a 4-byte big-endian length, the message.
/// </summary>
internal static class GrpcFraming
{
    public const int HeaderSize = 5;

    // Messages up to this size are serialized into one span (a pipe block); larger ones are written
    // through IBufferWriter in block-sized pieces so no large contiguous buffer is needed.
    private const int ContiguousLimit = 4096 - HeaderSize;

    /// <summary>
    /// Takes one complete message off the front of <paramref name="buffer"/>. Returns false when more bytes are
    /// needed. Checks the header as soon as it has arrived, so an oversized message is refused before it is buffered.
    /// </summary>
    /// <exception cref="GrpcStatusException">Compressed message (UNIMPLEMENTED), bad flag (INTERNAL), or over the limit (RESOURCE_EXHAUSTED).</exception>
    public static bool TryReadMessage(ref ReadOnlySequence<byte> buffer, int maxMessageSize, out ReadOnlySequence<byte> message)
    {
        message = default;
        if (buffer.Length < HeaderSize)
        {
            return false;
        }

        Span<byte> header = stackalloc byte[HeaderSize];
        buffer.Slice(0, HeaderSize).CopyTo(header);
        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        switch (header[0])
        {
            case 0:
                break;
            case 1:
                // We advertise grpc-accept-encoding: identity only, so a compressed message cannot be decoded.
                throw new GrpcStatusException(
                    GrpcStatusCode.Unimplemented,
                    "Received a compressed message, but compression is not supported. Supported grpc-encoding: identity.",
                    AcceptIdentity);
            default:
                throw new GrpcStatusException(
                    GrpcStatusCode.Internal,
                    string.Create(CultureInfo.InvariantCulture, $"Invalid compressed flag {header[0]} in a message header (must be 0 or 1)."));
        }

        if (length > (uint)maxMessageSize)
        {
            throw new GrpcStatusException(
                GrpcStatusCode.ResourceExhausted,
                string.Create(CultureInfo.InvariantCulture, $"Received message of {length} bytes exceeds the limit of {maxMessageSize} bytes."));
        }

        if (buffer.Length - HeaderSize < length)
        {
            return false;
        }

        message = buffer.Slice(HeaderSize, length);
        buffer = buffer.Slice(message.End);
        return true;
    }

    /// <summary>Size of the serialized message, checked against the send limit.</summary>
    /// <exception cref="GrpcStatusException">RESOURCE_EXHAUSTED when over the limit.</exception>
    public static int MeasureForSend(IMessage message, int maxMessageSize) => CheckSendSize(message.CalculateSize(), maxMessageSize);

    /// <summary>Returns <paramref name="size"/>, or throws RESOURCE_EXHAUSTED when it is over <paramref name="maxMessageSize"/>.</summary>
    public static int CheckSendSize(int size, int maxMessageSize)
    {
        if (size > maxMessageSize)
        {
            throw new GrpcStatusException(
                GrpcStatusCode.ResourceExhausted,
                string.Create(CultureInfo.InvariantCulture, $"Sending message of {size} bytes exceeds the limit of {maxMessageSize} bytes."));
        }

        return size;
    }

    /// <summary>Serializes header and message straight into <paramref name="output"/> (no intermediate buffer). Does not flush.</summary>
    public static void WriteMessage(IBufferWriter<byte> output, IMessage message, int size)
    {
        if (size <= ContiguousLimit)
        {
            var span = output.GetSpan(HeaderSize + size);
            WriteHeader(span, size);
            message.WriteTo(span.Slice(HeaderSize, size));
            output.Advance(HeaderSize + size);
        }
        else
        {
            WriteHeader(output.GetSpan(HeaderSize), size);
            output.Advance(HeaderSize);
            message.WriteTo(output);
        }
    }

    /// <summary>Writes the header and an already-serialized message into <paramref name="output"/>. Does not flush.</summary>
    public static void WriteRawMessage(IBufferWriter<byte> output, ReadOnlySpan<byte> message)
    {
        WriteHeader(output.GetSpan(HeaderSize), message.Length);
        output.Advance(HeaderSize);
        while (!message.IsEmpty)
        {
            var span = output.GetSpan();
            var n = Math.Min(span.Length, message.Length);
            message[..n].CopyTo(span);
            output.Advance(n);
            message = message[n..];
        }
    }

    private static void WriteHeader(Span<byte> span, int size)
    {
        span[0] = 0;
        BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)size);
    }

    private static readonly IReadOnlyDictionary<string, string> AcceptIdentity =
        new Dictionary<string, string> { [GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.IdentityEncoding };
}
