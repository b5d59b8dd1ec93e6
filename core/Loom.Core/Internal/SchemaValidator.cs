using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Loom.Core.Internal;

/// <summary>A validation failure: where (JSON pointer) and what.</summary>
internal readonly record struct SchemaError(string Path, string Reason);

/// <summary>Validates one value against compiled nodes; stops at the first failure.</summary>
internal sealed class SchemaValidator
{
    private const int MaxSchemaDepth = 512;
    private const int MaxListedAlternatives = 4;

    // The instance location as a stack of segments; formatted only when something fails.
    private readonly List<(string? Name, int Index)> _path = [];
    private int _depth;

    public SchemaError? Validate(SchemaNode node, JsonElement value) => Check(node, value);

    internal static string KindName(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private SchemaError? Check(SchemaNode node, JsonElement value)
    {
        if (node.BooleanValue is { } allowed)
        {
            return allowed ? null : Fail("no value is allowed here (the schema is false)");
        }

        if (++_depth > MaxSchemaDepth)
        {
            _depth--;
            return Fail("the schema nests too deeply for this value (a $ref loop?)");
        }

        try
        {
            return CheckTypes(node, value)
                ?? CheckValues(node, value)
                ?? value.ValueKind switch
                {
                    JsonValueKind.Number => CheckNumber(node, value),
                    JsonValueKind.String => CheckString(node, value),
                    JsonValueKind.Array => CheckArray(node, value),
                    JsonValueKind.Object => CheckObject(node, value),
                    _ => null,
                }
                ?? CheckCombinators(node, value)
                ?? (node.Ref is { } target ? Check(target, value) : null);
        }
        finally
        {
            _depth--;
        }
    }

    private SchemaError? CheckTypes(SchemaNode node, JsonElement value)
    {
        var types = node.Types;
        if (types == JsonTypes.None)
        {
            return null;
        }

        var ok = value.ValueKind switch
        {
            JsonValueKind.Null => (types & JsonTypes.Null) != 0,
            JsonValueKind.True or JsonValueKind.False => (types & JsonTypes.Boolean) != 0,
            JsonValueKind.Object => (types & JsonTypes.Object) != 0,
            JsonValueKind.Array => (types & JsonTypes.Array) != 0,
            JsonValueKind.String => (types & JsonTypes.String) != 0,
            JsonValueKind.Number => (types & JsonTypes.Number) != 0 || ((types & JsonTypes.Integer) != 0 && new JsonNumber(value).IsInteger),
            _ => false,
        };
        if (ok)
        {
            return null;
        }

        var got = KindName(value.ValueKind);
        if (value.ValueKind == JsonValueKind.Number && (types & JsonTypes.Integer) != 0)
        {
            got += " " + Truncate(value.GetRawText()); // "expected integer, got number 1.5"
        }

        return Fail($"expected {TypeList(types)}, got {got}");
    }

    private SchemaError? CheckValues(SchemaNode node, JsonElement value)
    {
        if (node.Const is { } constant && !JsonEquality.AreEqual(value, constant))
        {
            return Fail($"must be {Truncate(constant.GetRawText())}, got {Describe(value)}");
        }

        if (node.Enum is { } options)
        {
            foreach (var option in options)
            {
                if (JsonEquality.AreEqual(value, option))
                {
                    return null;
                }
            }

            var listed = new StringBuilder();
            for (var i = 0; i < options.Length && i < 10; i++)
            {
                listed.Append(i == 0 ? string.Empty : ", ").Append(Truncate(options[i].GetRawText()));
            }

            if (options.Length > 10)
            {
                listed.Append(CultureInfo.InvariantCulture, $", ... ({options.Length} values)");
            }

            return Fail($"must be one of {listed}, got {Describe(value)}");
        }

        return null;
    }

    private SchemaError? CheckNumber(SchemaNode node, JsonElement value)
    {
        if (node.Minimum is null && node.Maximum is null && node.ExclusiveMinimum is null && node.ExclusiveMaximum is null && node.MultipleOf is null)
        {
            return null;
        }

        var number = new JsonNumber(value);
        var text = value.GetRawText();
        if (node.Minimum is { } min && number.CompareTo(min) < 0)
        {
            return Fail($"must be >= {min.Text}, got {text}");
        }

        if (node.ExclusiveMinimum is { } xmin && number.CompareTo(xmin) <= 0)
        {
            return Fail($"must be > {xmin.Text}, got {text}");
        }

        if (node.Maximum is { } max && number.CompareTo(max) > 0)
        {
            return Fail($"must be <= {max.Text}, got {text}");
        }

        if (node.ExclusiveMaximum is { } xmax && number.CompareTo(xmax) >= 0)
        {
            return Fail($"must be < {xmax.Text}, got {text}");
        }

        if (node.MultipleOf is { } divisor && !number.IsMultipleOf(divisor))
        {
            return Fail($"must be a multiple of {divisor.Text}, got {text}");
        }

        return null;
    }

    private SchemaError? CheckString(SchemaNode node, JsonElement value)
    {
        if (node.MinLength is null && node.MaxLength is null && node.Pattern is null)
        {
            return null;
        }

        var s = value.GetString()!;
        if (node.MinLength is not null || node.MaxLength is not null)
        {
            // Length in Unicode code points, as JSON Schema counts it.
            var length = 0;
            foreach (var unused in s.EnumerateRunes())
            {
                length++;
            }

            if (node.MinLength is { } minLength && length < minLength)
            {
                return Fail($"must be at least {minLength} character{Plural(minLength)} long, got {length}");
            }

            if (node.MaxLength is { } maxLength && length > maxLength)
            {
                return Fail($"must be at most {maxLength} character{Plural(maxLength)} long, got {length}");
            }
        }

        if (node.Pattern is { } pattern)
        {
            try
            {
                if (!pattern.IsMatch(s))
                {
                    return Fail($"{Truncate(JsonSerializer.Serialize(s))} does not match the pattern \"{node.PatternSource}\"");
                }
            }
            catch (RegexMatchTimeoutException)
            {
                return Fail($"matching the pattern \"{node.PatternSource}\" took too long");
            }
        }

        return null;
    }

    private SchemaError? CheckArray(SchemaNode node, JsonElement value)
    {
        var count = value.GetArrayLength();
        if (node.MinItems is { } minItems && count < minItems)
        {
            return Fail($"must have at least {minItems} item{Plural(minItems)}, got {count}");
        }

        if (node.MaxItems is { } maxItems && count > maxItems)
        {
            return Fail($"must have at most {maxItems} item{Plural(maxItems)}, got {count}");
        }

        if (node.UniqueItems && count > 1 && FindDuplicate(value) is { } duplicate)
        {
            return Fail($"items {duplicate.First} and {duplicate.Second} are equal; items must be unique");
        }

        var prefix = node.PrefixItems;
        if (prefix is not null || node.Items is not null)
        {
            var index = 0;
            foreach (var item in value.EnumerateArray())
            {
                var schema = prefix is not null && index < prefix.Length ? prefix[index] : node.Items;
                if (schema is not null)
                {
                    _path.Add((null, index));
                    var error = schema.BooleanValue == false && index >= (prefix?.Length ?? 0)
                        ? Fail($"must have at most {prefix?.Length ?? 0} item{Plural(prefix?.Length ?? 0)}, got {count} (no items are allowed after those)")
                        : Check(schema, item);
                    _path.RemoveAt(_path.Count - 1);
                    if (error is not null)
                    {
                        return error;
                    }
                }

                index++;
            }
        }

        if (node.Contains is { } contains)
        {
            var matches = 0;
            foreach (var item in value.EnumerateArray())
            {
                if (new SchemaValidator().Check(contains, item) is null)
                {
                    matches++;
                }
            }

            var min = node.MinContains ?? 1;
            if (matches < min)
            {
                return Fail($"must contain at least {min} item{Plural(min)} matching \"contains\", found {matches}");
            }

            if (node.MaxContains is { } max && matches > max)
            {
                return Fail($"must contain at most {max} item{Plural(max)} matching \"contains\", found {matches}");
            }
        }

        return null;
    }

    private SchemaError? CheckObject(SchemaNode node, JsonElement value)
    {
        if (node.MinProperties is not null || node.MaxProperties is not null)
        {
            var count = 0;
            foreach (var unused in value.EnumerateObject())
            {
                count++;
            }

            if (node.MinProperties is { } minProperties && count < minProperties)
            {
                return Fail($"must have at least {minProperties} propert{(minProperties == 1 ? "y" : "ies")}, got {count}");
            }

            if (node.MaxProperties is { } maxProperties && count > maxProperties)
            {
                return Fail($"must have at most {maxProperties} propert{(maxProperties == 1 ? "y" : "ies")}, got {count}");
            }
        }

        if (node.Required is { } required)
        {
            foreach (var name in required)
            {
                if (!value.TryGetProperty(name, out _))
                {
                    // The pointer names the missing member, so a caller can tell which field to add.
                    return new SchemaError(CurrentPath() + "/" + SchemaCompiler.EscapePointerToken(name), $"missing required property \"{name}\"");
                }
            }
        }

        if (node.DependentRequired is { } dependentRequired)
        {
            foreach (var (trigger, names) in dependentRequired)
            {
                if (value.TryGetProperty(trigger, out _))
                {
                    foreach (var name in names)
                    {
                        if (!value.TryGetProperty(name, out _))
                        {
                            return Fail($"missing property \"{name}\", which is required when \"{trigger}\" is present");
                        }
                    }
                }
            }
        }

        var needsWalk = node.Properties is not null || node.PatternProperties is not null || node.AdditionalProperties is not null || node.PropertyNames is not null;
        if (needsWalk)
        {
            foreach (var property in value.EnumerateObject())
            {
                var error = CheckProperty(node, property);
                if (error is not null)
                {
                    return error;
                }
            }
        }

        if (node.DependentSchemas is { } dependentSchemas)
        {
            foreach (var (trigger, schema) in dependentSchemas)
            {
                if (value.TryGetProperty(trigger, out _) && Check(schema, value) is { } error)
                {
                    return error;
                }
            }
        }

        return null;
    }

    private SchemaError? CheckProperty(SchemaNode node, JsonProperty property)
    {
        var name = property.Name;
        _path.Add((name, 0));
        try
        {
            if (node.PropertyNames is { } names)
            {
                using var nameDocument = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(name));
                if (new SchemaValidator().Check(names, nameDocument.RootElement) is { } nameError)
                {
                    return Fail($"the property name \"{name}\" is not allowed: {nameError.Reason}");
                }
            }

            var matched = false;
            if (node.Properties is { } properties && properties.TryGetValue(name, out var schema))
            {
                matched = true;
                if (Check(schema, property.Value) is { } error)
                {
                    return error;
                }
            }

            if (node.PatternProperties is { } patterns)
            {
                foreach (var (regex, source, patternSchema) in patterns)
                {
                    bool isMatch;
                    try
                    {
                        isMatch = regex.IsMatch(name);
                    }
                    catch (RegexMatchTimeoutException)
                    {
                        return Fail($"matching the property name against \"{source}\" took too long");
                    }

                    if (isMatch)
                    {
                        matched = true;
                        if (Check(patternSchema, property.Value) is { } error)
                        {
                            return error;
                        }
                    }
                }
            }

            if (!matched && node.AdditionalProperties is { } additional)
            {
                if (additional.BooleanValue == false)
                {
                    return Fail(node.Properties is { Count: > 0 } known
                        ? $"property \"{name}\" is not allowed; allowed properties: {string.Join(", ", known.Keys.Take(20))}"
                        : $"property \"{name}\" is not allowed");
                }

                return Check(additional, property.Value);
            }

            return null;
        }
        finally
        {
            _path.RemoveAt(_path.Count - 1);
        }
    }

