using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Core.Internal;

[Flags]
internal enum JsonTypes
{
    None = 0,
    Null = 1,
    Boolean = 2,
    Object = 4,
    Array = 8,
    Number = 16,
    Integer = 32,
    String = 64,
}

/// <summary>A number from a schema or an instance: exact as decimal when it fits, else double.</summary>
internal readonly struct JsonNumber
{
    public JsonNumber(JsonElement element, bool keepText = false)
    {
        HasDecimal = element.TryGetDecimal(out Decimal);
        Double = element.TryGetDouble(out var d) ? d : double.Parse(element.GetRawText(), System.Globalization.CultureInfo.InvariantCulture);
        Text = keepText ? element.GetRawText() : string.Empty;
    }

    public JsonNumber(double value)
    {
        Double = value;
        Text = value.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        if (value is >= -7.9e28 and <= 7.9e28 && Math.Floor(value) == value)
        {
            HasDecimal = true;
            Decimal = (decimal)value;
        }
    }

    public readonly bool HasDecimal;
    public readonly decimal Decimal;
    public readonly double Double;
    public readonly string Text;

    public bool IsInteger => HasDecimal ? decimal.Truncate(Decimal) == Decimal : !double.IsInfinity(Double) && Math.Floor(Double) == Double;

    public int CompareTo(in JsonNumber other) =>
        HasDecimal && other.HasDecimal ? Decimal.CompareTo(other.Decimal) : Double.CompareTo(other.Double);

    public bool IsMultipleOf(in JsonNumber divisor)
    {
        if (HasDecimal && divisor.HasDecimal)
        {
            try
            {
                return Decimal % divisor.Decimal == 0;
            }
            catch (OverflowException)
            {
                // Fall through to doubles.
            }
        }

        var quotient = Double / divisor.Double;
        if (double.IsInfinity(quotient) || double.IsNaN(quotient))
        {
            return false;
        }

        return Math.Abs(quotient - Math.Round(quotient)) <= 1e-9 * Math.Max(1, Math.Abs(quotient));
    }
}

/// <summary>One compiled schema (object or boolean). Fields stay null when the keyword is absent.</summary>
internal sealed class SchemaNode
{
    public static readonly SchemaNode True = new(string.Empty) { BooleanValue = true };

    public SchemaNode(string pointer) => Pointer = pointer;

    /// <summary>Where the schema sits in its document (for messages).</summary>
    public string Pointer { get; }

    public bool? BooleanValue;
    public JsonTypes Types;
    public Dictionary<string, SchemaNode>? Properties;
    public string[]? Required;
    public SchemaNode? AdditionalProperties;
    public (Regex Regex, string Source, SchemaNode Schema)[]? PatternProperties;
    public SchemaNode? PropertyNames;
    public SchemaNode[]? PrefixItems;
    public SchemaNode? Items;
    public SchemaNode? Contains;
    public int? MinContains;
    public int? MaxContains;
    public JsonElement[]? Enum;
    public JsonElement? Const;
    public JsonNumber? Minimum;
    public JsonNumber? Maximum;
    public JsonNumber? ExclusiveMinimum;
    public JsonNumber? ExclusiveMaximum;
    public JsonNumber? MultipleOf;
    public int? MinLength;
    public int? MaxLength;
    public Regex? Pattern;
    public string? PatternSource;
    public int? MinItems;
    public int? MaxItems;
    public bool UniqueItems;
    public int? MinProperties;
    public int? MaxProperties;
    public Dictionary<string, string[]>? DependentRequired;
    public Dictionary<string, SchemaNode>? DependentSchemas;
    public SchemaNode[]? AllOf;
    public SchemaNode[]? AnyOf;
    public SchemaNode[]? OneOf;
    public SchemaNode? Not;
    public SchemaNode? If;
    public SchemaNode? Then;
    public SchemaNode? Else;
    public string? RefPointer;
    public SchemaNode? Ref;
}
