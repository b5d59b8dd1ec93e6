using System.Text.Json;
using Loom.Core.Internal;

namespace Loom.Core;

/// <summary>
/// A compiled JSON Schema (a 2020-12 subset) that validates JSON values and reports the first
/// failure with a JSON pointer and a message that says what is wrong, e.g.
/// <c>/items/0/name: expected string, got number</c>.
/// </summary>
/// <remarks>
/// Supported: boolean schemas, type (string or array), properties, required,
/// additionalProperties, patternProperties, propertyNames, items, prefixItems (and the draft-07
/// array form of items with additionalItems), contains/minContains/maxContains, enum, const,
/// minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, or draft-04 booleans),
/// multipleOf, minLength, maxLength, pattern, minItems, maxItems, uniqueItems, minProperties,
/// maxProperties, dependentRequired, dependentSchemas (and draft-07 dependencies), anyOf,
/// oneOf, allOf, not, if/then/else, and local $ref ("#", "#/$defs/..", "#/definitions/..", any
/// JSON pointer into the document). Annotations (format, title, description, default, examples,
/// $schema, $id, $comment, ...) and unknown keywords are ignored. Keywords whose meaning we
/// cannot honour ($dynamicRef, $recursiveRef, unevaluatedProperties, unevaluatedItems) are
/// rejected when the schema is parsed rather than silently skipped.
/// </remarks>
public sealed class JsonSchema
{
    private static readonly JsonReaderOptions s_readerOptions = new() { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 256 };
    private static readonly JsonDocumentOptions s_documentOptions = new() { CommentHandling = JsonCommentHandling.Disallow, MaxDepth = 256 };

    private readonly SchemaNode _root;

    private JsonSchema(SchemaNode root, string source, bool isAny)
    {
        _root = root;
        Source = source;
        IsAny = isAny;
    }

    /// <summary>The schema that accepts every JSON value (<c>{}</c>).</summary>
    public static JsonSchema Any { get; } = new(SchemaNode.True, "{}", isAny: true);

    /// <summary>True when the schema accepts every JSON value.</summary>
    public bool IsAny { get; }

    /// <summary>The schema text it was parsed from.</summary>
    public string Source { get; }

    /// <summary>
    /// Parses and compiles a schema. An empty (or whitespace) string, <c>{}</c> and <c>true</c>
    /// give <see cref="Any"/>.
    /// </summary>
    /// <exception cref="InvalidParamsException">The schema is not valid JSON or not a valid schema; the message and path say where.</exception>
    public static JsonSchema Parse(string schemaJson)
    {
        if (string.IsNullOrWhiteSpace(schemaJson))
        {
            return Any;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(schemaJson, s_documentOptions);
        }
        catch (JsonException ex)
        {
            throw new InvalidParamsException($"The schema is not valid JSON: {ex.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if ((root.ValueKind == JsonValueKind.Object && !root.EnumerateObject().MoveNext()) || root.ValueKind == JsonValueKind.True)
            {
                return Any;
            }

            // Compiled nodes keep clones of the values they need (enum, const), not the document.
            var node = SchemaCompiler.Compile(root);
            return new JsonSchema(node, schemaJson, isAny: false);
        }
    }

    /// <summary>Validates UTF-8 JSON. Malformed JSON is invalid with path "".</summary>
    public SchemaValidationResult Validate(ReadOnlySpan<byte> utf8Json)
    {
        if (utf8Json.IsEmpty)
        {
            return SchemaValidationResult.Invalid(string.Empty, "the input is empty; expected a JSON value");
        }

        try
        {
            if (IsAny)
            {
                // Well-formedness only: a reader pass, no document.
                var reader = new Utf8JsonReader(utf8Json, s_readerOptions);
                while (reader.Read())
                {
                }

                return SchemaValidationResult.Valid;
            }

            var valueReader = new Utf8JsonReader(utf8Json, s_readerOptions);
            using var document = JsonDocument.ParseValue(ref valueReader);
            while (valueReader.Read())
            {
                // Trailing content after the value makes Read throw.
            }

            return Validate(document.RootElement);
        }
        catch (JsonException ex)
        {
            return SchemaValidationResult.Invalid(string.Empty, $"the input is not valid JSON: {ex.Message}");
        }
    }

    /// <summary>Validates a parsed JSON value.</summary>
    public SchemaValidationResult Validate(JsonElement element)
    {
        if (IsAny)
        {
            return SchemaValidationResult.Valid;
        }

        var error = new SchemaValidator().Validate(_root, element);
        return error is null ? SchemaValidationResult.Valid : SchemaValidationResult.Invalid(error.Value.Path, error.Value.Reason);
    }

    /// <inheritdoc/>
    public override string ToString() => Source;
}

/// <summary>
/// Result of a validation. <see cref="Path"/> is the JSON pointer of the failing value ("" for
/// the root); <see cref="Message"/> starts with that pointer ("(root)" for the root) and says
/// what is wrong, e.g. <c>/items/0/name: expected string, got number</c>.
/// </summary>
public readonly record struct SchemaValidationResult(bool IsValid, string Path, string Message)
{
    internal static SchemaValidationResult Valid => new(true, string.Empty, string.Empty);

    internal static SchemaValidationResult Invalid(string path, string reason) =>
        new(false, path, $"{(path.Length == 0 ? "(root)" : path)}: {reason}");
}
