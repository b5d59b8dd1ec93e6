using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Tests;

/// <summary>LOOM_* environment variables (the same names as the Python and TypeScript SDKs) and option bounds.</summary>
public sealed class EnvironmentTests
{
    private static LoomConnectionOptions From(params (string Name, string Value)[] variables) =>
        LoomConnectionOptions.FromEnvironment(variables.ToDictionary(v => v.Name, v => (string?)v.Value));

    [Fact]
    public void Every_variable_sets_its_option()
    {
        var options = From(
            ("LOOM_AGENT_ID", "env-agent"),
            ("LOOM_NAME", "env-name"),
            ("LOOM_NAMESPACE", "ns1"),
            ("LOOM_METADATA", "team=blue, region = eu"),
            ("LOOM_HEARTBEAT_MS", "250"),
            ("LOOM_CONNECT_TIMEOUT_MS", "1500"),
            ("LOOM_RECONNECT_INITIAL_MS", "20"),
            ("LOOM_RECONNECT_MAX_MS", "900"),
            ("LOOM_RECONNECT_JITTER", "0.5"),
            ("LOOM_RESTART_SETTLE_MS", "0"),
            ("LOOM_CALL_TIMEOUT_MS", "7000"),
            ("LOOM_REQUEST_TIMEOUT_MS", "3000"),
            ("LOOM_OUTBOUND_QUEUE_CAPACITY", "64"),
            ("LOOM_MAX_FRAME_MESSAGES", "8"),
            ("LOOM_MAX_FRAME_BYTES", "4096"),
            ("LOOM_DELIVERY_QUEUE_CAPACITY", "32"),
            ("LOOM_DRAIN_TIMEOUT_MS", "1200"),
            ("LOOM_SDK", "custom/1"),
            ("LOOM_TLS_CA", "/ca.pem"),
            ("LOOM_TLS_CERT", "/cert.pem"),
            ("LOOM_TLS_KEY", "/key.pem"),
            ("LOOM_TOKEN", "secret-token"));

        Assert.Equal("env-agent", options.AgentId);
        Assert.Equal("env-name", options.Name);
        Assert.Equal("ns1", options.Namespace);
        Assert.NotNull(options.Metadata);
        Assert.Equal(2, options.Metadata.Count);
        Assert.Equal("blue", options.Metadata["team"]);
        Assert.Equal("eu", options.Metadata["region"]);
        Assert.Equal(TimeSpan.FromMilliseconds(250), options.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromMilliseconds(1500), options.ConnectTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(20), options.ReconnectInitialDelay);
        Assert.Equal(TimeSpan.FromMilliseconds(900), options.ReconnectMaxDelay);
        Assert.Equal(0.5, options.ReconnectJitter);
        Assert.Equal(TimeSpan.Zero, options.RestartSettle);
        Assert.Equal(TimeSpan.FromMilliseconds(7000), options.DefaultCallTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(3000), options.RequestTimeout);
        Assert.Equal(64, options.OutboundQueueCapacity);
        Assert.Equal(8, options.MaxFrameMessages);
        Assert.Equal(4096, options.MaxFrameBytes);
        Assert.Equal(32, options.DeliveryQueueCapacity);
        Assert.Equal(TimeSpan.FromMilliseconds(1200), options.DisposeTimeout);
        Assert.Equal("custom/1", options.Sdk);
        Assert.Equal("/ca.pem", options.TlsCaFile);
        Assert.Equal("/cert.pem", options.TlsCertificateFile);
        Assert.Equal("/key.pem", options.TlsKeyFile);
        Assert.Equal("secret-token", options.Token);
        Assert.DoesNotContain("secret-token", options.ToString(), StringComparison.Ordinal);

        // Each variable the SDK documents is one of these.
        Assert.Equal(22, LoomConnectionOptions.EnvironmentVariables.Count);
    }

