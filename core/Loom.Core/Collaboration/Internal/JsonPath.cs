using System.Globalization;
using System.Text.Json;

namespace Loom.Core.Collaboration.Internal;

/// <summary>Reads values out of reply payloads by JSON pointer (RFC 6901).</summary>
internal static class JsonPath
{
    /// <summary>Whether <paramref name="pointer"/> is "" or a well-formed pointer ("/a/0/b~1c").</summary>
    public static bool IsValidPointer(string pointer)
    {
        if (pointer.Length == 0)
        {
            return true;
        }

        if (pointer[0] != '/')
        {
            return false;
        }

        for (var i = 0; i < pointer.Length; i++)
        {
            if (pointer[i] == '~' && (i + 1 >= pointer.Length || pointer[i + 1] is not ('0' or '1')))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Parses UTF-8 JSON and returns the value at the pointer (cloned), or null when the payload is not JSON or the pointer is absent.</summary>
    public static JsonElement? Select(ReadOnlyMemory<byte> json, string pointer)
    {
        if (json.IsEmpty)
        {
            return null;
        }

        try
        {
            using var doc = JsonDocument.Parse(json);
            return Resolve(doc.RootElement, pointer) is { } found ? found.Clone() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The number at the pointer, or null with a reason.</summary>
    public static double? Number(ReadOnlyMemory<byte> json, string pointer, out string reason)
    {
        var value = Select(json, pointer);
        if (value is null)
        {
            reason = json.IsEmpty ? "the bid is empty" : $"the bid has no value at '{pointer}' (or is not JSON)";
            return null;
        }

        if (value.Value.ValueKind != JsonValueKind.Number || !value.Value.TryGetDouble(out var number) || !double.IsFinite(number))
        {
            reason = $"the value at '{pointer}' is {value.Value.ValueKind.ToString().ToLowerInvariant()}, not a number";
            return null;
        }

        reason = "";
        return number;
    }

    private static JsonElement? Resolve(JsonElement root, string pointer)
    {
        if (pointer.Length == 0)
        {
            return root;
        }

        var current = root;
        foreach (var raw in pointer[1..].Split('/'))
        {
            var token = raw.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            switch (current.ValueKind)
            {
                case JsonValueKind.Object:
                    if (!current.TryGetProperty(token, out current))
                    {
                        return null;
                    }

                    break;
                case JsonValueKind.Array:
                    if (!int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || index >= current.GetArrayLength())
                    {
                        return null;
                    }

                    current = current[index];
                    break;
                default:
                    return null;
            }
        }

        return current;
    }
}
