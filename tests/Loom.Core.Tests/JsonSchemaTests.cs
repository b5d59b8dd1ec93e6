using System.Text;
using System.Text.Json;

namespace Loom.Core.Tests;

public class JsonSchemaTests
{
    private static SchemaValidationResult Check(string schema, string json) =>
        JsonSchema.Parse(schema).Validate(Encoding.UTF8.GetBytes(json));

    private static void Valid(string schema, string json)
    {
        var result = Check(schema, json);
        Assert.True(result.IsValid, $"expected {json} to be valid against {schema}; got {result.Message}");
    }

    private static void Invalid(string schema, string json, string path, string message)
    {
        var result = Check(schema, json);
        Assert.False(result.IsValid, $"expected {json} to be invalid against {schema}");
        Assert.Equal(path, result.Path);
        Assert.Equal(message, result.Message);
    }

    [Fact]
    public void The_example_from_the_contract()
    {
        const string schema = """
            {"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"}}}}}}
            """;
        Invalid(schema, """{"items":[{"name":5}]}""", "/items/0/name", "/items/0/name: expected string, got number");
        Valid(schema, """{"items":[{"name":"a"}]}""");
    }

    [Fact]
    public void Any_accepts_every_well_formed_value()
    {
        foreach (var text in new[] { "", "  ", "{}", "true" })
        {
            Assert.Same(JsonSchema.Any, JsonSchema.Parse(text));
        }

        Assert.True(JsonSchema.Any.Validate("[1,2,{\"a\":null}]"u8).IsValid);
        var bad = JsonSchema.Any.Validate("{\"a\":"u8);
        Assert.False(bad.IsValid);
        Assert.Equal("", bad.Path);
        Assert.StartsWith("(root): the input is not valid JSON", bad.Message, StringComparison.Ordinal);
        Assert.False(JsonSchema.Any.Validate(""u8).IsValid);
    }

    [Fact]
    public void Malformed_input_is_invalid_at_the_root()
    {
        var schema = JsonSchema.Parse("""{"type":"object"}""");
        foreach (var text in new[] { "{", "{} x", "{'a':1}", "[1,]", "" })
        {
            var result = schema.Validate(Encoding.UTF8.GetBytes(text));
            Assert.False(result.IsValid, text);
            Assert.Equal("", result.Path);
        }
    }

    [Theory]
    [InlineData("\"string\"", "\"x\"", null)]
    [InlineData("\"string\"", "1", "expected string, got number")]
    [InlineData("\"integer\"", "1", null)]
    [InlineData("\"integer\"", "1.0", null)]
    [InlineData("\"integer\"", "1.5", "expected integer, got number 1.5")]
    [InlineData("\"number\"", "1.5", null)]
    [InlineData("\"number\"", "\"1\"", "expected number, got string")]
    [InlineData("\"boolean\"", "false", null)]
    [InlineData("\"boolean\"", "0", "expected boolean, got number")]
    [InlineData("\"null\"", "null", null)]
    [InlineData("\"object\"", "[]", "expected object, got array")]
    [InlineData("\"array\"", "{}", "expected array, got object")]
    [InlineData("[\"string\",\"null\"]", "null", null)]
    [InlineData("[\"string\",\"null\"]", "3", "expected string or null, got number")]
    [InlineData("[\"object\",\"array\",\"integer\"]", "true", "expected object, array or integer, got boolean")]
    public void Type(string type, string json, string? error)
    {
        var schema = $$"""{"type":{{type}}}""";
        if (error is null)
        {
            Valid(schema, json);
        }
        else
        {
            Invalid(schema, json, "", "(root): " + error);
        }
    }

    [Fact]
    public void Properties_required_and_additional_properties()
    {
        const string schema = """
            {"type":"object","properties":{"a":{"type":"string"},"b/c":{"type":"integer"}},"required":["a"],"additionalProperties":false}
            """;
        Valid(schema, """{"a":"x","b/c":2}""");
        Invalid(schema, """{"b/c":2}""", "/a", "/a: missing required property \"a\"");
        Invalid(schema, """{"a":"x","b/c":"no"}""", "/b~1c", "/b~1c: expected integer, got string");
        Invalid(schema, """{"a":"x","z":1}""", "/z", "/z: property \"z\" is not allowed; allowed properties: a, b/c");

        const string typed = """{"additionalProperties":{"type":"number"},"properties":{"k":{}}}""";
        Valid(typed, """{"k":"anything","n":1}""");
        Invalid(typed, """{"n":"1"}""", "/n", "/n: expected number, got string");
    }

