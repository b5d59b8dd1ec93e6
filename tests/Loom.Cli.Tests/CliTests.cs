using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Xunit;

namespace Loom.Cli.Tests;

public sealed partial class CliTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-cli-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [GeneratedRegex(@"bridge listening grpc=(\S+) http=(\S+)")]
    private static partial Regex BridgeLine();

    /// <summary>A bridge in this process on free ports, started within 30 s.</summary>
    private static async Task<LoomBridge> StartBridgeAsync()
    {
        var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0 }, _ => { });
        using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await bridge.StartAsync(startup.Token);
            return bridge;
        }
        catch
        {
            await bridge.DisposeAsync();
            throw;
        }
    }

    [Fact]
    public async Task A_malformed_loom_yaml_is_refused_naming_file_line_and_field()
    {
        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), "name: bad\nagents:\n  - name: a\n    command: echo hi\n    restart: sometimes\n");
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".");
        Assert.Equal(2, code);
        Assert.Contains("loom.yaml:5:14: agents[0].restart: must be one of never, on-failure, always; got 'sometimes'", output, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), "agents:\n  - name: a\n    comand: echo hi\n");
        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".");
        Assert.Equal(2, code);
        Assert.Contains("loom.yaml:3:5: agents[0].comand: unknown key (did you mean 'command'?)", output, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), "agents:\n  - name: a\n    command: [unclosed\n");
        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".");
        Assert.Equal(2, code);
        Assert.Matches(@"loom\.yaml:\d+:\d+: not valid YAML", output);
    }

    [Fact]
    public async Task Run_reports_which_agent_failed_and_exits_non_zero()
    {
        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), "agents:\n  - name: steady\n    command: exec sleep 60\n  - name: crasher\n    command: echo about to fail; exit 7\n");
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".");
        Assert.Equal(1, code);
        Assert.Contains("crasher │ about to fail", output, StringComparison.Ordinal);
        Assert.Contains("agent 'crasher' failed: exited with code 7", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Project_parameters_reach_the_agents_and_unknown_ones_are_refused()
    {
        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), "params:\n  greeting:\n    env: GREETING\n    default: hello\nmain: say\nagents:\n  - name: say\n    command: echo \"said $GREETING\"\n");
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".", "--greeting", "bonjour");
        Assert.Equal(0, code);
        Assert.Contains("said bonjour", output, StringComparison.Ordinal);

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".", "--colour", "red");
        Assert.Equal(2, code);
        Assert.Contains("unknown option '--colour'", output, StringComparison.Ordinal);
        Assert.Contains("--greeting", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task List_shows_agents_and_capabilities_of_a_running_bridge_as_json_and_table()
    {
        await using var bridge = await StartBridgeAsync();
        using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var agent = await LoomAgentHost.StartAsync(new ListedAgent(), bridge.GrpcAddress, new AgentHostOptions { AgentId = "listed-1" }, startup.Token);

        var http = bridge.HttpAddress.ToString().TrimEnd('/');
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "list", "--url", http, "--json");
        Assert.Equal(0, code);
        using var json = JsonDocument.Parse(output);
        var listed = Assert.Single(json.RootElement.GetProperty("agents").EnumerateArray());
        Assert.Equal("listed-1", listed.GetProperty("agent_id").GetString());
        Assert.Equal("connected", listed.GetProperty("state").GetString());
        Assert.Contains("listed.events.>", listed.GetProperty("topics").EnumerateArray().Select(t => t.GetString()));
        var capability = Assert.Single(json.RootElement.GetProperty("capabilities").EnumerateArray());
        Assert.Equal("listed.echo", capability.GetProperty("name").GetString());
        Assert.Equal("listed-1", capability.GetProperty("providers")[0].GetProperty("agent_id").GetString());

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), new Dictionary<string, string> { ["COLUMNS"] = "200" }, "list", "--url", http);
        Assert.Equal(0, code);
        Assert.Contains("listed-1", output, StringComparison.Ordinal);
        Assert.Contains("listed.echo", output, StringComparison.Ordinal);

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "list", "--url", "http://127.0.0.1:1");
        Assert.Equal(1, code);
        Assert.Contains("cannot read the bridge at http://127.0.0.1:1", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_labels_bus_metrics_by_the_topic_groups_it_is_given()
    {
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "up", "--grpc-port", "0", "--http-port", "0", "--metric-topic-group", "a.>.b");
        Assert.Equal(2, code);
        Assert.Contains("loom up: --metric-topic-group: expected a topic pattern such as orders.*.created or orders.>, got 'a.>.b' (The pattern 'a.>.b' has '>'", output, StringComparison.Ordinal);

        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0", "--metric-topic-group", "orders.*.created", "--metric-topic-group", "thread.>");
        var listening = await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", TimeSpan.FromSeconds(60));
        using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var agent = await LoomConnection.ConnectAsync(new Uri(listening.Groups[1].Value), new LoomConnectionOptions { Name = "grouped" }, cancellationToken: startup.Token);
        await using var subscription = await agent.SubscribeAsync("orders.>", (_, _) => Task.CompletedTask, cancellationToken: startup.Token);
        await agent.PublishAsync(new Loom.Protocol.V1.Envelope { Topic = "orders.eu.created" }, startup.Token);
        await agent.PublishAsync(new Loom.Protocol.V1.Envelope { Topic = "orders.eu.shipped" }, startup.Token);

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var metrics = "";
        await Poll.UntilAsync(
            async ct => (metrics = await http.GetStringAsync(listening.Groups[2].Value + "/metrics", ct)).Contains("topic_group=\"orders.>\"", StringComparison.Ordinal),
            TimeSpan.FromSeconds(10),
            "both events counted");
        Assert.Contains("loom_events_published_total{qos=\"normal\",topic_group=\"orders.*.created\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("loom_events_published_total{qos=\"normal\",topic_group=\"orders.>\"} 1", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("orders.eu.", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_with_no_dashboard_serves_no_page_nor_views_and_says_so_and_loom_yaml_turns_it_off_too()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        await using (var on = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0"))
        {
            var listening = await on.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", TimeSpan.FromSeconds(60));
            await on.WaitForLineAsync(@"^dashboard http://", TimeSpan.FromSeconds(10));
            using var overview = await http.GetAsync(listening.Groups[2].Value + "/v1/overview");
            Assert.Equal(System.Net.HttpStatusCode.OK, overview.StatusCode);
        }

        var yaml = Path.Combine(_temp, "no-dashboard.yaml");
        await File.WriteAllTextAsync(yaml, "bridge:\n  dashboard: false\n");
        foreach (var args in new[] { new[] { "up", "--grpc-port", "0", "--http-port", "0", "--no-dashboard" }, ["up", "--grpc-port", "0", "--http-port", "0", "--config", yaml] })
        {
            await using var off = CliProcess.Start(_temp, null, args);
            var listening = await off.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", TimeSpan.FromSeconds(60));
            await off.WaitForLineAsync(@"^dashboard off$", TimeSpan.FromSeconds(10));
            var url = listening.Groups[2].Value;
            using var page = await http.GetAsync(url + "/");
            Assert.Equal(System.Net.HttpStatusCode.NotFound, page.StatusCode);
            Assert.Contains("The dashboard is off on this bridge (loom up --no-dashboard, or bridge.dashboard: false in loom.yaml)", await page.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            foreach (var view in new[] { "/v1/overview", "/v1/topology", "/v1/stream/overview" })
            {
                using var response = await http.GetAsync(url + view);
                Assert.Equal(System.Net.HttpStatusCode.NotFound, response.StatusCode);
            }

            // The rest of the HTTP surface is there.
            Assert.Contains("\"ok\"", await http.GetStringAsync(url + "/healthz"), StringComparison.Ordinal);
            Assert.Contains("loom_", await http.GetStringAsync(url + "/metrics"), StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Up_on_every_interface_prints_a_line_tools_parse_and_warns_with_the_real_address()
    {
        await using var up = CliProcess.Start(_temp, null, "up", "--host", "0.0.0.0", "--insecure", "--grpc-port", "0", "--http-port", "0");

        // The line the SDK suites and scripts wait for: a connect address, loopback for a wildcard bind.
        var listening = await up.WaitForLineAsync(@"^listening grpc=http://(127\.0\.0\.1:(\d+)) http=http://(127\.0\.0\.1:(\d+))\s*$", TimeSpan.FromSeconds(60));
        var (grpcPort, httpPort) = (listening.Groups[2].Value, listening.Groups[4].Value);

        // On stderr: where it is really bound, and that this is unauthenticated.
        var warning = await up.WaitForLineAsync(@"Listening on (\S+) \(gRPC\) and (\S+) \(HTTP\), every IPv4 interface\. The bridge does not require authentication and TLS", TimeSpan.FromSeconds(10));
        Assert.Equal(($"0.0.0.0:{grpcPort}", $"0.0.0.0:{httpPort}"), (warning.Groups[1].Value, warning.Groups[2].Value));

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        Assert.Contains("\"ok\"", await http.GetStringAsync(new Uri($"http://{listening.Groups[3].Value}/healthz")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_takes_limits_from_flags_over_its_config_and_refuses_bad_values_in_one_line()
    {
        // A malformed value, and two that contradict each other: one line each, naming the option and what it takes; exit 2.
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "up", "--grpc-port", "0", "--http-port", "0", "--memory-max-total-bytes", "64MB");
        Assert.Equal(2, code);
        Assert.Equal("[stderr] loom up: --memory-max-total-bytes: expected a byte size from 0 to 1 TiB (a whole number of bytes, or with KiB, MiB, GiB or TiB, e.g. 64MiB), got '64MB'", output.Trim());
        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "up", "--grpc-port", "0", "--http-port", "0", "--max-message-bytes", "64KiB", "--max-payload-bytes", "1MiB");
        Assert.Equal(2, code);
        Assert.Equal("[stderr] loom up: MaxPayloadBytes (max_payload_bytes) is 1048576; use 1 to MaxMessageBytes (max_message_bytes, 65536).", output.Trim());

        // The file sets a session limit and the store's size; the flag's session limit wins.
        File.WriteAllText(Path.Combine(_temp, "bridge.yaml"), "bridge:\n  max_sessions: 5\n  memory:\n    max_total_bytes: 1MiB\n");
        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0", "--config", "bridge.yaml", "--max-sessions", "1");
        var listening = await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", TimeSpan.FromSeconds(60));
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(listening.Groups[1].Value);
        var client = new Loom.Protocol.V1.Bridge.BridgeClient(channel);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "first", Name = "first", Sdk = "test", HeartbeatIntervalMs = 60_000 }, deadline: deadline);
        var refused = await Assert.ThrowsAsync<Grpc.Core.RpcException>(async () => await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "second", Name = "second", Sdk = "test" }, deadline: deadline));
        Assert.Equal(Grpc.Core.StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Contains("(max_sessions)", refused.Status.Detail, StringComparison.Ordinal);

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var metrics = await http.GetStringAsync(listening.Groups[2].Value + "/metrics");
        Assert.Contains("loom_memory_limit_bytes 1048576\n", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Run_says_that_metric_topic_groups_do_not_apply_to_a_running_bridge()
    {
        await using var bridge = await StartBridgeAsync();
        var url = bridge.GrpcAddress.ToString().TrimEnd('/');
        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), $"bridge:\n  url: {url}\n  metric_topic_groups: [orders.*.created]\nmain: say\nagents:\n  - name: say\n    command: echo done\n");
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "run", ".");
        Assert.Equal(0, code);
        Assert.Contains("bridge.metric_topic_groups is ignored with a running bridge", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Logs_follows_events_filtered_by_topic_and_thread()
    {
        await using var bridge = await StartBridgeAsync();
        using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var logs = CliProcess.Start(_temp, null, "logs", "--url", bridge.GrpcAddress.ToString(), "--topic", "orders.>", "--thread", "t-7", "--json");
        await using var publisher = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { AgentId = "shop" }, cancellationToken: startup.Token);

        // Publish until the follower is subscribed and shows the event, then check what it filtered out.
        var shown = false;
        for (var attempt = 0; attempt < 200 && !shown; attempt++)
        {
            await publisher.PublishAsync(new Envelope { Topic = "orders.created", ThreadId = "t-7", ContentType = "application/json", Payload = Google.Protobuf.ByteString.CopyFromUtf8("{\"order\":" + attempt + "}") });
            await publisher.PublishAsync(new Envelope { Topic = "orders.created", ThreadId = "other", Payload = Google.Protobuf.ByteString.CopyFromUtf8("hidden-thread") });
            await publisher.PublishAsync(new Envelope { Topic = "payments.done", ThreadId = "t-7", Payload = Google.Protobuf.ByteString.CopyFromUtf8("hidden-topic") });
            shown = logs.Output.Contains("\"topic\":\"orders.created\"", StringComparison.Ordinal);
            await Task.Delay(50);
        }

        Assert.True(shown, "loom logs never showed the event:\n" + logs.Output);
        var line = logs.Output.Split('\n').First(l => l.Contains("orders.created", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(line);
        Assert.Equal("shop", json.RootElement.GetProperty("sender").GetString());
        Assert.Equal("t-7", json.RootElement.GetProperty("thread_id").GetString());
        Assert.True(json.RootElement.GetProperty("payload").TryGetProperty("order", out _));
        Assert.DoesNotContain("hidden-thread", logs.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("hidden-topic", logs.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("python")]
    [InlineData("ts")]
    [InlineData("dotnet")]
    public async Task New_scaffolds_an_agent_that_connects_and_answers_its_capability(string language)
    {
        var name = $"greeter-{language}";
        // `new` may first pack the SDK (`loom pack`), which can take a minute or two.
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromMinutes(5), null, "new", language, name);
        Assert.True(code == 0, output);
        Assert.True(File.Exists(Path.Combine(_temp, name, "loom.yaml")), output);

        await using var run = CliProcess.Start(_temp, null, "run", name, "--ready-timeout", "300");
        var bridge = await run.WaitForLineAsync(BridgeLine().ToString(), TimeSpan.FromMinutes(5));
        await run.WaitForLineAsync($"✓ {name} connected", TimeSpan.FromMinutes(5));

        using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using var caller = await LoomAgentHost.StartAsync(new CallerAgent(), new Uri(bridge.Groups[1].Value), cancellationToken: startup.Token);
        var reply = await caller.Context.InvokeRawAsync($"{name}.greet", Encoding.UTF8.GetBytes("""{"name":"Ada"}"""), TimeSpan.FromSeconds(30));
        Assert.Equal("\"Hello, Ada.\"", Encoding.UTF8.GetString(reply.Span));

        // A bad argument is INVALID_PARAMS from any language, and the agent keeps serving.
        var bad = await Assert.ThrowsAsync<InvalidParamsException>(() => caller.Context.InvokeRawAsync($"{name}.greet", Encoding.UTF8.GetBytes("""{"nom":"Ada"}"""), TimeSpan.FromSeconds(30)));
        Assert.Contains("name", bad.Message, StringComparison.Ordinal);
        reply = await caller.Context.InvokeRawAsync($"{name}.greet", Encoding.UTF8.GetBytes("""{"name":"Bo","excited":true}"""), TimeSpan.FromSeconds(30));
        Assert.Equal("\"Hello, Bo!\"", Encoding.UTF8.GetString(reply.Span));

        run.Interrupt();
        var exit = await run.WaitForExitAsync(TimeSpan.FromSeconds(30));
        Assert.True(exit is 130 or 0, $"exit {exit}\n{run.Output}");
    }

    private sealed class ListedAgent : Agent
    {
        public override IEnumerable<string> Topics => ["listed.events.>"];

        [Capability("listed.echo", Description = "Echoes.")]
        public static JsonElement Echo(JsonElement input) => input;
    }

    private sealed class CallerAgent : Agent;
}
