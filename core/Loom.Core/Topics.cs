using System.Buffers;

namespace Loom.Core;

/// <summary>
/// Topic names and subscription patterns. A topic is dot-separated tokens of
/// <c>[A-Za-z0-9_\-:]</c>; a pattern may also use <c>*</c> (exactly one token) and <c>&gt;</c>
/// (one or more tokens, last position only), as in NATS.
/// </summary>
public static class Topics
{
    /// <summary>Longest topic or pattern, in characters.</summary>
    public const int MaxLength = 512;

    /// <summary>Most tokens in a topic or pattern.</summary>
    public const int MaxTokens = 32;

    private static readonly SearchValues<char> s_tokenChars =
        SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:");

    /// <summary>Validates a concrete topic (what a publisher names). Throws <see cref="InvalidParamsException"/> saying what to fix.</summary>
    public static void ValidateTopic(string topic)
    {
        var error = CheckTopic(topic);
        if (error is not null)
        {
            throw new InvalidParamsException(error, "/topic");
        }
    }

    /// <summary>Validates a subscription pattern. Throws <see cref="InvalidParamsException"/> saying what to fix.</summary>
    public static void ValidatePattern(string pattern)
    {
        var error = Check(pattern, isPattern: true);
        if (error is not null)
        {
            throw new InvalidParamsException(error, "/pattern");
        }
    }

    /// <summary>Whether <paramref name="topic"/> is a valid concrete topic.</summary>
    public static bool IsValidTopic(string topic) => CheckTopic(topic) is null;

    /// <summary>Whether <paramref name="pattern"/> is a valid subscription pattern.</summary>
    public static bool IsValidPattern(string pattern) => Check(pattern, isPattern: true) is null;

    /// <summary>
    /// Whether <paramref name="pattern"/> matches <paramref name="topic"/>. Allocation-free; an
    /// invalid pattern or topic matches nothing (it never throws).
    /// </summary>
    public static bool Matches(string pattern, string topic)
    {
        if (pattern is null || topic is null || pattern.Length == 0 || topic.Length == 0
            || pattern.Length > MaxLength || topic.Length > MaxLength)
        {
            return false;
        }

        var p = pattern.AsSpan();
        var t = topic.AsSpan();
        var tokens = 0;
        while (true)
        {
            var pDot = p.IndexOf('.');
            var tDot = t.IndexOf('.');
            var pToken = pDot < 0 ? p : p[..pDot];
            var tToken = tDot < 0 ? t : t[..tDot];
            if (++tokens > MaxTokens || !IsValidToken(tToken))
            {
                return false;
            }

            if (pToken is ">")
            {
                // '>' is only valid as the last token; it takes this token and everything after it.
                return pDot < 0 && (tDot < 0 || RestIsValid(t[(tDot + 1)..], tokens));
            }

            if (pToken is not "*" && !pToken.SequenceEqual(tToken))
            {
                return false;
            }

            if (pDot < 0 || tDot < 0)
            {
                return pDot < 0 && tDot < 0;
            }

            p = p[(pDot + 1)..];
            t = t[(tDot + 1)..];
        }
    }

    internal static bool IsValidToken(ReadOnlySpan<char> token) =>
        token.Length > 0 && !token.ContainsAnyExcept(s_tokenChars);

    private static bool RestIsValid(ReadOnlySpan<char> rest, int tokens)
    {
        while (true)
        {
            var dot = rest.IndexOf('.');
            if (++tokens > MaxTokens || !IsValidToken(dot < 0 ? rest : rest[..dot]))
            {
                return false;
            }

            if (dot < 0)
            {
                return true;
            }

            rest = rest[(dot + 1)..];
        }
    }

    internal static string? CheckTopic(string topic) => Check(topic, isPattern: false);

    private static string? Check(string value, bool isPattern)
    {
        var what = isPattern ? "pattern" : "topic";
        if (value is null || value.Length == 0)
        {
            return $"The {what} is empty; use dot-separated tokens such as 'orders.created'.";
        }

        if (value.Length > MaxLength)
        {
            return $"The {what} is {value.Length} characters long; the limit is {MaxLength}.";
        }

        var rest = value.AsSpan();
        var index = 0;
        while (true)
        {
            index++;
            if (index > MaxTokens)
            {
                return $"The {what} '{value}' has more than {MaxTokens} tokens; use fewer levels.";
            }

            var dot = rest.IndexOf('.');
            var token = dot < 0 ? rest : rest[..dot];
            if (token.Length == 0)
            {
                return $"The {what} '{value}' has an empty token at position {index}; remove the extra '.' (tokens are separated by exactly one '.', with none at the start or end).";
            }

            if (token is "*" or ">")
            {
                if (!isPattern)
                {
                    return $"The topic '{value}' contains the wildcard '{token}' at token {index}; wildcards are only allowed in subscription patterns. Publish to a concrete topic.";
                }

                if (token is ">" && dot >= 0)
                {
                    return $"The pattern '{value}' has '>' at token {index}, but '>' may only be the last token (it matches the rest of the topic).";
                }
            }
            else if (!IsValidToken(token))
            {
                var bad = token[token.IndexOfAnyExcept(s_tokenChars)];
                if (bad is '*' or '>')
                {
                    return isPattern
                        ? $"The pattern '{value}' uses '{bad}' inside token {index} ('{token}'); a wildcard must be a whole token, e.g. 'a.*' or 'a.>'."
                        : $"The topic '{value}' contains '{bad}' in token {index}; wildcards are only allowed in subscription patterns.";
                }

                var shown = char.IsControl(bad) || char.IsWhiteSpace(bad) ? $"U+{(int)bad:X4}" : $"'{bad}'";
                return $"The {what} '{value}' has the character {shown} in token {index} ('{token}'); tokens may contain only letters A-Z a-z, digits, '_', '-' and ':'.";
            }

            if (dot < 0)
            {
                return null;
            }

            rest = rest[(dot + 1)..];
        }
    }
}
