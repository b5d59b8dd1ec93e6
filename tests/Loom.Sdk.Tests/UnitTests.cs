using System.Text;
using System.Text.Json;
using Loom.Core;
using Loom.Sdk.Internal;

namespace Loom.Sdk.Tests;

public sealed class UnitTests
{
    [Theory]
    [InlineData(null, "")]
    [InlineData("$", "")]
    [InlineData("$.a", "/a")]
    [InlineData("$.items[0].name", "/items/0/name")]
    [InlineData("$['odd key'].x", "/odd key/x")]
    [InlineData("$['a/b~c']", "/a~1b~0c")]
    public void Json_paths_become_json_pointers(string? path, string pointer) =>
        Assert.Equal(pointer, JsonPointer.FromJsonPath(path));

    [Fact]
    public void Backoff_grows_exponentially_is_capped_and_jittered()
    {
        var initial = TimeSpan.FromMilliseconds(100);
        var max = TimeSpan.FromSeconds(5);
        Assert.Equal(100, Backoff.Delay(0, initial, max, 0).TotalMilliseconds);
        Assert.Equal(800, Backoff.Delay(3, initial, max, 0).TotalMilliseconds);
        Assert.Equal(5000, Backoff.Delay(20, initial, max, 0).TotalMilliseconds);
        var random = new Random(7);
        var delays = Enumerable.Range(0, 200).Select(_ => Backoff.Delay(2, initial, max, 0.2, random).TotalMilliseconds).ToArray();
        Assert.All(delays, d => Assert.InRange(d, 320, 480));
        Assert.True(delays.Distinct().Count() > 50, "no jitter");
    }

    [Fact]
    public async Task Capability_methods_bind_with_schemas_and_typed_errors()
    {
        var capabilities = CapabilityBinder.Bind(new MathAgent(), JsonSerializerOptions.Web, () => null!);
        Assert.Equal(["math.add", "math.fail", "math.slow", "math.strict", "math.whoami"], capabilities.Select(c => c.Descriptor.Name).Order(StringComparer.Ordinal).ToArray());

        var add = capabilities.Single(c => c.Descriptor.Name == "math.add");
        var schema = JsonSchema.Parse(add.Descriptor.InputSchemaJson);
        Assert.True(schema.Validate("""{"a":1,"b":2}"""u8).IsValid);
        var invalid = schema.Validate("""{"a":[],"b":2}"""u8);
        Assert.False(invalid.IsValid);
        Assert.Equal("/a", invalid.Path);
        Assert.False(schema.Validate("null"u8).IsValid);
        _ = JsonSchema.Parse(add.Descriptor.OutputSchemaJson);

        var output = await add.Handler(Invocation("math.add", """{"a":1,"b":2}"""), CancellationToken.None);
        Assert.Equal("""{"sum":3}""", Encoding.UTF8.GetString(output.Span));

        var wrongType = await Assert.ThrowsAsync<InvalidParamsException>(async () => await add.Handler(Invocation("math.add", """{"a":{"x":1}}"""), CancellationToken.None));
        Assert.Equal("/a", wrongType.Path);
        await Assert.ThrowsAsync<InvalidParamsException>(async () => await add.Handler(Invocation("math.add", "null"), CancellationToken.None));

        var fail = capabilities.Single(c => c.Descriptor.Name == "math.fail");
        var tool = await Assert.ThrowsAsync<ToolErrorException>(async () => await fail.Handler(Invocation("math.fail", """{"a":5}"""), CancellationToken.None));
        Assert.Equal("boom: cannot do 5", tool.Message);
    }

    [Fact]
    public void Unsupported_capability_signatures_are_rejected_at_start()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => CapabilityBinder.Bind(new TwoInputs(), JsonSerializerOptions.Web, () => null!));
        Assert.Contains("more than one input", ex.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => CapabilityBinder.Bind(new BadName(), JsonSerializerOptions.Web, () => null!));
    }

    private static ActionInvocation Invocation(string capability, string json) => new()
    {
        CallId = "c1",
        Capability = capability,
        InputJson = Encoding.UTF8.GetBytes(json),
    };

    private sealed class TwoInputs : Agent
    {
        [Capability("two")]
        public static int Two(int a, int b) => a + b;
    }

    private sealed class BadName : Agent
    {
        [Capability("has space")]
        public static int One(int a) => a;
    }
}

public sealed class SchemaTests
{
    [Fact]
    public void Schemas_of_common_types_parse_in_the_core()
    {
        foreach (var type in new[] { typeof(JsonElement), typeof(object), typeof(string), typeof(int), typeof(int[]), typeof(Dictionary<string, double>), typeof(AddInput), typeof(Nested) })
        {
            var json = CapabilityBinder.SchemaOf(type, JsonSerializerOptions.Web);
            _ = JsonSchema.Parse(json);
        }

        var nested = JsonSchema.Parse(CapabilityBinder.SchemaOf(typeof(Nested), JsonSerializerOptions.Web));
        var bad = nested.Validate("""{"name":"x","items":[{"a":1,"b":2},{"a":"no","b":2}]}"""u8);
        Assert.False(bad.IsValid);
        Assert.Equal("/items/1/a", bad.Path);
    }

    public sealed record Nested(string Name, List<AddInput> Items, DayOfWeek? Day = null);
}
