using System.Buffers;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>
/// Decodes an EventStream <see cref="ClientFrame"/> like the generated parser, and keeps a copy of
/// each published envelope's bytes as its wire form (<see cref="Envelope.AttachWireForm"/>), so
/// that delivering it to remote subscribers copies those bytes instead of serializing the envelope
/// again. Anything other than a plain <c>messages</c> list, or a message other than a single
/// publish, goes to the generated parser unchanged (which also reports malformed bytes).
/// </summary>
internal static class ClientFrameDecoder
{
    private const byte MessagesTag = (1 << 3) | 2; // ClientFrame.messages
    private const byte PublishTag = (1 << 3) | 2;  // ClientMessage.publish

    /// <summary>Envelopes up to this size keep their bytes; larger ones are serialized again (their payload dominates anyway).</summary>
    private const int MaxWireFormBytes = 4096;

    /// <summary>Kept bytes are copied into chunks of this size (below the large object heap), one chunk per thread at a time.</summary>
    private const int ChunkBytes = 16 * 1024;

    [ThreadStatic]
    private static byte[]? t_chunk;

    [ThreadStatic]
    private static int t_used;

    /// <exception cref="Google.Protobuf.InvalidProtocolBufferException">The bytes are not a ClientFrame.</exception>
    public static ClientFrame Decode(ReadOnlySequence<byte> message)
    {
        if (message.IsSingleSegment)
        {
            return Decode(message.FirstSpan);
        }

        var length = checked((int)message.Length);
        var rented = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            message.CopyTo(rented);
            return Decode(rented.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static ClientFrame Decode(ReadOnlySpan<byte> bytes)
    {
        var frame = new ClientFrame();
        var messages = frame.Messages;
        var i = 0;
        while (i < bytes.Length)
        {
            if (bytes[i] != MessagesTag || !TryReadLength(bytes, i + 1, out var start, out var length))
            {
                return ClientFrame.Parser.ParseFrom(bytes);
            }

            messages.Add(DecodeMessage(bytes.Slice(start, length)));
            i = start + length;
        }

        return frame;
    }

    private static ClientMessage DecodeMessage(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > 0 && bytes[0] == PublishTag && TryReadLength(bytes, 1, out var start, out var length) && start + length == bytes.Length)
        {
            var encoded = bytes[start..];
            var envelope = Envelope.Parser.ParseFrom(encoded);
            if (encoded.Length <= MaxWireFormBytes)
            {
                envelope.AttachWireForm(Keep(encoded));
            }

            return new ClientMessage { Publish = envelope };
        }

        return ClientMessage.Parser.ParseFrom(bytes);
    }

    /// <summary>Reads a length varint at <paramref name="offset"/>; false when it is malformed or the bytes it counts are not all there.</summary>
    private static bool TryReadLength(ReadOnlySpan<byte> bytes, int offset, out int start, out int length)
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

    /// <summary>Copies bytes into this thread's current chunk (a fresh chunk when it is full); the chunk lives while an envelope refers to it.</summary>
    private static ReadOnlyMemory<byte> Keep(ReadOnlySpan<byte> bytes)
    {
        var chunk = t_chunk;
        var used = t_used;
        if (chunk is null || chunk.Length - used < bytes.Length)
        {
            chunk = t_chunk = new byte[ChunkBytes];
            used = 0;
        }

        bytes.CopyTo(chunk.AsSpan(used));
        t_used = used + bytes.Length;
        return chunk.AsMemory(used, bytes.Length);
    }
}