    private SchemaError? CheckCombinators(SchemaNode node, JsonElement value)
    {
        if (node.AllOf is { } allOf)
        {
            foreach (var schema in allOf)
            {
                if (Check(schema, value) is { } error)
                {
                    return error;
                }
            }
        }

        if (node.AnyOf is { } anyOf)
        {
            List<SchemaError>? failures = null;
            foreach (var schema in anyOf)
            {
                var error = CheckIsolated(schema, value);
                if (error is null)
                {
                    failures = null;
                    break;
                }

                (failures ??= []).Add(error.Value);
            }

            if (failures is not null)
            {
                return Fail($"matches none of the anyOf alternatives: {Alternatives(failures)}");
            }
        }

        if (node.OneOf is { } oneOf)
        {
            var passed = new List<int>();
            var failures = new List<SchemaError>();
            for (var i = 0; i < oneOf.Length; i++)
            {
                var error = CheckIsolated(oneOf[i], value);
                if (error is null)
                {
                    passed.Add(i);
                }
                else
                {
                    failures.Add(error.Value);
                }
            }

            if (passed.Count == 0)
            {
                return Fail($"matches none of the oneOf alternatives: {Alternatives(failures)}");
            }

            if (passed.Count > 1)
            {
                return Fail($"matches {passed.Count} of the oneOf alternatives ({string.Join(", ", passed)}); it must match exactly one");
            }
        }

        if (node.Not is { } not && CheckIsolated(not, value) is null)
        {
            return Fail("must not match the \"not\" schema");
        }

        if (node.If is { } condition)
        {
            var branch = CheckIsolated(condition, value) is null ? node.Then : node.Else;
            if (branch is not null && Check(branch, value) is { } error)
            {
                return error;
            }
        }

        return null;
    }

