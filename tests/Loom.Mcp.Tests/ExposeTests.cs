using System.Text.Json;
using Loom.Bridge;
using Loom.Sdk;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Loom.Mcp.Tests;

/// <summary>
/// Loom capabilities served to the official MCP client (ModelContextProtocol): over streamable HTTP
/// by the bridge, and over stdio by <c>loom mcp</c>; calls reach a .NET agent in another process
/// through the ActionBroker.
/// </summary>
[Collection("mcp")]
public sealed class ExposeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Http_endpoint_lists_and_calls_capabilities_of_an_agent_in_another_process()
    {
        await using var bridge = await TestBridge.StartAsync();
        await using var agent = await ChildProcess.TestAgentAsync(bridge.GrpcAddress, "dotnet-provider");
        await using var client = await HttpClientAsync(bridge);
        using var timeout = new CancellationTokenSource(Timeout);

        var tools = await client.ListToolsAsync(cancellationToken: timeout.Token);
        var add = tools.Single(t => t.Name == "dotnet.add");
        Assert.Equal("Adds a and b.", add.Description);
        Assert.Equal("object", add.ProtocolTool.InputSchema.GetProperty("type").GetString());
        Assert.Contains(tools, t => t.Name == "dotnet.echo");

        // An object output: structuredContent plus the same JSON as text.
        var sum = await client.CallToolAsync("dotnet.add", new Dictionary<string, object?> { ["a"] = 2, ["b"] = 3.5 }, cancellationToken: timeout.Token);
        Assert.NotEqual(true, sum.IsError);
        Assert.Equal(5.5, sum.StructuredContent!.Value.GetProperty("sum").GetDouble());
        Assert.Contains("5.5", Assert.IsType<TextContentBlock>(sum.Content[0]).Text, StringComparison.Ordinal);

        var echo = await client.CallToolAsync("dotnet.echo", new Dictionary<string, object?> { ["text"] = "hi", ["n"] = 7 }, cancellationToken: timeout.Token);
        Assert.Equal("hi", echo.StructuredContent!.Value.GetProperty("text").GetString());

        // A bad argument: a tool error the model can read, with the Loom error in _meta.
        var bad = await client.CallToolAsync("dotnet.add", new Dictionary<string, object?> { ["a"] = "two", ["b"] = 3 }, cancellationToken: timeout.Token);
        Assert.True(bad.IsError);
        Assert.StartsWith("INVALID_PARAMS:", Assert.IsType<TextContentBlock>(bad.Content[0]).Text, StringComparison.Ordinal);
        var error = bad.Meta!["loom/error"]!;
        Assert.Equal("INVALID_PARAMS", (string?)error["code"]);
        Assert.Equal("/a", (string?)error["path"]);

        // An unknown tool is a protocol error.
        var unknown = await Assert.ThrowsAsync<McpProtocolException>(async () => await client.CallToolAsync("no.such.tool", cancellationToken: timeout.Token));
        Assert.Equal(McpErrorCode.InvalidParams, unknown.ErrorCode);

        // The call went through the ActionBroker to the agent.
        var provider = bridge.Broker.FindProviders("dotnet.add").Single();
        Assert.Equal("dotnet-provider", provider.Provider.AgentId);
        Assert.True(provider.Calls >= 1);
    }

    [Fact]
    public async Task Exposed_capabilities_follow_include_and_exclude_patterns()
    {
        await using var bridge = await TestBridge.StartAsync(expose: new McpExposeOptions { Include = ["dotnet.*", "math.*"], Exclude = ["dotnet.echo"], RefreshInterval = TimeSpan.FromMilliseconds(200) });
        await using var agent = await ChildProcess.TestAgentAsync(bridge.GrpcAddress, "dotnet-filtered");
        await using var client = await HttpClientAsync(bridge);
        using var timeout = new CancellationTokenSource(Timeout);

        var tools = await client.ListToolsAsync(cancellationToken: timeout.Token);
        Assert.Equal(["dotnet.add"], tools.Select(t => t.Name).ToArray());
        var hidden = await Assert.ThrowsAsync<McpProtocolException>(async () => await client.CallToolAsync("dotnet.echo", new Dictionary<string, object?> { ["x"] = 1 }, cancellationToken: timeout.Token));
        Assert.Equal(McpErrorCode.InvalidParams, hidden.ErrorCode);
    }

    [Fact]
    public async Task Http_clients_are_told_when_the_capability_set_changes()
    {
        await using var bridge = await TestBridge.StartAsync();
        var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var client = await HttpClientAsync(bridge, () => changed.TrySetResult());
        using var timeout = new CancellationTokenSource(Timeout);
        Assert.DoesNotContain(await client.ListToolsAsync(cancellationToken: timeout.Token), t => t.Name == "dotnet.add");

        await using var agent = await ChildProcess.TestAgentAsync(bridge.GrpcAddress, "dotnet-late");
        await changed.Task.WaitAsync(Timeout);
        Assert.Contains(await client.ListToolsAsync(cancellationToken: timeout.Token), t => t.Name == "dotnet.add");
    }

    [Fact]
    public async Task Ingested_mcp_tools_are_served_back_unchanged()
    {
        await using var bridge = await TestBridge.StartAsync([TestBridge.Everything()]);
        await IngestTests.WaitForCapabilityAsync(bridge, "everything:get-tiny-image");
        await using var client = await HttpClientAsync(bridge);
        using var timeout = new CancellationTokenSource(Timeout);

        var result = await client.CallToolAsync("everything:get-tiny-image", cancellationToken: timeout.Token);
        var image = Assert.Single(result.Content.OfType<ImageContentBlock>());
        Assert.Equal("image/png", image.MimeType);
        var echo = await client.CallToolAsync("everything:echo", new Dictionary<string, object?> { ["message"] = "round trip" }, cancellationToken: timeout.Token);
        Assert.Equal("Echo: round trip", Assert.IsType<TextContentBlock>(echo.Content[0]).Text);
    }

    [Fact]
    public async Task Loom_mcp_serves_a_running_bridge_over_stdio()
    {
        Assert.True(File.Exists(Repo.LoomDll), $"{Repo.LoomDll} is missing; build Loom.sln first.");
        await using var bridge = await TestBridge.StartAsync();
        await using var agent = await ChildProcess.TestAgentAsync(bridge.GrpcAddress, "dotnet-stdio-provider");
        using var loggerFactory = TestBridge.LoggerFactory();
        var transport = new StdioClientTransport(
            new StdioClientTransportOptions
            {
                Name = "loom-mcp",
                Command = "dotnet",
                Arguments = [Repo.LoomDll, "mcp", "--url", bridge.GrpcAddress.ToString(), "--http-url", bridge.HttpAddress.ToString(), "--exclude", "dotnet.echo"],
                WorkingDirectory = Repo.Root,
                ShutdownTimeout = TimeSpan.FromSeconds(5),
            },
            loggerFactory);
        using var timeout = new CancellationTokenSource(Timeout);
        await using var client = await McpClient.CreateAsync(transport, new McpClientOptions { ClientInfo = new Implementation { Name = "loom-tests", Version = "1.0" } }, loggerFactory, timeout.Token);

        Assert.Equal("loom", client.ServerInfo?.Name);
        var tools = await client.ListToolsAsync(cancellationToken: timeout.Token);
        Assert.Contains(tools, t => t.Name == "dotnet.add");
        Assert.DoesNotContain(tools, t => t.Name == "dotnet.echo");

        var sum = await client.CallToolAsync("dotnet.add", new Dictionary<string, object?> { ["a"] = 40, ["b"] = 2 }, cancellationToken: timeout.Token);
        Assert.Equal(42, sum.StructuredContent!.Value.GetProperty("sum").GetDouble());
        Assert.True(bridge.Broker.FindProviders("dotnet.add").Single().Calls >= 1);

        var bad = await client.CallToolAsync("dotnet.add", new Dictionary<string, object?> { ["a"] = 1 }, cancellationToken: timeout.Token);
        Assert.True(bad.IsError);
        Assert.Equal("INVALID_PARAMS", (string?)bad.Meta!["loom/error"]!["code"]);
    }

    private static async Task<McpClient> HttpClientAsync(LoomBridge bridge, Action? onToolsChanged = null)
    {
        var options = new McpClientOptions { ClientInfo = new Implementation { Name = "loom-tests", Version = "1.0" } };
        if (onToolsChanged is not null)
        {
            options.Handlers = new McpClientHandlers
            {
                NotificationHandlers =
                [
                    new(NotificationMethods.ToolListChangedNotification, (_, _) =>
                    {
                        onToolsChanged();
                        return ValueTask.CompletedTask;
                    }),
                ],
            };
        }

        var transport = new HttpClientTransport(new HttpClientTransportOptions { Endpoint = new Uri(bridge.HttpAddress, "/mcp"), TransportMode = HttpTransportMode.StreamableHttp });
        using var timeout = new CancellationTokenSource(Timeout);
        return await McpClient.CreateAsync(transport, options, TestBridge.LoggerFactory(), timeout.Token);
    }
}
