using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Core.Internal;

/// <summary>Compiles a schema document into <see cref="SchemaNode"/>s and resolves local $refs.</summary>
internal sealed class SchemaCompiler
{
    internal static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(200);

    private static readonly Dictionary<string, string> s_rejected = new(StringComparer.Ordinal)
    {
        ["$dynamicRef"] = "dynamic references are not supported; use a local $ref such as \"#/$defs/Name\"",
        ["$recursiveRef"] = "recursive references are not supported; use a local $ref such as \"#\"",
        ["unevaluatedProperties"] = "unevaluatedProperties is not supported; use additionalProperties",
        ["unevaluatedItems"] = "unevaluatedItems is not supported; use items",
    };

    private readonly JsonElement _document;
    private readonly Dictionary<string, SchemaNode> _byPointer = new(StringComparer.Ordinal);
    private readonly List<SchemaNode> _pendingRefs = [];

    private SchemaCompiler(JsonElement document) => _document = document;

    public static SchemaNode Compile(JsonElement root)
    {
        var compiler = new SchemaCompiler(root);
        var node = compiler.CompileAt(root, string.Empty);
        compiler.ResolveRefs();
        return node;
    }

    private SchemaNode CompileAt(JsonElement element, string pointer)
    {
        if (_byPointer.TryGetValue(pointer, out var existing))
        {
            return existing;
        }

        var node = new SchemaNode(pointer);
        _byPointer[pointer] = node;
        switch (element.ValueKind)
        {
            case JsonValueKind.True:
                node.BooleanValue = true;
                return node;
            case JsonValueKind.False:
                node.BooleanValue = false;
                return node;
            case JsonValueKind.Object:
                break;
            default:
                throw Fail(pointer, $"a schema must be an object or a boolean, got {SchemaValidator.KindName(element.ValueKind)}");
        }

        JsonElement? itemsArray = null;
        JsonElement? additionalItems = null;
        bool exclusiveMinimumFlag = false, exclusiveMaximumFlag = false;
        foreach (var property in element.EnumerateObject())
        {
            var name = property.Name;
            var value = property.Value;
            var at = pointer + "/" + EscapePointerToken(name);
            switch (name)
            {
                case "type":
                    node.Types = ParseTypes(value, at);
                    break;
                case "properties":
                    node.Properties = CompileMap(value, at);
                    break;
                case "required":
                    node.Required = ParseStringArray(value, at);
                    break;
                case "additionalProperties":
                    node.AdditionalProperties = CompileAt(value, at);
                    break;
                case "patternProperties":
                    {
                        RequireKind(value, JsonValueKind.Object, at);
                        var list = new List<(Regex, string, SchemaNode)>();
                        foreach (var p in value.EnumerateObject())
                        {
                            var pat = at + "/" + EscapePointerToken(p.Name);
                            list.Add((CompileRegex(p.Name, pat), p.Name, CompileAt(p.Value, pat)));
                        }

                        node.PatternProperties = [.. list];
                        break;
                    }

                case "propertyNames":
                    node.PropertyNames = CompileAt(value, at);
                    break;
                case "items":
                    if (value.ValueKind == JsonValueKind.Array)
                    {
                        itemsArray = value; // draft-07 tuple form
                    }
                    else
                    {
                        node.Items = CompileAt(value, at);
                    }

                    break;
                case "additionalItems":
                    additionalItems = value;
                    break;
                case "prefixItems":
                    node.PrefixItems = CompileArray(value, at);
                    break;
                case "contains":
                    node.Contains = CompileAt(value, at);
                    break;
                case "minContains":
                    node.MinContains = ParseCount(value, at);
                    break;
                case "maxContains":
                    node.MaxContains = ParseCount(value, at);
                    break;
                case "enum":
                    {
                        RequireKind(value, JsonValueKind.Array, at);
                        var values = new List<JsonElement>();
                        foreach (var item in value.EnumerateArray())
                        {
                            values.Add(item.Clone());
                        }

                        if (values.Count == 0)
                        {
                            throw Fail(at, "enum must list at least one value");
                        }

                        node.Enum = [.. values];
                        break;
                    }

                case "const":
                    node.Const = value.Clone();
                    break;
                case "minimum":
                    node.Minimum = ParseNumber(value, at);
                    break;
                case "maximum":
                    node.Maximum = ParseNumber(value, at);
                    break;
                case "exclusiveMinimum":
                    if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    {
                        exclusiveMinimumFlag = value.ValueKind == JsonValueKind.True; // draft-04
                    }
                    else
                    {
                        node.ExclusiveMinimum = ParseNumber(value, at);
                    }

                    break;
                case "exclusiveMaximum":
                    if (value.ValueKind is JsonValueKind.True or JsonValueKind.False)
                    {
                        exclusiveMaximumFlag = value.ValueKind == JsonValueKind.True; // draft-04
                    }
                    else
                    {
                        node.ExclusiveMaximum = ParseNumber(value, at);
                    }

                    break;
                case "multipleOf":
                    {
                        var number = ParseNumber(value, at);
                        if (number.Double <= 0)
                        {
                            throw Fail(at, $"multipleOf must be greater than 0, got {number.Text}");
                        }

                        node.MultipleOf = number;
                        break;
                    }

                case "minLength":
                    node.MinLength = ParseCount(value, at);
                    break;
                case "maxLength":
                    node.MaxLength = ParseCount(value, at);
                    break;
                case "pattern":
                    RequireKind(value, JsonValueKind.String, at);
                    node.PatternSource = value.GetString()!;
                    node.Pattern = CompileRegex(node.PatternSource, at);
                    break;
                case "minItems":
                    node.MinItems = ParseCount(value, at);
                    break;
                case "maxItems":
                    node.MaxItems = ParseCount(value, at);
                    break;
                case "uniqueItems":
                    node.UniqueItems = ParseBool(value, at);
                    break;
                case "minProperties":
                    node.MinProperties = ParseCount(value, at);
                    break;
                case "maxProperties":
                    node.MaxProperties = ParseCount(value, at);
                    break;
                case "dependentRequired":
                    {
                        RequireKind(value, JsonValueKind.Object, at);
                        var map = node.DependentRequired ?? new Dictionary<string, string[]>(StringComparer.Ordinal);
                        foreach (var p in value.EnumerateObject())
                        {
                            map[p.Name] = ParseStringArray(p.Value, at + "/" + EscapePointerToken(p.Name));
                        }

                        node.DependentRequired = map;
                        break;
                    }

                case "dependentSchemas":
                    {
                        var map = CompileMap(value, at);
                        if (node.DependentSchemas is not null)
                        {
                            foreach (var pair in node.DependentSchemas)
                            {
                                map.TryAdd(pair.Key, pair.Value);
                            }
                        }

                        node.DependentSchemas = map;
                        break;
                    }

                case "dependencies":
                    {
                        // draft-07: an array means dependentRequired, a schema dependentSchemas.
                        RequireKind(value, JsonValueKind.Object, at);
                        foreach (var p in value.EnumerateObject())
                        {
                            var pat = at + "/" + EscapePointerToken(p.Name);
                            if (p.Value.ValueKind == JsonValueKind.Array)
                            {
                                (node.DependentRequired ??= new(StringComparer.Ordinal))[p.Name] = ParseStringArray(p.Value, pat);
                            }
                            else
                            {
                                (node.DependentSchemas ??= new(StringComparer.Ordinal))[p.Name] = CompileAt(p.Value, pat);
                            }
                        }

                        break;
                    }

                case "allOf":
                    node.AllOf = CompileArray(value, at);
                    break;
                case "anyOf":
                    node.AnyOf = CompileArray(value, at);
                    break;
                case "oneOf":
                    node.OneOf = CompileArray(value, at);
                    break;
                case "not":
                    node.Not = CompileAt(value, at);
                    break;
                case "if":
                    node.If = CompileAt(value, at);
                    break;
                case "then":
                    node.Then = CompileAt(value, at);
                    break;
                case "else":
                    node.Else = CompileAt(value, at);
                    break;
                case "$ref":
                    RequireKind(value, JsonValueKind.String, at);
                    node.RefPointer = ParseRef(value.GetString()!, at);
                    _pendingRefs.Add(node);
                    break;
                default:
                    if (s_rejected.TryGetValue(name, out var why))
                    {
                        throw Fail(at, why);
                    }

                    // Annotations and unknown keywords carry no validation.
                    break;
            }
        }

        // Definitions are compiled eagerly so that their errors surface at parse time.
        foreach (var definitions in (ReadOnlySpan<string>)["$defs", "definitions"])
        {
            if (element.TryGetProperty(definitions, out var defs))
            {
                CompileMap(defs, pointer + "/" + EscapePointerToken(definitions));
            }
        }

        if (itemsArray is { } tuple)
        {
            node.PrefixItems = CompileArray(tuple, pointer + "/items");
            if (additionalItems is { } extra)
            {
                node.Items = CompileAt(extra, pointer + "/additionalItems");
            }
        }

        if (exclusiveMinimumFlag && node.Minimum is { } min)
        {
            node.ExclusiveMinimum = min;
            node.Minimum = null;
        }

        if (exclusiveMaximumFlag && node.Maximum is { } max)
        {
            node.ExclusiveMaximum = max;
            node.Maximum = null;
        }

        return node;
    }

