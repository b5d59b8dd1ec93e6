namespace Loom.Sdk.Internal;

/// <summary>Recognizes raw byte payloads so generic overloads do not serialize them as base64 JSON.</summary>
internal static class Payloads
{
    public static bool TryGetBytes<T>(T value, out ReadOnlyMemory<byte> bytes)
    {
        switch (value)
        {
            case byte[] array:
                bytes = array;
                return true;
            case ReadOnlyMemory<byte> memory:
                bytes = memory;
                return true;
            case Memory<byte> memory:
                bytes = memory;
                return true;
            case ArraySegment<byte> segment:
                bytes = segment;
                return true;
            default:
                bytes = default;
                return false;
        }
    }
}
