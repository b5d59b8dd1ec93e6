using System.Diagnostics;
using Loom.Bridge;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Loom.Mcp.Tests;

/// <summary><c>loom mcp</c> against a bridge with auth on: it takes <c>--token</c> (else LOOM_TOKEN), and without one it says so and exits 1.</summary>
[Collection("mcp")]
public sealed class StdioAuthTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-mcp-auth-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Key => Path.Combine(_temp, "token.key");

    private async Task<LoomBridge> StartAsync()
    {
        var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                HeartbeatInterval = TimeSpan.FromSeconds(1),
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ShutdownTimeout = TimeSpan.FromSeconds(2),
                Auth = AuthMode.Required,
                TokenKeyFile = Key,
                Permissions = new Dictionary<string, IdentityPermissions>
                {
                    ["provider"] = new() { Allow = new PermissionGrants { Provide = ["dotnet.*"] } },
                    ["mcp-client"] = new() { Allow = new PermissionGrants { Call = ["dotnet.add"] } },
                },
            },
            TestBridge.Logging);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await bridge.StartAsync(timeout.Token);
        return bridge;
    }

    [Fact]
    public async Task Loom_mcp_serves_a_bridge_with_auth_on_with_a_token_and_refuses_to_start_without_one()
    {
        Assert.True(File.Exists(Repo.LoomDll), $"{Repo.LoomDll} is missing; build Loom.sln first.");
        await using var bridge = await StartAsync();
        var providerToken = BridgeTokens.Create(Key, "provider", [], [], TimeSpan.FromHours(1));
        await using var agent = await ChildProcess.StartAsync("dotnet", [Repo.TestAgentDll, "serve", "--url", bridge.GrpcAddress.ToString(), "--agent-id", "provider"], "ready", new Dictionary<string, string> { ["LOOM_TOKEN"] = providerToken });

        // Without a credential: one line saying the bridge refused it, exit 1.
        var start = new ProcessStartInfo("dotnet") { RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true, WorkingDirectory = Repo.Root };
        foreach (var arg in new[] { Repo.LoomDll, "mcp", "--url", bridge.GrpcAddress.ToString(), "--http-url", bridge.HttpAddress.ToString() })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["LOOM_TOKEN"] = "";
        using (var refused = Process.Start(start)!)
        {
            var stderr = refused.StandardError.ReadToEndAsync();
            await refused.WaitForExitAsync().WaitAsync(Timeout);
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains("refused the credential", await stderr, StringComparison.Ordinal);
            Assert.Contains("LOOM_TOKEN", await stderr, StringComparison.Ordinal);
        }

        // With --token (read-only for GET /v1/capabilities, allowed to call dotnet.add): lists and calls.
        var token = BridgeTokens.Create(Key, "mcp-client", [], [], TimeSpan.FromHours(1), readOnly: true);
        using var loggerFactory = TestBridge.LoggerFactory();
        var transport = new StdioClientTransport(
            new StdioClientTransportOptions
            {
                Name = "loom-mcp",
                Command = "dotnet",
                Arguments = [Repo.LoomDll, "mcp", "--url", bridge.GrpcAddress.ToString(), "--http-url", bridge.HttpAddress.ToString(), "--token", token],
                WorkingDirectory = Repo.Root,
                ShutdownTimeout = TimeSpan.FromSeconds(5),
                EnvironmentVariables = new Dictionary<string, string?> { ["LOOM_TOKEN"] = "" },
            },
            loggerFactory);
        using var timeout = new CancellationTokenSource(Timeout);
        await using var client = await McpClient.CreateAsync(transport, new McpClientOptions { ClientInfo = new Implementation { Name = "loom-tests", Version = "1.0" } }, loggerFactory, timeout.Token);
        var tools = await client.ListToolsAsync(cancellationToken: timeout.Token);
        Assert.Contains(tools, t => t.Name == "dotnet.add");
        var sum = await client.CallToolAsync("dotnet.add", new Dictionary<string, object?> { ["a"] = 40, ["b"] = 2 }, cancellationToken: timeout.Token);
        Assert.Equal(42, sum.StructuredContent!.Value.GetProperty("sum").GetDouble());
        Assert.Equal("mcp-client", bridge.Agents.Find("mcp-client")?.AgentId);

        // The identity may call dotnet.add only.
        var echo = await client.CallToolAsync("dotnet.echo", new Dictionary<string, object?> { ["text"] = "x" }, cancellationToken: timeout.Token);
        Assert.True(echo.IsError);
        Assert.Equal("PERMISSION_DENIED", (string?)echo.Meta!["loom/error"]!["code"]);
    }
}
