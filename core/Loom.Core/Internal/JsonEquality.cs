using System.Text.Json;

namespace Loom.Core.Internal;

/// <summary>JSON value equality as JSON Schema defines it: numbers by value, objects regardless of member order.</summary>
internal static class JsonEquality
{
    public static bool AreEqual(JsonElement a, JsonElement b)
    {
        var kind = a.ValueKind;
        if (kind != b.ValueKind)
        {
            return false;
        }

        switch (kind)
        {
            case JsonValueKind.Number:
                return new JsonNumber(a).CompareTo(new JsonNumber(b)) == 0;
            case JsonValueKind.String:
                return a.ValueEquals(b.GetString());
            case JsonValueKind.Array:
                {
                    if (a.GetArrayLength() != b.GetArrayLength())
                    {
                        return false;
                    }

                    using var ea = a.EnumerateArray();
                    using var eb = b.EnumerateArray();
                    while (ea.MoveNext() && eb.MoveNext())
                    {
                        if (!AreEqual(ea.Current, eb.Current))
                        {
                            return false;
                        }
                    }

                    return true;
                }

            case JsonValueKind.Object:
                {
                    var count = 0;
                    foreach (var property in a.EnumerateObject())
                    {
                        count++;
                        if (!b.TryGetProperty(property.Name, out var other) || !AreEqual(property.Value, other))
                        {
                            return false;
                        }
                    }

                    var countB = 0;
                    foreach (var unused in b.EnumerateObject())
                    {
                        countB++;
                    }

                    return count == countB;
                }

            default:
                return true; // null, true, false
        }
    }

    /// <summary>A hash consistent with <see cref="AreEqual"/>.</summary>
    public static int Hash(JsonElement value)
    {
        switch (value.ValueKind)
        {
            case JsonValueKind.Number:
                return new JsonNumber(value).Double.GetHashCode();
            case JsonValueKind.String:
                return StringComparer.Ordinal.GetHashCode(value.GetString()!);
            case JsonValueKind.Array:
                {
                    var hash = new HashCode();
                    foreach (var item in value.EnumerateArray())
                    {
                        hash.Add(Hash(item));
                    }

                    return hash.ToHashCode();
                }

            case JsonValueKind.Object:
                {
                    // Order-independent: members are combined by addition.
                    var sum = 17;
                    foreach (var property in value.EnumerateObject())
                    {
                        sum = unchecked(sum + HashCode.Combine(StringComparer.Ordinal.GetHashCode(property.Name), Hash(property.Value)));
                    }

                    return sum;
                }

            default:
                return (int)value.ValueKind;
        }
    }
}
