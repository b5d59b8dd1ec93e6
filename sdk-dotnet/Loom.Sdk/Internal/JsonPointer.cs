using System.Text;

namespace Loom.Sdk.Internal;

/// <summary>Converts System.Text.Json paths (<c>$.items[0]['a b']</c>) to JSON pointers (<c>/items/0/a b</c>).</summary>
internal static class JsonPointer
{
    public static string FromJsonPath(string? path)
    {
        if (string.IsNullOrEmpty(path) || path == "$")
        {
            return "";
        }

        var sb = new StringBuilder();
        var i = path[0] == '$' ? 1 : 0;
        while (i < path.Length)
        {
            var c = path[i];
            if (c == '.')
            {
                var end = i + 1;
                while (end < path.Length && path[end] != '.' && path[end] != '[')
                {
                    end++;
                }

                Append(sb, path.AsSpan(i + 1, end - i - 1));
                i = end;
            }
            else if (c == '[')
            {
                if (i + 1 < path.Length && path[i + 1] == '\'')
                {
                    var close = path.IndexOf("']", i + 2, StringComparison.Ordinal);
                    if (close < 0)
                    {
                        Append(sb, path.AsSpan(i + 2));
                        break;
                    }

                    Append(sb, path.AsSpan(i + 2, close - i - 2));
                    i = close + 2;
                }
                else
                {
                    var close = path.IndexOf(']', i + 1);
                    if (close < 0)
                    {
                        Append(sb, path.AsSpan(i + 1));
                        break;
                    }

                    Append(sb, path.AsSpan(i + 1, close - i - 1));
                    i = close + 1;
                }
            }
            else
            {
                var end = i;
                while (end < path.Length && path[end] != '.' && path[end] != '[')
                {
                    end++;
                }

                Append(sb, path.AsSpan(i, end - i));
                i = end;
            }
        }

        return sb.ToString();
    }

    private static void Append(StringBuilder sb, ReadOnlySpan<char> token)
    {
        sb.Append('/');
        foreach (var c in token)
        {
            _ = c switch
            {
                '~' => sb.Append("~0"),
                '/' => sb.Append("~1"),
                _ => sb.Append(c),
            };
        }
    }
}
