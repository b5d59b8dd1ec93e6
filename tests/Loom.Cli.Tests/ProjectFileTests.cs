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

    [Fact]
    public void Dashboard_false_turns_the_dashboard_off_it_is_on_by_default_and_a_bad_value_points_at_its_line()
    {
        Assert.False(ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  dashboard: false\nagents:\n  - name: a\n    command: x\n")).Dashboard);
        Assert.True(ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  dashboard: true\nagents:\n  - name: a\n    command: x\n")).Dashboard);
        Assert.True(ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n")).Dashboard);
        var ex = Assert.Throws<ProjectFileException>(() => Parse("bridge:\n  dashboard: off\nagents:\n  - name: a\n    command: x\n"));
        Assert.StartsWith("loom.yaml:2:14: bridge.dashboard", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Permissions_map_onto_the_bridge_options_and_a_bad_pattern_or_operation_points_at_its_line()
    {
        var yaml = "agents:\n  - name: a\n    command: x\npermissions:\n  planner:\n    allow:\n      publish: ['plan.>']\n      memory_read: [planner, shared]\n      collaboration: [gather]\n    deny:\n      publish: ['plan.secret.>']\n  '*':\n    allow: { subscribe: ['announce.>'] }\n";
        var options = ProjectRunner.BridgeOptionsFor(Parse(yaml));
        Assert.NotNull(options.Permissions);
        Assert.Equal(["plan.>"], options.Permissions["planner"].Allow.Publish);
        Assert.Equal(["planner", "shared"], options.Permissions["planner"].Allow.MemoryRead);
        Assert.Equal(["gather"], options.Permissions["planner"].Allow.Collaboration);
        Assert.Equal(["plan.secret.>"], options.Permissions["planner"].Deny.Publish);
        Assert.Equal(["announce.>"], options.Permissions["*"].Allow.Subscribe);

        var ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\npermissions:\n  p:\n    allow:\n      publish: ['a..b']\n"));
        Assert.StartsWith("loom.yaml:7:16: permissions.p.allow.publish", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\npermissions:\n  p:\n    allow:\n      collaboration: [vote]\n"));
        Assert.Contains("'vote' is not a collaboration operation", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\npermissions:\n  p:\n    allow:\n      pubish: ['a']\n"));
        Assert.Contains("pubish", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Limits_and_audit_keys_map_onto_the_bridge_options_and_the_audit_file_defaults_beside_loom_yaml_with_auth_on()
    {
        var yaml = "bridge:\n  auth: required\nagents:\n  - name: a\n    command: x\npermissions:\n  '*':\n    limits: { max_subscriptions: 8 }\n  planner:\n    limits:\n      publishes_per_second: 100\n      publish_burst: 200\n      calls_per_second: 5\n      max_capabilities: 2\n      max_memory_bytes: 64MiB\n";
        var options = ProjectRunner.BridgeOptionsFor(Parse(yaml));
        var planner = options.Permissions!["planner"].Limits;
        Assert.Equal(100, planner.PublishesPerSecond);
        Assert.Equal(200, planner.PublishBurst);
        Assert.Equal(5, planner.CallsPerSecond);
        Assert.Equal(2, planner.MaxCapabilities);
        Assert.Equal(64L * 1024 * 1024, planner.MaxMemoryBytes);
        Assert.Equal(8, options.Permissions["*"].Limits.MaxSubscriptions);
        Assert.Equal(Path.Combine(Path.GetTempPath(), ".loom", "audit.log"), options.Audit.File);

        var off = ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  auth: required\n  audit_log: off\n  audit_reads: true\nagents:\n  - name: a\n    command: x\n"));
        Assert.Null(off.Audit.File);
        Assert.True(off.Audit.IncludeReads);
        Assert.True(off.Audit.IsOn(off.Auth)); // events on _loom.audit.* stay on with auth
        Assert.Null(ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n")).Audit.File); // auth off: no file

        var ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\npermissions:\n  p:\n    limits: { publishes_per_second: 0 }\n"));
        Assert.Contains("permissions.p.limits.publishes_per_second", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\npermissions:\n  p:\n    limits: { max_memory_bytes: lots }\n"));
        Assert.Contains("expected a byte size", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\npermissions:\n  p:\n    limits: { publish_per_second: 1 }\n"));
        Assert.Contains("publish_per_second", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_and_auth_settings_map_onto_the_bridge_options_with_paths_relative_to_the_file()
    {
        var dir = Directory.CreateTempSubdirectory("loom-yaml-tls-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dir, "certs"));
            foreach (var file in new[] { "server.pem", "server.key", "ca.pem" })
            {
                File.WriteAllText(Path.Combine(dir, "certs", file), "");
            }

            var yaml = "bridge:\n  tls_cert: certs/server.pem\n  tls_key: certs/server.key\n  tls_client_ca: certs/ca.pem\n  auth: required\n  token_key: keys/token.key\nagents:\n  - name: a\n    command: x\n";
            var options = ProjectRunner.BridgeOptionsFor(ProjectFileLoader.Parse(yaml, "loom.yaml", dir));
            Assert.Equal(Path.Combine(dir, "certs", "server.pem"), options.TlsCertificateFile);
            Assert.Equal(Path.Combine(dir, "certs", "server.key"), options.TlsKeyFile);
            Assert.Equal(Path.Combine(dir, "certs", "ca.pem"), options.TlsClientCaFile);
            Assert.Equal(Loom.Bridge.AuthMode.Required, options.Auth);
            Assert.Equal(Path.Combine(dir, "keys", "token.key"), options.TokenKeyFile);
            Assert.Equal(Loom.Bridge.AuthMode.Off, ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n")).Auth);

            var ex = Assert.Throws<ProjectFileException>(() => ProjectFileLoader.Parse("bridge:\n  auth: maybe\nagents:\n  - name: a\n    command: x\n", "loom.yaml", dir));
            Assert.StartsWith("loom.yaml:2:9: bridge.auth", ex.Message, StringComparison.Ordinal);
            var missing = Assert.Throws<ArgumentException>(() => ProjectRunner.BridgeOptionsFor(ProjectFileLoader.Parse("bridge:\n  tls_cert: certs/server.pem\nagents:\n  - name: a\n    command: x\n", "loom.yaml", dir)));
            Assert.Contains("TLS needs both a certificate and its key", missing.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Limits_map_onto_the_bridge_options()
    {
        var options = ProjectRunner.BridgeOptionsFor(Parse("""
            bridge:
              max_connections: 500
              max_connections_per_address: 20
              handshake_timeout_ms: 2500
              max_sessions: 300
              max_subscriptions_per_session: 16
              max_capabilities_per_agent: 8
              max_subscription_queue_capacity: 4096
              max_queue_bytes_per_subscription: 8MiB
              max_queued_bytes: 1 GiB
              max_block_timeout_ms: 5000
              max_message_bytes: 2MiB
              max_payload_bytes: 524288
              memory:
                max_total_bytes: 256MiB
                max_bytes_per_namespace: 32MiB
                max_total_entries: 50000
                max_entries_per_namespace: 1000
                max_value_bytes: 64KiB
            agents:
              - name: a
                command: x
            """));
        Assert.Equal((500, 20, TimeSpan.FromMilliseconds(2500), 300), (options.MaxConnections, options.MaxConnectionsPerAddress, options.HandshakeTimeout, options.MaxSessions));
        Assert.Equal((16, 8), (options.MaxSubscriptionsPerSession, options.MaxCapabilitiesPerAgent));
        Assert.Equal((4096, 8L * 1024 * 1024, 1L << 30, TimeSpan.FromSeconds(5)), (options.EventBus.MaxSubscriptionQueueCapacity, options.EventBus.MaxQueueBytesPerSubscription, options.EventBus.MaxQueuedBytes, options.EventBus.MaxBlockTimeout));
        Assert.Equal((2 * 1024 * 1024, 512 * 1024), (options.MaxMessageBytes, options.MaxPayloadBytes));
        Assert.Equal((256L << 20, 32L << 20, 50_000L, 1000, 64 * 1024), (options.Memory.MaxTotalBytes, options.Memory.MaxBytesPerNamespace, options.Memory.MaxTotalEntries, options.Memory.MaxEntriesPerNamespace, options.Memory.MaxValueBytes));

        // Unset, every limit keeps its documented default.
        var defaults = ProjectRunner.BridgeOptionsFor(Parse("agents:\n  - name: a\n    command: x\n"));
        var expected = new Loom.Bridge.BridgeOptions();
        Assert.Equal((expected.MaxConnections, expected.MaxSessions, expected.MaxMessageBytes, expected.MaxPayloadBytes), (defaults.MaxConnections, defaults.MaxSessions, defaults.MaxMessageBytes, defaults.MaxPayloadBytes));
        Assert.Equal(expected.Memory, defaults.Memory);
        Assert.Equal(expected.EventBus.MaxQueuedBytes, defaults.EventBus.MaxQueuedBytes);
    }

    [Fact]
    public void Related_defaults_follow_a_limit_set_below_them_and_contradictions_are_refused()
    {
        // A lower block timeout or message size takes the default wait and payload limit down with it.
        var options = ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  max_block_timeout_ms: 200\n  max_message_bytes: 64KiB\nagents:\n  - name: a\n    command: x\n"));
        Assert.Equal((TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(200)), (options.EventBus.MaxBlockTimeout, options.EventBus.DefaultBlockTimeout));
        Assert.Equal(64 * 1024, options.MaxPayloadBytes);

        // Both given and contradicting: one line naming the option, its key and the accepted range.
        var ex = Assert.Throws<ArgumentException>(() => ProjectRunner.BridgeOptionsFor(Parse("bridge:\n  max_message_bytes: 64KiB\n  max_payload_bytes: 1MiB\nagents:\n  - name: a\n    command: x\n")));
        Assert.Equal("bridge: MaxPayloadBytes (max_payload_bytes) is 1048576; use 1 to MaxMessageBytes (max_message_bytes, 65536).", ex.Message);
    }

    [Theory]
    [InlineData("64", 64L)]
    [InlineData("64KiB", 64L * 1024)]
    [InlineData("64 MiB", 64L * 1024 * 1024)]
    [InlineData("2gib", 2L * 1024 * 1024 * 1024)]
    [InlineData("1TiB", 1L << 40)]
    [InlineData("10B", 10L)]
    [InlineData("64MB", null)]
    [InlineData("1.5GiB", null)]
    [InlineData("-1", null)]
    [InlineData("MiB", null)]
    [InlineData("99999999999999999999", null)]
    [InlineData("16777216TiB", null)]
    public void Byte_sizes_are_whole_numbers_with_an_optional_binary_unit(string text, long? expected)
    {
        Assert.Equal(expected is not null, BridgeLimits.TryParseBytes(text, out var value));
        Assert.Equal(expected ?? 0, value);
    }

    [Fact]
    public void Every_limit_has_a_flag_named_after_its_key()
    {
        Assert.Equal(
            ["--max-connections", "--max-connections-per-address", "--handshake-timeout-ms", "--max-sessions", "--max-subscriptions-per-session", "--max-capabilities-per-agent",
             "--max-subscription-queue-capacity", "--max-queue-bytes-per-subscription", "--max-queued-bytes", "--max-block-timeout-ms", "--max-message-bytes", "--max-payload-bytes",
             "--memory-max-total-bytes", "--memory-max-bytes-per-namespace", "--memory-max-total-entries", "--memory-max-entries-per-namespace", "--memory-max-value-bytes"],
            BridgeLimits.All.Select(l => l.Flag));
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
    [InlineData("bridge:\n  max_queued_bytes: lots\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:21: bridge.max_queued_bytes: expected a byte size from 0 to 1 TiB (a whole number of bytes, or with KiB, MiB, GiB or TiB, e.g. 64MiB), got 'lots'")]
    [InlineData("bridge:\n  max_message_bytes: 1KiB\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:22: bridge.max_message_bytes: expected a byte size from 16 KiB to 1 GiB")]
    [InlineData("bridge:\n  handshake_timeout_ms: 0\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:25: bridge.handshake_timeout_ms: expected a whole number of milliseconds from 1 to 3600000, got '0'")]
    [InlineData("bridge:\n  max_sessions: -3\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:17: bridge.max_sessions: expected a whole number from 0 to 1000000, got '-3'")]
    [InlineData("bridge:\n  max_session: 3\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:3: bridge.max_session: unknown key (did you mean 'max_sessions'?)")]
    [InlineData("bridge:\n  memory:\n    max_total_byte: 1MiB\nagents:\n  - name: a\n    command: x\n", "loom.yaml:3:5: bridge.memory.max_total_byte: unknown key (did you mean 'max_total_bytes'?)")]
    [InlineData("bridge:\n  memory:\n    max_total_entries: many\nagents:\n  - name: a\n    command: x\n", "loom.yaml:3:24: bridge.memory.max_total_entries: expected a whole number from 1 to 1000000000, got 'many'")]
    [InlineData("bridge:\n  memory: 64MiB\nagents:\n  - name: a\n    command: x\n", "loom.yaml:2:11: bridge.memory: expected a mapping")]
    public void Mistakes_are_reported_with_line_column_and_field(string yaml, string expected)
    {
        var ex = Assert.Throws<ProjectFileException>(() => Parse(yaml));
        Assert.StartsWith(expected, ex.Message, StringComparison.Ordinal);
    }
}