    [Fact]
    public void Pattern_properties_and_property_names()
    {
        const string schema = """{"patternProperties":{"^x-":{"type":"string"}},"additionalProperties":false,"propertyNames":{"maxLength":5}}""";
        Valid(schema, """{"x-a":"1"}""");
        Invalid(schema, """{"x-a":1}""", "/x-a", "/x-a: expected string, got number");
        Invalid(schema, """{"y":1}""", "/y", "/y: property \"y\" is not allowed");
        Invalid(schema, """{"x-long":"1"}""", "/x-long", "/x-long: the property name \"x-long\" is not allowed: must be at most 5 characters long, got 6");
    }

    [Fact]
    public void Items_and_prefix_items()
    {
        Valid("""{"items":{"type":"integer"}}""", "[1,2,3]");
        Invalid("""{"items":{"type":"integer"}}""", "[1,\"2\"]", "/1", "/1: expected integer, got string");

        const string tuple = """{"prefixItems":[{"type":"string"},{"type":"number"}],"items":false}""";
        Valid(tuple, """["a",1]""");
        Valid(tuple, """["a"]""");
        Invalid(tuple, """[1]""", "/0", "/0: expected string, got number");
        Invalid(tuple, """["a",1,true]""", "/2", "/2: must have at most 2 items, got 3 (no items are allowed after those)");

        // draft-07 tuple form.
        const string draft7 = """{"items":[{"type":"string"}],"additionalItems":{"type":"boolean"}}""";
        Valid(draft7, """["a",true,false]""");
        Invalid(draft7, """["a",1]""", "/1", "/1: expected boolean, got number");
    }

    [Fact]
    public void Array_sizes_uniqueness_and_contains()
    {
        Invalid("""{"minItems":2}""", "[1]", "", "(root): must have at least 2 items, got 1");
        Invalid("""{"maxItems":1}""", "[1,2]", "", "(root): must have at most 1 item, got 2");
        Valid("""{"uniqueItems":true}""", """[1,"1",{"a":1},{"a":2},[1]]""");
        Invalid("""{"uniqueItems":true}""", """[1,2,1.0]""", "", "(root): items 0 and 2 are equal; items must be unique");
        Invalid("""{"uniqueItems":true}""", """[{"a":1,"b":2},{"b":2,"a":1}]""", "", "(root): items 0 and 1 are equal; items must be unique");
        Valid("""{"contains":{"type":"string"}}""", """[1,"a"]""");
        Invalid("""{"contains":{"type":"string"}}""", """[1,2]""", "", "(root): must contain at least 1 item matching \"contains\", found 0");
        Invalid("""{"contains":{"type":"string"},"maxContains":1}""", """["a","b"]""", "", "(root): must contain at most 1 item matching \"contains\", found 2");
    }

    [Fact]
    public void Enum_and_const()
    {
        Valid("""{"enum":["a",1,null,{"x":[1]}]}""", """{"x":[1.0]}""");
        Invalid("""{"enum":["a","b"]}""", "\"c\"", "", "(root): must be one of \"a\", \"b\", got \"c\"");
        Valid("""{"const":3}""", "3.0");
        Invalid("""{"properties":{"kind":{"const":"circle"}}}""", """{"kind":"square"}""", "/kind", "/kind: must be \"circle\", got \"square\"");
    }

    [Fact]
    public void Numeric_bounds()
    {
        Invalid("""{"minimum":5}""", "4", "", "(root): must be >= 5, got 4");
        Valid("""{"minimum":5}""", "5");
        Invalid("""{"exclusiveMinimum":5}""", "5", "", "(root): must be > 5, got 5");
        Invalid("""{"maximum":1.5}""", "1.6", "", "(root): must be <= 1.5, got 1.6");
        Invalid("""{"exclusiveMaximum":0}""", "0", "", "(root): must be < 0, got 0");
        Valid("""{"multipleOf":0.1}""", "0.3");
        Invalid("""{"multipleOf":0.1}""", "0.35", "", "(root): must be a multiple of 0.1, got 0.35");
        Valid("""{"multipleOf":3}""", "9");
        Invalid("""{"multipleOf":3}""", "10", "", "(root): must be a multiple of 3, got 10");
        Valid("""{"type":"integer"}""", "1e30");
        Valid("""{"minimum":0}""", "\"not a number\""); // numeric keywords ignore other types
        // draft-04 boolean exclusive bounds
        Invalid("""{"minimum":5,"exclusiveMinimum":true}""", "5", "", "(root): must be > 5, got 5");
    }

