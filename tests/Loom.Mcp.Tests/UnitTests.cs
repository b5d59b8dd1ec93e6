using Loom.Mcp.Internal;

namespace Loom.Mcp.Tests;

public sealed class UnitTests
{
    [Theory]
    [InlineData("fs", "read_file", "fs:read_file")]
    [InlineData("everything", "get-sum", "everything:get-sum")]
    [InlineData("gh", "repos/list issues", "gh:repos_list_issues")]
    [InlineData("x", "", "x:_")]
    public void Tool_names_become_capability_names(string server, string tool, string expected) =>
        Assert.Equal(expected, ToolNames.Capability(server, tool));

    [Fact]
    public void Long_tool_names_are_cut_to_128_characters() =>
        Assert.Equal(128, ToolNames.Capability("s", new string('t', 300)).Length);

    [Fact]
    public void Name_patterns_include_then_exclude()
    {
        var filter = new NameFilter(["math.*", "fs:*", "web.search"], ["fs:write*"]);
        Assert.True(filter.Matches("math.add"));
        Assert.True(filter.Matches("math.sub.v2"));
        Assert.True(filter.Matches("fs:read_file"));
        Assert.False(filter.Matches("fs:write_file"));
        Assert.True(filter.Matches("web.search"));
        Assert.False(filter.Matches("web.searcher"));
        Assert.False(filter.Matches("mathx"));
        Assert.True(new NameFilter([], []).Matches("anything"));
        Assert.True(new NameFilter(["a?c"], []).Matches("abc"));
        Assert.False(new NameFilter(["a?c"], []).Matches("abbc"));
    }

    [Fact]
    public void Server_options_are_validated_with_messages_that_say_what_to_write()
    {
        new McpServerOptions { Name = "fs", Command = "npx" }.Validate();
        new McpServerOptions { Name = "web", Transport = "http", Url = new Uri("http://127.0.0.1:3001/mcp") }.Validate();
        Assert.Contains("name", Assert.Throws<ArgumentException>(() => new McpServerOptions { Name = "bad name", Command = "x" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("command", Assert.Throws<ArgumentException>(() => new McpServerOptions { Name = "fs" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("url", Assert.Throws<ArgumentException>(() => new McpServerOptions { Name = "web", Transport = "http" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("'sse'", Assert.Throws<ArgumentException>(() => new McpServerOptions { Name = "x", Transport = "sse" }.Validate()).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new McpExposeOptions { Path = "mcp" }.Validate());
    }

    [Fact]
    public void Two_servers_with_one_name_are_refused()
    {
        var broker = new Loom.Core.ActionBroker();
        var error = Assert.Throws<ArgumentException>(() => new McpIngestHost([new McpServerOptions { Name = "a", Command = "x" }, new McpServerOptions { Name = "a", Command = "y" }], broker));
        Assert.Contains("'a'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_output_schema_describes_the_content_array_and_embeds_the_tools_own()
    {
        using var tool = System.Text.Json.JsonDocument.Parse("""{"type":"object","properties":{"t":{"type":"number"}},"required":["t"]}""");
        var schema = Loom.Core.JsonSchema.Parse(ResultShape.OutputSchema(tool.RootElement));
        Assert.True(schema.Validate("""{"content":[{"type":"text","text":"x"}],"structuredContent":{"t":1}}"""u8).IsValid);
        Assert.False(schema.Validate("""{"content":[],"structuredContent":{"t":"one"}}"""u8).IsValid);
        Assert.False(schema.Validate("""{"structuredContent":{"t":1}}"""u8).IsValid);
    }
}