    /// <summary>Checks a subschema whose failure is not itself the answer (anyOf, oneOf, not, if).</summary>
    private SchemaError? CheckIsolated(SchemaNode schema, JsonElement value)
    {
        var depth = _path.Count;
        var error = Check(schema, value);
        if (_path.Count != depth)
        {
            _path.RemoveRange(depth, _path.Count - depth);
        }

        return error;
    }

    private string Alternatives(List<SchemaError> failures)
    {
        var here = CurrentPath();
        var builder = new StringBuilder();
        for (var i = 0; i < failures.Count && i < MaxListedAlternatives; i++)
        {
            var failure = failures[i];
            builder.Append(i == 0 ? string.Empty : "; ").Append(CultureInfo.InvariantCulture, $"[{i}] ");
            if (failure.Path != here)
            {
                builder.Append(failure.Path).Append(": ");
            }

            builder.Append(failure.Reason);
        }

        if (failures.Count > MaxListedAlternatives)
        {
            builder.Append(CultureInfo.InvariantCulture, $"; and {failures.Count - MaxListedAlternatives} more");
        }

        return builder.ToString();
    }

    private static (int First, int Second)? FindDuplicate(JsonElement array)
    {
        var seen = new Dictionary<int, List<(int Index, JsonElement Value)>>();
        var index = 0;
        foreach (var item in array.EnumerateArray())
        {
            var hash = JsonEquality.Hash(item);
            if (seen.TryGetValue(hash, out var bucket))
            {
                foreach (var (otherIndex, other) in bucket)
                {
                    if (JsonEquality.AreEqual(item, other))
                    {
                        return (otherIndex, index);
                    }
                }
            }
            else
            {
                seen[hash] = bucket = [];
            }

            bucket.Add((index, item));
            index++;
        }

        return null;
    }

