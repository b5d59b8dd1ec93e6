using System.Buffers.Binary;
using System.Text;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal.Idempotency;

/// <summary>
/// One stored outcome in the idempotency log: version (1), key, input fingerprint (16 bytes),
/// agent, provider, duration, then the output or the error (protobuf). Lengths are 32-bit little endian.
/// </summary>
internal static class IdempotencyRecord
{
    private const byte Version = 1;
    private const byte KindOutput = 0;
    private const byte KindError = 1;

    public static byte[] Encode(string key, byte[] fingerprint, ActionOutcome outcome)
    {
        var keyBytes = Encoding.UTF8.GetBytes(key);
        var agent = Encoding.UTF8.GetBytes(outcome.AgentId ?? "");
        var provider = Encoding.UTF8.GetBytes(outcome.ProviderId ?? "");
        var body = outcome.Error is { } error ? error.ToByteArray() : outcome.OutputJson.ToArray();
        var buffer = new byte[1 + 4 + keyBytes.Length + 16 + 4 + agent.Length + 4 + provider.Length + 8 + 1 + 4 + body.Length];
        var span = buffer.AsSpan();
        span[0] = Version;
        var at = 1;
        Put(span, ref at, keyBytes);
        fingerprint.AsSpan(0, 16).CopyTo(span[at..]);
        at += 16;
        Put(span, ref at, agent);
        Put(span, ref at, provider);
        BinaryPrimitives.WriteInt64LittleEndian(span[at..], outcome.Duration.Ticks);
        at += 8;
        span[at++] = outcome.Error is null ? KindOutput : KindError;
        Put(span, ref at, body);
        return buffer;
    }

    /// <summary>The key and fingerprint only (rebuilding the index).</summary>
    public static bool TryDecodeHeader(ReadOnlySpan<byte> data, out string key, out byte[] fingerprint)
    {
        key = "";
        fingerprint = [];
        var at = 1;
        if (data.Length < 1 || data[0] != Version || !Take(data, ref at, out var keyBytes) || data.Length - at < 16)
        {
            return false;
        }

        key = Encoding.UTF8.GetString(keyBytes);
        fingerprint = data.Slice(at, 16).ToArray();
        return true;
    }

    public static bool TryDecode(ReadOnlyMemory<byte> memory, out string key, out byte[] fingerprint, out ActionOutcome outcome)
    {
        outcome = null!;
        var data = memory.Span;
        if (!TryDecodeHeader(data, out key, out fingerprint))
        {
            return false;
        }

        var at = 1 + 4 + Encoding.UTF8.GetByteCount(key) + 16;
        if (!Take(data, ref at, out var agent) || !Take(data, ref at, out var provider) || data.Length - at < 9)
        {
            return false;
        }

        var ticks = BinaryPrimitives.ReadInt64LittleEndian(data[at..]);
        at += 8;
        var kind = data[at++];
        var bodyStart = at + 4;
        if (!Take(data, ref at, out var body))
        {
            return false;
        }

        try
        {
            outcome = new ActionOutcome
            {
                AgentId = agent.Length == 0 ? null : Encoding.UTF8.GetString(agent),
                ProviderId = provider.Length == 0 ? null : Encoding.UTF8.GetString(provider),
                Duration = TimeSpan.FromTicks(Math.Max(0, ticks)),
                Error = kind == KindError ? Error.Parser.ParseFrom(body) : null,
                OutputJson = kind == KindError ? ReadOnlyMemory<byte>.Empty : memory.Slice(bodyStart, body.Length),
            };
            return kind is KindOutput or KindError;
        }
        catch (InvalidProtocolBufferException)
        {
            return false;
        }
    }

    private static void Put(Span<byte> span, ref int at, byte[] bytes)
    {
        BinaryPrimitives.WriteInt32LittleEndian(span[at..], bytes.Length);
        at += 4;
        bytes.CopyTo(span[at..]);
        at += bytes.Length;
    }

    private static bool Take(ReadOnlySpan<byte> data, ref int at, out ReadOnlySpan<byte> bytes)
    {
        bytes = default;
        if (data.Length - at < 4)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadInt32LittleEndian(data[at..]);
        if (length < 0 || length > data.Length - at - 4)
        {
            return false;
        }

        bytes = data.Slice(at + 4, length);
        at += 4 + length;
        return true;
    }
}
