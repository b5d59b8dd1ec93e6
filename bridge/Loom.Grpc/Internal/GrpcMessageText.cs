using System.Buffers;
using System.Text;

namespace Loom.Grpc.Internal;

/// <summary>
/// Percent-encoding of <c>grpc-message</c> per PROTOCOL-HTTP2: the text is UTF-8 encoded, then every byte
/// outside 0x20-0x7E and '%' itself becomes "%XX" (uppercase hex). Not <see cref="Uri.EscapeDataString(string)"/>,
/// which also escapes spaces and punctuation that other implementations send as is.
/// </summary>
internal static class GrpcMessageText
{
    private const int StackLimit = 256;

    public static string Encode(string message)
    {
        if (!NeedsEncoding(message))
        {
            return message;
        }

        // Only error paths get here: simple beats pooled.
        var bytes = Encoding.UTF8.GetBytes(message);
        var builder = new StringBuilder(bytes.Length + 16);
        foreach (var b in bytes)
        {
            if (IsUnreserved(b))
            {
                builder.Append((char)b);
            }
            else
            {
                builder.Append('%').Append(HexUpper(b >> 4)).Append(HexUpper(b & 0xF));
            }
        }

        return builder.ToString();
    }

    /// <summary>
    /// Decodes a received <c>grpc-message</c>. Never fails (the spec forbids discarding the message): a broken
    /// "%" sequence is kept as is, and bytes that are not valid UTF-8 become U+FFFD.
    /// </summary>
    public static string Decode(string value)
    {
        if (value.IndexOf('%', StringComparison.Ordinal) < 0)
        {
            return value;
        }

        byte[]? rented = null;
        var bytes = value.Length <= StackLimit
            ? stackalloc byte[StackLimit]
            : (rented = ArrayPool<byte>.Shared.Rent(value.Length));
        try
        {
            var count = 0;
            for (var i = 0; i < value.Length; i++)
            {
                var c = value[i];
                if (c == '%' && i + 2 < value.Length && TryHex(value[i + 1], out var hi) && TryHex(value[i + 2], out var lo))
                {
                    bytes[count++] = (byte)((hi << 4) | lo);
                    i += 2;
                }
                else if (c <= 0x7F)
                {
                    bytes[count++] = (byte)c;
                }
                else
                {
                    // Header values are ASCII on the wire; keep such a value as received rather than fail.
                    return value;
                }
            }

            return Encoding.UTF8.GetString(bytes[..count]);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static bool NeedsEncoding(string message)
    {
        foreach (var c in message)
        {
            if (c is < ' ' or > '~' or '%')
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsUnreserved(byte b) => b is >= 0x20 and <= 0x7E and not (byte)'%';

    private static char HexUpper(int nibble) => (char)(nibble < 10 ? '0' + nibble : 'A' + nibble - 10);

    private static bool TryHex(char c, out int value)
    {
        value = c switch
        {
            >= '0' and <= '9' => c - '0',
            >= 'A' and <= 'F' => c - 'A' + 10,
            >= 'a' and <= 'f' => c - 'a' + 10,
            _ => -1,
        };
        return value >= 0;
    }
}