    [Fact]
    public void String_length_and_pattern()
    {
        Invalid("""{"minLength":3}""", "\"ab\"", "", "(root): must be at least 3 characters long, got 2");
        Invalid("""{"maxLength":2}""", "\"abc\"", "", "(root): must be at most 2 characters long, got 3");
        Valid("""{"maxLength":2}""", "\"\uD83D\uDE00\uD83D\uDE00\""); // code points, not UTF-16 units
        Valid("""{"pattern":"^[a-z]+$"}""", "\"abc\"");
        Invalid("""{"pattern":"^[a-z]+$"}""", "\"ab1\"", "", "(root): \"ab1\" does not match the pattern \"^[a-z]+$\"");
        Valid("""{"pattern":"b"}""", "\"abc\""); // not anchored
    }

    [Fact]
    public void Object_sizes_and_dependencies()
    {
        Invalid("""{"minProperties":1}""", "{}", "", "(root): must have at least 1 property, got 0");
        Invalid("""{"maxProperties":1}""", """{"a":1,"b":2}""", "", "(root): must have at most 1 property, got 2");
        Invalid("""{"dependentRequired":{"card":["cvv"]}}""", """{"card":"1"}""", "", "(root): missing property \"cvv\", which is required when \"card\" is present");
        Valid("""{"dependentRequired":{"card":["cvv"]}}""", """{"cvv":"1"}""");
        Invalid("""{"dependentSchemas":{"a":{"required":["b"]}}}""", """{"a":1}""", "/b", "/b: missing required property \"b\"");
    }

    [Fact]
    public void Combinators()
    {
        const string optional = """{"properties":{"name":{"anyOf":[{"type":"string"},{"type":"null"}]}}}""";
        Valid(optional, """{"name":null}""");
        Invalid(optional, """{"name":3}""", "/name", "/name: matches none of the anyOf alternatives: [0] expected string, got number; [1] expected null, got number");

        const string oneOf = """{"oneOf":[{"type":"integer"},{"minimum":2}]}""";
        Valid(oneOf, "1");
        Valid(oneOf, "2.5");
        Invalid(oneOf, "3", "", "(root): matches 2 of the oneOf alternatives (0, 1); it must match exactly one");
        Invalid(oneOf, "1.5", "", "(root): matches none of the oneOf alternatives: [0] expected integer, got number 1.5; [1] must be >= 2, got 1.5");

        Invalid("""{"allOf":[{"type":"number"},{"maximum":3}]}""", "4", "", "(root): must be <= 3, got 4");
        Invalid("""{"not":{"type":"string"}}""", "\"s\"", "", "(root): must not match the \"not\" schema");
        Valid("""{"not":{"type":"string"}}""", "1");

        const string conditional = """{"if":{"properties":{"kind":{"const":"a"}}},"then":{"required":["x"]},"else":{"required":["y"]}}""";
        Valid(conditional, """{"kind":"a","x":1}""");
        Invalid(conditional, """{"kind":"a"}""", "/x", "/x: missing required property \"x\"");
        Invalid(conditional, """{"kind":"b"}""", "/y", "/y: missing required property \"y\"");

        const string nested = """{"anyOf":[{"properties":{"a":{"properties":{"b":{"type":"string"}}}}},{"type":"string"}]}""";
        Invalid(nested, """{"a":{"b":1}}""", "", "(root): matches none of the anyOf alternatives: [0] /a/b: expected string, got number; [1] expected string, got object");
    }

    [Fact]
    public void Refs_to_defs_definitions_and_the_root()
    {
        const string tree = """
            {"$defs":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["value"]}},
             "$ref":"#/$defs/node"}
            """;
        Valid(tree, """{"value":1,"children":[{"value":2,"children":[{"value":3}]}]}""");
        Invalid(tree, """{"value":1,"children":[{"value":2,"children":[{"value":"3"}]}]}""", "/children/0/children/0/value", "/children/0/children/0/value: expected integer, got string");

        const string root = """{"type":"object","properties":{"next":{"$ref":"#"}},"additionalProperties":false}""";
        Valid(root, """{"next":{"next":{}}}""");
        Invalid(root, """{"next":{"bad":1}}""", "/next/bad", "/next/bad: property \"bad\" is not allowed; allowed properties: next");

        const string draft7 = """{"definitions":{"a b":{"type":"string"}},"properties":{"x":{"$ref":"#/definitions/a%20b"}}}""";
        Invalid(draft7, """{"x":1}""", "/x", "/x: expected string, got number");

        Valid("""{"properties":{"a":{"type":"string"},"b":{"$ref":"#/properties/a"}}}""", """{"b":"s"}""");
    }