    private void ResolveRefs()
    {
        // Resolving may compile new subtrees with refs of their own: loop until none is pending.
        for (var i = 0; i < _pendingRefs.Count; i++)
        {
            var node = _pendingRefs[i];
            var pointer = node.RefPointer!;
            if (!_byPointer.TryGetValue(pointer, out var target))
            {
                var element = Navigate(pointer, node.Pointer);
                target = CompileAt(element, pointer);
            }

            node.Ref = target;
        }
    }

    private JsonElement Navigate(string pointer, string refAt)
    {
        var current = _document;
        if (pointer.Length == 0)
        {
            return current;
        }

        foreach (var rawToken in pointer[1..].Split('/'))
        {
            var token = rawToken.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            if (current.ValueKind == JsonValueKind.Object && current.TryGetProperty(token, out var next))
            {
                current = next;
            }
            else if (current.ValueKind == JsonValueKind.Array && int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index < current.GetArrayLength())
            {
                current = current[index];
            }
            else
            {
                throw Fail(refAt + "/$ref", $"$ref \"#{pointer}\" does not resolve: there is nothing at \"{pointer}\" in this schema");
            }
        }

        return current;
    }

    private static string ParseRef(string reference, string at)
    {
        if (!reference.StartsWith('#'))
        {
            throw Fail(at, $"$ref \"{reference}\" is not supported: only references inside the same schema (\"#\", \"#/$defs/Name\", \"#/definitions/Name\") are");
        }

        var fragment = Uri.UnescapeDataString(reference[1..]);
        if (fragment.Length > 0 && fragment[0] != '/')
        {
            throw Fail(at, $"$ref \"{reference}\" names an anchor; only JSON-pointer references (\"#/$defs/Name\") are supported");
        }

        // Canonical form: the same escaping our node pointers use.
        if (fragment.Length == 0)
        {
            return string.Empty;
        }

        var builder = new StringBuilder();
        foreach (var rawToken in fragment[1..].Split('/'))
        {
            var token = rawToken.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
            builder.Append('/').Append(EscapePointerToken(token));
        }

        return builder.ToString();
    }