    [Fact]
    public void Unset_and_empty_variables_keep_the_defaults_and_special_values_mean_what_they_do_elsewhere()
    {
        var defaults = new LoomConnectionOptions();
        var options = From(("LOOM_NAME", ""), ("LOOM_HEARTBEAT_MS", "0"), ("LOOM_RESTART_SETTLE_MS", "-1"));
        Assert.Equal(defaults.Name, options.Name);
        Assert.Null(options.HeartbeatInterval); // 0: the bridge's interval
        Assert.Null(options.RestartSettle); // -1: automatic
        Assert.Equal(defaults.OutboundQueueCapacity, options.OutboundQueueCapacity);
    }

    [Theory]
    [InlineData("LOOM_HEARTBEAT_MS", "fast")]
    [InlineData("LOOM_CONNECT_TIMEOUT_MS", "-5")]
    [InlineData("LOOM_RECONNECT_JITTER", "1.5")]
    [InlineData("LOOM_RESTART_SETTLE_MS", "-2")]
    [InlineData("LOOM_OUTBOUND_QUEUE_CAPACITY", "8")]
    [InlineData("LOOM_MAX_FRAME_BYTES", "100")]
    [InlineData("LOOM_DELIVERY_QUEUE_CAPACITY", "0")]
    [InlineData("LOOM_METADATA", "novalue")]
    public void A_bad_value_is_invalid_params_naming_the_variable(string name, string value)
    {
        var ex = Assert.Throws<InvalidParamsException>(() => From((name, value)));
        Assert.Equal(ErrorCode.InvalidParams, ex.Code);
        Assert.Contains(name, ex.Message, StringComparison.Ordinal);
        Assert.Contains(value, ex.Message, StringComparison.Ordinal);
        Assert.Equal("/env/" + name, ex.Path);
    }

    [Fact]
    public void The_bridge_address_comes_from_LOOM_URL()
    {
        Assert.Equal(LoomConnectionOptions.DefaultBridgeAddress, LoomConnectionOptions.BridgeAddressFromEnvironment(new Dictionary<string, string?>()));
        Assert.Equal(new Uri("http://10.0.0.5:7070"), LoomConnectionOptions.BridgeAddressFromEnvironment(new Dictionary<string, string?> { ["LOOM_URL"] = "http://10.0.0.5:7070" }));
        Assert.Equal(new Uri("http://bridge:9000"), LoomConnectionOptions.BridgeAddressFromEnvironment(new Dictionary<string, string?> { ["LOOM_URL"] = "bridge:9000" }));
        var ex = Assert.Throws<InvalidParamsException>(() => LoomConnectionOptions.BridgeAddressFromEnvironment(new Dictionary<string, string?> { ["LOOM_URL"] = "http://" }));
        Assert.Contains("LOOM_URL", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_are_records_and_a_bad_option_fails_the_connection_with_its_name()
    {
        var tuned = new LoomConnectionOptions() with { MaxFrameMessages = 0 };
        var ex = Assert.Throws<InvalidParamsException>(() => new LoomConnection(new Uri("http://127.0.0.1:1"), tuned));
        Assert.Equal("/MaxFrameMessages", ex.Path);
        Assert.Contains("MaxFrameMessages", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_connection_from_the_environment_registers_with_its_values()
    {
        await using var bridge = await TestBridge.StartAsync();
        var options = LoomConnectionOptions.FromEnvironment(new Dictionary<string, string?>
        {
            ["LOOM_AGENT_ID"] = "from-env",
            ["LOOM_NAMESPACE"] = "envspace",
            ["LOOM_METADATA"] = "role=tester",
            ["LOOM_URL"] = bridge.GrpcAddress.ToString(),
        });
        var address = LoomConnectionOptions.BridgeAddressFromEnvironment(new Dictionary<string, string?> { ["LOOM_URL"] = bridge.GrpcAddress.ToString() });
        await using var connection = await LoomConnection.ConnectAsync(address, options);

        var agent = bridge.Agents.Find("from-env");
        Assert.NotNull(agent);
        Assert.Equal("tester", agent.Metadata["role"]);
        Assert.Equal("envspace", connection.Namespace);
    }
}
