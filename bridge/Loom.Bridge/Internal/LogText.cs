using System.Globalization;
using System.Text;

namespace Loom.Bridge.Internal;

/// <summary>
/// Client-supplied text made fit for a log line: characters that could forge lines or restyle a
/// terminal (CR, LF, ESC and the other control characters, line and paragraph separators,
/// bidirectional overrides) are written as escapes such as <c>\n</c> or <c>\x1B</c>, and the
/// text is cut after a number of characters, saying how many were cut.
/// </summary>
internal static class LogText
{
    // Control characters (C0, DEL, C1), line and paragraph separators, bidirectional marks and overrides.
    private static readonly System.Buffers.SearchValues<char> Escaped = System.Buffers.SearchValues.Create(
        [.. Enumerable.Range(0, 0x20).Select(i => (char)i), .. Enumerable.Range(0x7F, 0x21).Select(i => (char)i),
         '\u2028', '\u2029', '\u200E', '\u200F', '\u202A', '\u202B', '\u202C', '\u202D', '\u202E', '\u2066', '\u2067', '\u2068', '\u2069']);

    /// <summary>Cap for ids and names.</summary>
    public const int Short = 160;

    /// <summary>Cap for messages that quote client input (e.g. why a registration was rejected).</summary>
    public const int Long = 512;

    public static string Clean(string? text, int max = Short)
    {
        if (string.IsNullOrEmpty(text))
        {
            return string.Empty;
        }

        var keep = Math.Min(text.Length, max);
        if (keep < text.Length && char.IsHighSurrogate(text[keep - 1]))
        {
            keep--; // never half a surrogate pair
        }

        var span = text.AsSpan(0, keep);
        if (keep == text.Length && !span.ContainsAny(Escaped))
        {
            return text;
        }

        var builder = new StringBuilder(keep + 32);
        foreach (var c in span)
        {
            _ = c switch
            {
                _ when !Escaped.Contains(c) => builder.Append(c),
                '\n' => builder.Append("\\n"),
                '\r' => builder.Append("\\r"),
                '\t' => builder.Append("\\t"),
                < '\u0100' => builder.Append("\\x").Append(((int)c).ToString("X2", CultureInfo.InvariantCulture)),
                _ => builder.Append("\\u").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture)),
            };
        }

        if (keep < text.Length)
        {
            builder.Append("…(").Append(text.Length - keep).Append(" more characters)");
        }

        return builder.ToString();
    }
}