    private SchemaError Fail(string reason) => new(CurrentPath(), reason);

    private string CurrentPath()
    {
        if (_path.Count == 0)
        {
            return string.Empty;
        }

        var builder = new StringBuilder();
        foreach (var (name, index) in _path)
        {
            builder.Append('/');
            if (name is null)
            {
                builder.Append(index.ToString(CultureInfo.InvariantCulture));
            }
            else
            {
                builder.Append(SchemaCompiler.EscapePointerToken(name));
            }
        }

        return builder.ToString();
    }

    private static string TypeList(JsonTypes types)
    {
        var names = new List<string>(7);
        if ((types & JsonTypes.Object) != 0) names.Add("object");
        if ((types & JsonTypes.Array) != 0) names.Add("array");
        if ((types & JsonTypes.String) != 0) names.Add("string");
        if ((types & JsonTypes.Number) != 0) names.Add("number");
        if ((types & JsonTypes.Integer) != 0 && (types & JsonTypes.Number) == 0) names.Add("integer");
        if ((types & JsonTypes.Boolean) != 0) names.Add("boolean");
        if ((types & JsonTypes.Null) != 0) names.Add("null");
        return names.Count switch
        {
            1 => names[0],
            2 => names[0] + " or " + names[1],
            _ => string.Join(", ", names.Take(names.Count - 1)) + " or " + names[^1],
        };
    }

    private static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        _ => Truncate(value.GetRawText()),
    };

    private static string Truncate(string text) => text.Length <= 60 ? text : string.Concat(text.AsSpan(0, 57), "...");

    private static string Plural(int count) => count == 1 ? string.Empty : "s";
}
