using System.Net;
using System.Text;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>Issue 16, defect 5: /mcp validates Host and Origin (DNS rebinding), as the MCP specification asks of HTTP servers.</summary>
public sealed class McpOriginTests
{
    private static async Task<(HttpStatusCode Status, string Body)> PostAsync(LoomBridge bridge, string? host, string? origin)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(bridge.HttpAddress, "/mcp"))
        {
            Content = new StringContent("""{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Accept.ParseAdd("application/json");
        request.Headers.Accept.ParseAdd("text/event-stream");
        if (host is not null)
        {
            request.Headers.Host = host;
        }

        if (origin is not null)
        {
            request.Headers.TryAddWithoutValidation("Origin", origin);
        }

        using var response = await http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Mcp_refuses_foreign_hosts_and_origins_and_lets_loopback_and_allowed_hosts_through()
    {
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, Mcp = new Loom.Mcp.McpExposeOptions { Enabled = true }, McpAllowedHosts = ["loom.internal"] });
        await bridge.StartAsync();
        var port = bridge.HttpEndPoint.Port;

        // A DNS-rebinding page: its own host name resolved to 127.0.0.1, so the Host header names it.
        var rebound = await PostAsync(bridge, $"attacker.example:{port}", $"http://attacker.example:{port}");
        Assert.Equal(HttpStatusCode.Forbidden, rebound.Status);
        Assert.Contains("refuses Host 'attacker.example'", rebound.Body, StringComparison.Ordinal);
        Assert.Contains("mcp_allowed_hosts", rebound.Body, StringComparison.Ordinal);

        // A page elsewhere posting to localhost: its Origin is foreign.
        var crossOrigin = await PostAsync(bridge, null, "https://attacker.example");
        Assert.Equal(HttpStatusCode.Forbidden, crossOrigin.Status);
        Assert.Contains("refuses Origin 'https://attacker.example'", crossOrigin.Body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, (await PostAsync(bridge, null, "null")).Status);

        // No Origin (a local client), a loopback Origin, and an allowed host: served.
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(bridge, null, null)).Status);
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(bridge, $"localhost:{port}", "http://localhost:3000")).Status);
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(bridge, $"loom.internal:{port}", "https://loom.internal")).Status);

        // The other endpoints are not MCP's: /healthz answers any Host.
        using var http = new HttpClient();
        using var health = new HttpRequestMessage(HttpMethod.Get, new Uri(bridge.HttpAddress, "/healthz"));
        health.Headers.Host = "anything.example";
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(health)).StatusCode);
    }
}
