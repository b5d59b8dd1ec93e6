using Loom.Cli.Internal;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>The loom.yaml loader on its own: what it maps onto the bridge's options, and what it refuses.</summary>
public sealed class ProjectFileTests
{
    private static ProjectFile Parse(string yaml) => ProjectFileLoader.Parse(yaml, "loom.yaml", Path.GetTempPath());

    [Fact]
    public void Mcp_servers_and_exposure_map_onto_the_bridge_options()
    {
        var project = Parse("""
            agents:
              - name: a
                command: sleep 1
            mcp_servers:
              - name: everything
                command: npx
                args: [-y, "@modelcontextprotocol/server-everything"]
                env: { DEBUG: "0" }
                call_timeout_ms: 5000
                connect_timeout_ms: 7000
              - name: remote
                url: http://127.0.0.1:3001/mcp
                headers_from_env: { Authorization: REMOTE_TOKEN }
            mcp_expose:
              include: ["web.*", "everything:*"]
              exclude: ["*:admin"]
            """);
        var options = ProjectRunner.BridgeOptionsFor(project);
        Assert.Equal(2, options.McpServers.Count);
        var stdio = options.McpServers[0];
        Assert.Equal(("everything", "stdio", "npx"), (stdio.Name, stdio.Transport, stdio.Command));
        Assert.Equal(["-y", "@modelcontextprotocol/server-everything"], stdio.Args);
        Assert.Equal(TimeSpan.FromSeconds(5), stdio.CallTimeout);
        Assert.Equal(TimeSpan.FromSeconds(7), stdio.ConnectTimeout);
        Assert.Equal(TimeSpan.FromSeconds(15), stdio.PingInterval); // unset: the documented default
        var http = options.McpServers[1];
        Assert.Equal("http", http.Transport);
        Assert.Equal(new Uri("http://127.0.0.1:3001/mcp"), http.Url);
        Assert.Equal("REMOTE_TOKEN", http.HeadersFromEnv["Authorization"]);
        Assert.Equal(["web.*", "everything:*"], options.Mcp.Include);
        Assert.Equal(["*:admin"], options.Mcp.Exclude);
    }

    [Fact]
    public void Mcp_server_mistakes_name_the_line()
    {
        var ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\nmcp_servers:\n  - name: fs\n    transport: stdio\n"));
        Assert.StartsWith("loom.yaml:5:5: mcp_servers[0].command: missing", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\nmcp_servers:\n  - name: fs\n    url: ftp://x\n"));
        Assert.StartsWith("loom.yaml:6:10: mcp_servers[0].url: expected an absolute http:// or https:// URL", ex.Message, StringComparison.Ordinal);
        var bad = Parse("agents:\n  - name: a\n    command: x\nmcp_servers:\n  - name: 'bad name'\n    command: x\n");
        var mapped = Assert.Throws<ArgumentException>(() => ProjectRunner.BridgeOptionsFor(bad));
        Assert.Contains("line 5", mapped.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_bridge_only_file_needs_no_agents_for_loom_up()
    {
        var project = ProjectFileLoader.Parse("mcp_servers:\n  - name: fs\n    command: npx\n", "loom.yaml", Path.GetTempPath(), requireAgents: false);
        Assert.Empty(project.Agents);
        Assert.Single(ProjectRunner.BridgeOptionsFor(project).McpServers);
        var ex = Assert.Throws<ProjectFileException>(() => Parse("mcp_servers: []\n"));
        Assert.Contains("agents: missing", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Metric_topic_groups_map_onto_the_bus_options()
    {
        var project = Parse("bridge:\n  metric_topic_groups:\n    - orders.*.created\n    - thread.>\nagents:\n  - name: a\n    command: x\n");
        Assert.Equal(["orders.*.created", "thread.>"], ProjectRunner.BridgeOptionsFor(project).EventBus.MetricTopicGroups);
        Assert.Empty(ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n")).EventBus.MetricTopicGroups);
    }

    [Fact]
    public void Grpc_reflection_maps_onto_the_bridge_options_and_defaults_to_the_host_rule()
    {
        Assert.False(ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  grpc_reflection: false\nagents:\n  - name: a\n    command: x\n")).GrpcReflection);
        Assert.True(ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  grpc_reflection: true\nagents:\n  - name: a\n    command: x\n")).GrpcReflection);
        Assert.Null(ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n")).GrpcReflection);
        var ex = Assert.Throws<ProjectFileException>(() => Parse("bridge:\n  grpc_reflection: sometimes\nagents:\n  - name: a\n    command: x\n"));
        Assert.StartsWith("loom.yaml:2:20: bridge.grpc_reflection", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("bridge:\n  metric_topic_groups:\n    - a.>.b\nagents:\n  - name: a\n    command: x\n", "loom.yaml:3:7: bridge.metric_topic_groups[0]: 'a.>.b' is not a topic pattern")]
    [InlineData("bridge:\n  metric_topic_groups: orders\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:24: bridge.metric_topic_groups: expected a list")]
    [InlineData("", "loom.yaml:1:1: the file must be a mapping")]
    [InlineData("agents: []\n", "loom.yaml:1:9: agents: empty")]
    [InlineData("agents:\n  - command: x\n", "loom.yaml:2:5: agents[0].name: missing")]
    [InlineData("agents:\n  - name: A\n    command: x\n", "loom.yaml:2:11: agents[0].name: 'A' is not a valid agent name")]
    [InlineData("agents:\n  - name: a\n    command: x\n  - name: a\n    command: y\n", "loom.yaml:4:5: agents[1].name: 'a' is declared twice")]
    [InlineData("agents:\n  - name: a\n    command: x\n    max_restarts: lots\n", "loom.yaml:4:19: agents[0].max_restarts: expected a whole number")]
    [InlineData("agents:\n  - name: a\n    command: x\nmain: b\n", "loom.yaml:4:7: main: no agent is named 'b'")]
    [InlineData("agents:\n  - name: a\n    command: x\n    env: { 1BAD: x }\n", "loom.yaml:4:12: agents[0].env.1BAD: not an environment variable name")]
    [InlineData("bridge:\n  grpc_port: 70000\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:14: bridge.grpc_port: expected a whole number from 0 to 65535")]
    public void Mistakes_are_reported_with_line_column_and_field(string yaml, string expected)
    {
        var ex = Assert.Throws<ProjectFileException>(() => Parse(yaml));
        Assert.StartsWith(expected, ex.Message, StringComparison.Ordinal);
    }
}
