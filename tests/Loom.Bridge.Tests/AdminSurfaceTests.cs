using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>The HTTP admin surface with auth on (issue 16): /v1/*, /metrics and /mcp need a credential; /healthz stays open; session ids only for admins.</summary>
public sealed class AdminSurfaceTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-admin-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Key => Path.Combine(_temp, "keys", "token.key");

    private string Token(string agent, bool admin = false, bool readOnly = false) =>
        BridgeTokens.Create(Key, agent, [], [], TimeSpan.FromHours(1), admin, readOnly: readOnly);

    private async Task<LoomBridge> StartAsync(AuthMode auth = AuthMode.Required, bool metricsOpen = false)
    {
        var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, Auth = auth, TokenKeyFile = Key, MetricsOpen = metricsOpen, Mcp = new Loom.Mcp.McpExposeOptions { Enabled = true } });
        await bridge.StartAsync();
        return bridge;
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(LoomBridge bridge, string path, string? token = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(bridge.HttpAddress, path));
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        using var response = await http.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task<HttpStatusCode> PostMcpAsync(LoomBridge bridge, string? token = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(bridge.HttpAddress, "/mcp"))
        {
            Content = new StringContent("""{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Accept.ParseAdd("application/json");
        request.Headers.Accept.ParseAdd("text/event-stream");
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    private static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    private static string SessionOf(string json, string agent) =>
        JsonDocument.Parse(json).RootElement.GetProperty("agents").EnumerateArray().Single(a => a.GetProperty("agent_id").GetString() == agent).GetProperty("session_id").GetString()!;

    [Fact]
    public async Task With_auth_on_v1_metrics_and_mcp_need_a_read_only_or_admin_credential_and_healthz_stays_open()
    {
        await using var bridge = await StartAsync();
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var alice = Token("alice");
        var registered = await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "alice", Name = "alice", Sdk = "test", HeartbeatIntervalMs = 60_000 }, Bearer(alice), DateTime.UtcNow.AddSeconds(20));

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(bridge, "/healthz")).Status);
        foreach (var path in new[] { "/v1/agents", "/v1/capabilities", "/metrics" })
        {
            var anonymous = await GetAsync(bridge, path);
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.Status);
            Assert.Contains("loom token create", anonymous.Body, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(bridge, path, "not.a.token")).Status);
            var agentOnly = await GetAsync(bridge, path, alice);
            Assert.Equal(HttpStatusCode.Forbidden, agentOnly.Status);
            Assert.Contains("'alice'", agentOnly.Body, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.OK, (await GetAsync(bridge, path, Token("reader", readOnly: true))).Status);
            Assert.Equal(HttpStatusCode.OK, (await GetAsync(bridge, path, Token("root", admin: true))).Status);
        }

        // Defect 1: session ids only for an admin credential.
        Assert.Equal("", SessionOf((await GetAsync(bridge, "/v1/agents", Token("reader", readOnly: true))).Body, "alice"));
        Assert.Equal(registered.SessionId, SessionOf((await GetAsync(bridge, "/v1/agents", Token("root", admin: true))).Body, "alice"));

        // /mcp calls capabilities: admin only.
        Assert.Equal(HttpStatusCode.Unauthorized, await PostMcpAsync(bridge));
        Assert.Equal(HttpStatusCode.Forbidden, await PostMcpAsync(bridge, Token("reader", readOnly: true)));
        Assert.Equal(HttpStatusCode.OK, await PostMcpAsync(bridge, Token("root", admin: true)));
    }

    [Fact]
    public async Task Metrics_can_be_opened_explicitly_and_auth_optional_protects_the_surface_too()
    {
        await using var bridge = await StartAsync(AuthMode.Optional, metricsOpen: true);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(bridge, "/metrics")).Status);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(bridge, "/v1/agents")).Status);
    }

    [Fact]
    public async Task Defect_1_session_ids_are_not_listed_with_auth_off_and_a_leaked_one_cannot_be_used_by_another_identity()
    {
        await using (var open = await StartAsync(AuthMode.Off))
        {
            await using var agent = await RawAgent.RegisterAsync(open.GrpcAddress, new RegisterAgentRequest { AgentId = "victim", Name = "victim", Sdk = "test" }, openStream: false);
            Assert.Equal("", SessionOf((await GetAsync(open, "/v1/agents")).Body, "victim"));
        }

        await using var bridge = await StartAsync();
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var victim = await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "victim", Name = "victim", Sdk = "test", HeartbeatIntervalMs = 60_000 }, Bearer(Token("victim")), DateTime.UtcNow.AddSeconds(20));

        // The session id leaked (an admin saw it): another identity forwarding a call through it, with a forged caller, is refused.
        var forward = new ForwardActionRequest { SessionId = victim.SessionId, Call = new ActionCall { CallId = "c1", Capability = "anything", Caller = "victim", InputJson = Google.Protobuf.ByteString.CopyFromUtf8("{}") } };
        var spoofed = await Assert.ThrowsAsync<RpcException>(async () => await client.ForwardActionAsync(forward, Bearer(Token("mallory")), DateTime.UtcNow.AddSeconds(20)));
        Assert.Equal(StatusCode.PermissionDenied, spoofed.StatusCode);
        Assert.Contains("belongs to identity 'victim'", spoofed.Status.Detail, StringComparison.Ordinal);
    }
}
