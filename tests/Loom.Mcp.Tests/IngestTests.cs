using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Mcp.Tests;

/// <summary>MCP servers from npm ingested by a real bridge and called by a .NET agent over gRPC.</summary>
[Collection("mcp")]
public sealed class IngestTests
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(20);

    [Fact]
    public async Task Stdio_server_tools_are_capabilities_listed_and_called_from_a_dotnet_agent()
    {
        await using var bridge = await TestBridge.StartAsync([TestBridge.Everything()]);
        await WaitForCapabilityAsync(bridge, "everything:echo");
        await WaitForCapabilityAsync(bridge, "everything:get-sum");

        // Listed with the tool's description and input schema (also over the bridge's HTTP API).
        var echo = bridge.Broker.Capabilities.Single(c => c.Name == "everything:echo");
        Assert.Equal("Echoes back the input string", echo.Descriptor.Description);
        Assert.Contains("mcp", echo.Descriptor.Tags);
        using (var input = JsonDocument.Parse(echo.Descriptor.InputSchemaJson))
        {
            Assert.Equal("string", input.RootElement.GetProperty("properties").GetProperty("message").GetProperty("type").GetString());
        }

        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        using (var listed = JsonDocument.Parse(await http.GetStringAsync(new Uri(bridge.HttpAddress, "/v1/capabilities"))))
        {
            var view = listed.RootElement.GetProperty("capabilities").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "everything:get-sum");
            Assert.Equal("mcp:everything", view.GetProperty("providers")[0].GetProperty("agent_id").GetString());
            Assert.True(view.GetProperty("input_schema").GetProperty("properties").TryGetProperty("a", out _));
        }

        await using var agent = await TestBridge.CallerAsync(bridge);

        // Text content.
        using (var result = await InvokeAsync(agent, "everything:echo", """{"message":"hello loom"}"""))
        {
            var content = result.RootElement.GetProperty("content");
            Assert.Equal("text", content[0].GetProperty("type").GetString());
            Assert.Equal("Echo: hello loom", content[0].GetProperty("text").GetString());
            Assert.False(result.RootElement.TryGetProperty("isError", out _));
        }

        using (var result = await InvokeAsync(agent, "everything:get-sum", """{"a":2,"b":3.5}"""))
        {
            Assert.Contains("5.5", result.RootElement.GetProperty("content")[0].GetProperty("text").GetString(), StringComparison.Ordinal);
        }

        // Image content: base64 data and MIME type carried as the server sent them.
        using (var result = await InvokeAsync(agent, "everything:get-tiny-image", "{}"))
        {
            var image = result.RootElement.GetProperty("content").EnumerateArray().Single(c => c.GetProperty("type").GetString() == "image");
            Assert.Equal("image/png", image.GetProperty("mimeType").GetString());
            var png = Convert.FromBase64String(image.GetProperty("data").GetString()!);
            Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47 }, png[..4]);
        }

        // Structured content next to the content array.
        using (var result = await InvokeAsync(agent, "everything:get-structured-content", """{"location":"Chicago"}"""))
        {
            Assert.Equal(36, result.RootElement.GetProperty("structuredContent").GetProperty("temperature").GetInt32());
            Assert.NotEqual(0, result.RootElement.GetProperty("content").GetArrayLength());
        }

        // Embedded resources and resource links.
        using (var result = await InvokeAsync(agent, "everything:get-resource-links", """{"count":2}"""))
        {
            Assert.Contains(result.RootElement.GetProperty("content").EnumerateArray(), c => c.GetProperty("type").GetString() == "resource_link" && c.GetProperty("uri").GetString()!.Length > 0);
        }

        // The MCP server shows in the agent directory.
        var agentInfo = bridge.Agents.Find("mcp:everything");
        Assert.NotNull(agentInfo);
        Assert.Equal("mcp", agentInfo.Sdk);
        Assert.Contains("everything:echo", agentInfo.Capabilities);
    }

    [Fact]
    public async Task A_bad_argument_is_INVALID_PARAMS_with_the_path()
    {
        await using var bridge = await TestBridge.StartAsync([TestBridge.Everything(), TestBridge.Dynamic()]);
        await WaitForCapabilityAsync(bridge, "everything:get-sum");
        await WaitForCapabilityAsync(bridge, "dyn:reject");
        await using var agent = await TestBridge.CallerAsync(bridge);

        // Caught by the bridge against the tool's own input schema before the server sees it.
        var bad = await Assert.ThrowsAsync<InvalidParamsException>(() => InvokeRawAsync(agent, "everything:get-sum", """{"a":"two","b":3}"""));
        Assert.Equal("/a", bad.Path);
        var missing = await Assert.ThrowsAsync<InvalidParamsException>(() => InvokeRawAsync(agent, "everything:echo", "{}"));
        Assert.Contains("message", missing.Message, StringComparison.Ordinal);

        // Refused by the server itself with JSON-RPC -32602 (invalid params).
        var rejected = await Assert.ThrowsAsync<InvalidParamsException>(() => InvokeRawAsync(agent, "dyn:reject", """{"value":1}"""));
        Assert.Contains("value is not acceptable", rejected.Message, StringComparison.Ordinal);

        // A tool that reports isError is TOOL_ERROR with its text.
        var failed = await Assert.ThrowsAsync<ToolErrorException>(() => InvokeRawAsync(agent, "dyn:fail", "{}"));
        Assert.Contains("the tool failed on purpose", failed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Deadlines_apply_and_a_call_past_its_deadline_is_TIMEOUT_and_cancelled_at_the_server()
    {
        var dynamic = TestBridge.Dynamic() with { CallTimeout = TimeSpan.FromMilliseconds(700) };
        await using var bridge = await TestBridge.StartAsync([dynamic]);
        await WaitForCapabilityAsync(bridge, "dyn:sleep");
        await using var agent = await TestBridge.CallerAsync(bridge);

        // The caller's deadline.
        var callerDeadline = await Assert.ThrowsAsync<LoomTimeoutException>(() => agent.Context.InvokeRawAsync("dyn:sleep", """{"ms":5000}"""u8.ToArray(), TimeSpan.FromMilliseconds(300)));
        Assert.Equal(ErrorCode.Timeout, callerDeadline.Code);

        // The server's call timeout, shorter than the caller's deadline.
        var serverLimit = await Assert.ThrowsAsync<LoomTimeoutException>(() => InvokeRawAsync(agent, "dyn:sleep", """{"ms":5000}"""));
        Assert.Contains("call timeout", serverLimit.Message, StringComparison.Ordinal);

        // The server is still fine.
        using var ok = await InvokeAsync(agent, "dyn:sleep", """{"ms":10}""");
        Assert.Equal("slept 10 ms", ok.RootElement.GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task Tool_list_changes_are_followed()
    {
        await using var bridge = await TestBridge.StartAsync([TestBridge.Dynamic()]);
        await WaitForCapabilityAsync(bridge, "dyn:add-tool");
        Assert.DoesNotContain(bridge.Broker.Capabilities, c => c.Name == "dyn:late-tool");
        await using var agent = await TestBridge.CallerAsync(bridge);

        using (await InvokeAsync(agent, "dyn:add-tool", """{"name":"late-tool"}"""))
        {
        }

        await WaitForCapabilityAsync(bridge, "dyn:late-tool");
        using var late = await InvokeAsync(agent, "dyn:late-tool", "{}");
        Assert.Equal("late-tool", late.RootElement.GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task A_crashed_stdio_server_is_restarted_and_its_capabilities_are_unavailable_meanwhile()
    {
        var marker = "--loom-test-" + Guid.NewGuid().ToString("N");
        var server = TestBridge.Everything(marker: marker) with { RestartInitialDelay = TimeSpan.FromSeconds(2), RestartMaxDelay = TimeSpan.FromSeconds(4) };
        await using var bridge = await TestBridge.StartAsync([server]);
        await WaitForCapabilityAsync(bridge, "everything:echo");
        await using var agent = await TestBridge.CallerAsync(bridge);
        using (await InvokeAsync(agent, "everything:echo", """{"message":"before"}"""))
        {
        }

        var before = Processes.WithArgument(marker);
        Assert.Single(before);
        using (var process = System.Diagnostics.Process.GetProcessById(before[0]))
        {
            process.Kill();
        }

        // Down: the capabilities stay registered but answer PROVIDER_UNAVAILABLE (not NOT_FOUND).
        await Poll.UntilAsync(() => Status(bridge).State == "restarting", TimeSpan.FromSeconds(30), "the host noticed the exit");
        var down = await Assert.ThrowsAsync<ProviderUnavailableException>(() => InvokeRawAsync(agent, "everything:echo", """{"message":"during"}"""));
        Assert.Contains("everything", down.Message, StringComparison.Ordinal);
        Assert.Contains(bridge.Broker.Capabilities, c => c.Name == "everything:echo" && !c.Providers[0].IsHealthy);
        Assert.Contains("exited", Status(bridge).LastError, StringComparison.Ordinal);

        // Restarted after the backoff: a new process, and calls work again.
        await Poll.UntilAsync(() => Status(bridge).State == "connected", TimeSpan.FromSeconds(30), "restarted");
        using (var again = await InvokeAsync(agent, "everything:echo", """{"message":"after"}"""))
        {
            Assert.Equal("Echo: after", again.RootElement.GetProperty("content")[0].GetProperty("text").GetString());
        }

        var after = Processes.WithArgument(marker);
        Assert.Single(after);
        Assert.NotEqual(before[0], after[0]);
        Assert.True(Status(bridge).Restarts >= 1);
    }

    [Fact]
    public async Task A_server_that_crashes_during_a_call_fails_the_call_with_PROVIDER_UNAVAILABLE_and_comes_back()
    {
        await using var bridge = await TestBridge.StartAsync([TestBridge.Dynamic()]);
        await WaitForCapabilityAsync(bridge, "dyn:crash");
        await using var agent = await TestBridge.CallerAsync(bridge);

        await Assert.ThrowsAsync<ProviderUnavailableException>(() => InvokeRawAsync(agent, "dyn:crash", "{}"));
        await Poll.UntilAsync(
            async () =>
            {
                try
                {
                    using var ok = await InvokeAsync(agent, "dyn:sleep", """{"ms":1}""");
                    return true;
                }
                catch (ProviderUnavailableException)
                {
                    return false;
                }
            },
            TimeSpan.FromSeconds(30),
            "calls work after the restart");
        Assert.Contains("code 3", Status(bridge).LastError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Streamable_http_server_tools_are_ingested_with_headers_from_the_environment()
    {
        var port = FreePort();
        await using var server = await ChildProcess.StartAsync(
            "node",
            [Repo.Everything, "streamableHttp"],
            "listening on port",
            new Dictionary<string, string> { ["PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        var variable = "LOOM_MCP_TEST_TOKEN_" + Guid.NewGuid().ToString("N")[..8];
        Environment.SetEnvironmentVariable(variable, "Bearer test-token");
        try
        {
            var options = new McpServerOptions
            {
                Name = "web",
                Transport = "http",
                Url = new Uri($"http://127.0.0.1:{port}/mcp"),
                HeadersFromEnv = new Dictionary<string, string> { ["Authorization"] = variable },
                RestartInitialDelay = TimeSpan.FromMilliseconds(200),
                RestartMaxDelay = TimeSpan.FromSeconds(2),
            };
            await using var bridge = await TestBridge.StartAsync([options]);
            await WaitForCapabilityAsync(bridge, "web:echo");
            await using var agent = await TestBridge.CallerAsync(bridge);
            using var result = await InvokeAsync(agent, "web:echo", """{"message":"over http"}""");
            Assert.Equal("Echo: over http", result.RootElement.GetProperty("content")[0].GetProperty("text").GetString());
            Assert.Equal("http", Status(bridge).Transport);
        }
        finally
        {
            Environment.SetEnvironmentVariable(variable, null);
        }
    }

    [Fact]
    public async Task A_missing_header_variable_keeps_the_server_down_with_a_message_naming_it()
    {
        var options = new McpServerOptions
        {
            Name = "nohdr",
            Transport = "http",
            Url = new Uri("http://127.0.0.1:9/mcp"),
            HeadersFromEnv = new Dictionary<string, string> { ["Authorization"] = "LOOM_MCP_TEST_UNSET_VARIABLE" },
        };
        await using var bridge = await TestBridge.StartAsync([options]);
        await Poll.UntilAsync(() => Status(bridge).LastError is not null, TimeSpan.FromSeconds(30), "a connection attempt");
        Assert.Contains("LOOM_MCP_TEST_UNSET_VARIABLE", Status(bridge).LastError, StringComparison.Ordinal);
        Assert.Empty(Status(bridge).Capabilities);
    }

    private static McpServerStatus Status(LoomBridge bridge) => bridge.McpServers.Single();

    internal static async Task WaitForCapabilityAsync(LoomBridge bridge, string name) =>
        await Poll.UntilAsync(() => bridge.Broker.Capabilities.Any(c => c.Name == name), TimeSpan.FromSeconds(60), $"capability {name} registered");

    private static async Task<JsonDocument> InvokeAsync(RunningAgent agent, string capability, string input) =>
        JsonDocument.Parse(await InvokeRawAsync(agent, capability, input));

    private static async Task<ReadOnlyMemory<byte>> InvokeRawAsync(RunningAgent agent, string capability, string input)
    {
        using var timeout = new CancellationTokenSource(CallTimeout + TimeSpan.FromSeconds(5));
        return await agent.Context.InvokeRawAsync(capability, Encoding.UTF8.GetBytes(input), CallTimeout, cancellationToken: timeout.Token);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