    [Fact]
    public void A_ref_loop_fails_instead_of_overflowing_the_stack()
    {
        var result = Check("""{"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}""", "1");
        Assert.False(result.IsValid);
        Assert.Contains("$ref loop", result.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Boolean_schemas()
    {
        Valid("""{"properties":{"a":true}}""", """{"a":1}""");
        Invalid("""{"properties":{"a":false}}""", """{"a":1}""", "/a", "/a: no value is allowed here (the schema is false)");
        Invalid("false", "1", "", "(root): no value is allowed here (the schema is false)");
    }

    [Fact]
    public void Annotations_and_unknown_keywords_are_ignored()
    {
        Valid("""{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","title":"T","description":"d","default":1,"examples":[1],"format":"email","x-vendor":{"any":"thing"}}""", "\"not an email\"");
    }

    [Theory]
    [InlineData("""{"type":"strin"}""", "/type", "\"strin\" is not a JSON Schema type")]
    [InlineData("""{"type":5}""", "/type", "type must be a string or an array of strings, got number")]
    [InlineData("""{"minLength":-1}""", "/minLength", "must be a non-negative integer, got -1")]
    [InlineData("""{"maxItems":1.5}""", "/maxItems", "must be a non-negative integer, got 1.5")]
    [InlineData("""{"multipleOf":0}""", "/multipleOf", "multipleOf must be greater than 0")]
    [InlineData("""{"pattern":"(unclosed"}""", "/pattern", "is not a valid regular expression")]
    [InlineData("""{"properties":{"a":{"$ref":"#/$defs/missing"}}}""", "/properties/a/$ref", "does not resolve")]
    [InlineData("""{"$ref":"other.json#/x"}""", "/$ref", "only references inside the same schema")]
    [InlineData("""{"$ref":"#anchor"}""", "/$ref", "names an anchor")]
    [InlineData("""{"unevaluatedProperties":false}""", "/unevaluatedProperties", "not supported")]
    [InlineData("""{"$dynamicRef":"#meta"}""", "/$dynamicRef", "not supported")]
    [InlineData("""{"properties":{"a":3}}""", "/properties/a", "a schema must be an object or a boolean, got number")]
    [InlineData("""{"required":"a"}""", "/required", "must be an array, got string")]
    [InlineData("""{"anyOf":[]}""", "/anyOf", "must list at least one schema")]
    [InlineData("""{"enum":[]}""", "/enum", "enum must list at least one value")]
    [InlineData("""{"$defs":{"x":{"type":"nope"}}}""", "/$defs/x/type", "is not a JSON Schema type")]
    [InlineData("[1]", "", "a schema must be an object or a boolean, got array")]
    public void Bad_schemas_are_rejected_with_where_and_why(string schema, string path, string fragment)
    {
        var ex = Assert.Throws<InvalidParamsException>(() => JsonSchema.Parse(schema));
        Assert.Equal(string.IsNullOrEmpty(path) ? null : path, ex.Path);
        Assert.Contains(fragment, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Schema_that_is_not_json()
    {
        var ex = Assert.Throws<InvalidParamsException>(() => JsonSchema.Parse("{type:"));
        Assert.StartsWith("The schema is not valid JSON", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_element_overload()
    {
        var schema = JsonSchema.Parse("""{"type":"array","items":{"type":"string"}}""");
        using var document = JsonDocument.Parse("""["a",1]""");
        var result = schema.Validate(document.RootElement);
        Assert.Equal(new SchemaValidationResult(false, "/1", "/1: expected string, got number"), result);
    }

    [Fact]
    public void A_realistic_tool_schema()
    {
        const string schema = """
            {
              "type": "object",
              "properties": {
                "query": {"type": "string", "minLength": 1, "description": "what to search"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
                "filters": {
                  "type": "object",
                  "properties": {
                    "site": {"type": "string", "format": "hostname"},
                    "lang": {"enum": ["en", "fr", "de"]}
                  },
                  "additionalProperties": false
                },
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "maxItems": 5}
              },
              "required": ["query"],
              "additionalProperties": false
            }
            """;
        Valid(schema, """{"query":"loom","limit":5,"filters":{"lang":"en"},"tags":["a","b"]}""");
        Invalid(schema, """{"query":""}""", "/query", "/query: must be at least 1 character long, got 0");
        Invalid(schema, """{"query":"q","limit":0}""", "/limit", "/limit: must be >= 1, got 0");
        Invalid(schema, """{"query":"q","filters":{"lang":"es"}}""", "/filters/lang", "/filters/lang: must be one of \"en\", \"fr\", \"de\", got \"es\"");
        Invalid(schema, """{"query":"q","tags":["a","a"]}""", "/tags", "/tags: items 0 and 1 are equal; items must be unique");
        Invalid(schema, """{"limit":3}""", "/query", "/query: missing required property \"query\"");
    }
}