    private Dictionary<string, SchemaNode> CompileMap(JsonElement value, string at)
    {
        RequireKind(value, JsonValueKind.Object, at);
        var map = new Dictionary<string, SchemaNode>(StringComparer.Ordinal);
        foreach (var p in value.EnumerateObject())
        {
            map[p.Name] = CompileAt(p.Value, at + "/" + EscapePointerToken(p.Name));
        }

        return map;
    }

    private SchemaNode[] CompileArray(JsonElement value, string at)
    {
        RequireKind(value, JsonValueKind.Array, at);
        var list = new List<SchemaNode>();
        var i = 0;
        foreach (var item in value.EnumerateArray())
        {
            list.Add(CompileAt(item, at + "/" + i.ToString(CultureInfo.InvariantCulture)));
            i++;
        }

        if (list.Count == 0)
        {
            throw Fail(at, "must list at least one schema");
        }

        return [.. list];
    }

    private static JsonTypes ParseTypes(JsonElement value, string at)
    {
        if (value.ValueKind == JsonValueKind.String)
        {
            return ParseType(value.GetString()!, at);
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw Fail(at, $"type must be a string or an array of strings, got {SchemaValidator.KindName(value.ValueKind)}");
        }

        var types = JsonTypes.None;
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw Fail(at, $"type must be a string or an array of strings; found {SchemaValidator.KindName(item.ValueKind)} in the array");
            }

