using System.Globalization;
using System.Security.Cryptography;

namespace Loom.Sdk.Internal;

/// <summary>Cheap ids unique per process and connection: a random prefix and a counter.</summary>
internal sealed class IdGenerator
{
    private readonly string _prefix = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)) + "-";
    private long _next;

    public string Next() => string.Create(CultureInfo.InvariantCulture, $"{_prefix}{Interlocked.Increment(ref _next)}"); // one allocation: the id

    public long NextNumber() => Interlocked.Increment(ref _next);

    /// <summary>A stable agent id for a display name: its allowed characters plus a random suffix.</summary>
    public static string NewAgentId(string name)
    {
        var chars = (string.IsNullOrEmpty(name) ? "agent" : name).Select(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.' or ':' ? c : '-').ToArray();
        var prefix = new string(chars, 0, Math.Min(chars.Length, 100));
        return prefix + "-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
    }
}