            types |= ParseType(item.GetString()!, at);
        }

        if (types == JsonTypes.None)
        {
            throw Fail(at, "type must name at least one type");
        }

        return types;
    }

    private static JsonTypes ParseType(string name, string at) => name switch
    {
        "null" => JsonTypes.Null,
        "boolean" => JsonTypes.Boolean,
        "object" => JsonTypes.Object,
        "array" => JsonTypes.Array,
        "number" => JsonTypes.Number,
        "integer" => JsonTypes.Integer,
        "string" => JsonTypes.String,
        _ => throw Fail(at, $"\"{name}\" is not a JSON Schema type; use one of null, boolean, object, array, number, integer, string"),
    };

    private static string[] ParseStringArray(JsonElement value, string at)
    {
        RequireKind(value, JsonValueKind.Array, at);
        var list = new List<string>();
        foreach (var item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.String)
            {
                throw Fail(at, $"must be an array of strings; found {SchemaValidator.KindName(item.ValueKind)}");
            }

            list.Add(item.GetString()!);
        }

        return [.. list];
    }

    private static JsonNumber ParseNumber(JsonElement value, string at)
    {
        if (value.ValueKind != JsonValueKind.Number)
        {
            throw Fail(at, $"must be a number, got {SchemaValidator.KindName(value.ValueKind)}");
        }

        return new JsonNumber(value, keepText: true);
    }

    private static int ParseCount(JsonElement value, string at)
    {
        if (value.ValueKind == JsonValueKind.Number)
        {
            var number = new JsonNumber(value, keepText: true);
            if (number.IsInteger && number.Double >= 0)
            {
                return number.Double >= int.MaxValue ? int.MaxValue : (int)number.Double;
            }

            throw Fail(at, $"must be a non-negative integer, got {number.Text}");
        }

        throw Fail(at, $"must be a non-negative integer, got {SchemaValidator.KindName(value.ValueKind)}");
    }

    private static bool ParseBool(JsonElement value, string at) => value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Fail(at, $"must be true or false, got {SchemaValidator.KindName(value.ValueKind)}"),
    };

    private static void RequireKind(JsonElement value, JsonValueKind kind, string at)
    {
        if (value.ValueKind != kind)
        {
            throw Fail(at, $"must be {(kind is JsonValueKind.Array or JsonValueKind.Object ? "an " : "a ")}{SchemaValidator.KindName(kind)}, got {SchemaValidator.KindName(value.ValueKind)}");
        }
    }

    private static Regex CompileRegex(string pattern, string at)
    {
        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant, RegexTimeout);
        }
        catch (ArgumentException ex)
        {
            throw Fail(at, $"\"{pattern}\" is not a valid regular expression: {ex.Message}");
        }
    }

    private static InvalidParamsException Fail(string pointer, string message) =>
        new($"Invalid schema at {(pointer.Length == 0 ? "(root)" : pointer)}: {message}.", pointer);

    internal static string EscapePointerToken(string token) =>
        token.Contains('~', StringComparison.Ordinal) || token.Contains('/', StringComparison.Ordinal)
            ? token.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal)
            : token;
}
