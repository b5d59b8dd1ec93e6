using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Tests;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// Issue 16's audit trail on a real bridge with auth required, over real sockets: a JSON line for each
/// kind (registration, refusal, credential failure, admin action, limit), <c>_loom.audit.*</c> events for
/// permitted subscribers only, and a flood that overflows the queue counted without stalling publishes.
/// </summary>
public sealed class AuditTests : IAsyncLifetime
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(20);
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-audit-").FullName;
    private LoomBridge _bridge = null!;

    private string Key => Path.Combine(_temp, "token.key");

    private string AuditFile => Path.Combine(_temp, "audit", "audit.log");

    public Task InitializeAsync() => Task.CompletedTask;

    private async Task StartAsync(AuditOptions? audit = null)
    {
        _bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                Auth = AuthMode.Required,
                MetricsOpen = true,
                TokenKeyFile = Key,
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(100),
                Audit = audit ?? new AuditOptions { File = AuditFile },
                Permissions = new Dictionary<string, IdentityPermissions>
                {
                    ["alice"] = new() { Allow = new() { Publish = ["orders.>"], Subscribe = ["orders.>"] } },
                    ["auditor"] = new() { Allow = new() { Subscribe = ["_loom.audit.>"] } },
                    ["mallory"] = new() { Allow = new() { Subscribe = [">"], Publish = [">"] } },
                },
            },
            _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (_bridge is not null)
        {
            await _bridge.DisposeAsync();
        }

        Directory.Delete(_temp, recursive: true);
    }

    private string Token(string agent, bool admin = false) => BridgeTokens.Create(Key, agent, [], [], TimeSpan.FromHours(1), admin: admin);

    private Task<RawAgent> AgentAsync(string id, params string[] subscribe)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        foreach (var pattern in subscribe)
        {
            request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = pattern });
        }

        return RawAgent.RegisterAsync(_bridge.GrpcAddress, request, token: Token(id));
    }

    private List<JsonElement> Lines()
    {
        if (!File.Exists(AuditFile))
        {
            return [];
        }

        using var stream = new FileStream(AuditFile, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var text = reader.ReadToEnd();
        return [.. text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.EndsWith('}')).Select(l => JsonDocument.Parse(l).RootElement.Clone())];
    }

    private async Task<JsonElement> LineAsync(Func<JsonElement, bool> match, string what)
    {
        JsonElement found = default;
        await Poll.UntilAsync(() => Lines().FirstOrDefault(l => match(l)) is { ValueKind: JsonValueKind.Object } line && (found = line).ValueKind == JsonValueKind.Object, Short, what);
        return found;
    }

    private static string? S(JsonElement line, string field) => line.GetProperty(field).ValueKind == JsonValueKind.Null ? null : line.GetProperty(field).GetString();

    private async Task<string> MetricsAsync()
    {
        using var http = new HttpClient { Timeout = Short };
        return await http.GetStringAsync(new Uri(_bridge.HttpAddress, "/metrics"));
    }

    [Fact]
    public async Task A_json_line_is_written_for_registrations_refusals_credential_failures_and_admin_actions()
    {
        await StartAsync();
        var aliceToken = Token("alice");
        await using (var alice = await AgentAsync("alice"))
        {
            // Registration.
            var registered = await LineAsync(l => S(l, "kind") == "registration" && S(l, "action") == "register" && S(l, "agent") == "alice", "alice's registration");
            Assert.Equal("alice", S(registered, "identity"));
            Assert.Equal("ok", S(registered, "outcome"));
            Assert.Equal(8, S(registered, "session")!.Length); // a prefix: enough to match lines, not to use it
            Assert.StartsWith(alice.Registration.SessionId[..8], S(registered, "session"), StringComparison.Ordinal);
            Assert.Contains("127.0.0.1", S(registered, "remote"), StringComparison.Ordinal);
            Assert.True(DateTimeOffset.TryParse(S(registered, "ts"), out var ts) && Math.Abs((DateTimeOffset.UtcNow - ts).TotalMinutes) < 5);
            Assert.EndsWith("Z", S(registered, "ts"), StringComparison.Ordinal);

            // A refused publish.
            await alice.PublishAsync("billing.x", "1");
            var refused = await LineAsync(l => S(l, "kind") == "refusal" && S(l, "action") == "publish", "the refused publish");
            Assert.Equal("alice", S(refused, "identity"));
            Assert.Equal("alice", S(refused, "agent"));
            Assert.Equal("billing.x", S(refused, "resource"));
            Assert.Equal("denied", S(refused, "outcome"));
            Assert.Contains("no rule allows it", S(refused, "reason"), StringComparison.Ordinal);

            // An agent-id takeover: mallory registering as alice.
            using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
            var client = new Protocol.V1.Bridge.BridgeClient(channel);
            var takeover = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "alice", Sdk = "test" }, RawAgent.Options(token: Token("mallory"))));
            Assert.Equal(StatusCode.PermissionDenied, takeover.StatusCode);
            var binding = await LineAsync(l => S(l, "kind") == "refusal" && S(l, "action") == "register" && S(l, "identity") == "mallory", "the takeover");
            Assert.Equal("alice", S(binding, "agent"));
            Assert.Contains("may register agent id 'mallory' only", S(binding, "reason"), StringComparison.Ordinal);

            // Credential failures: no token, a token signed with another key.
            await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "x", Sdk = "test" }, RawAgent.Options()));
            var otherKey = Path.Combine(_temp, "other.key");
            var forged = BridgeTokens.Create(otherKey, "eve", [], [], TimeSpan.FromHours(1));
            var bad = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(new RegisterAgentRequest { AgentId = "eve", Sdk = "test" }, RawAgent.Options(token: forged)));
            Assert.Equal(StatusCode.Unauthenticated, bad.StatusCode);
            await LineAsync(l => S(l, "kind") == "credential" && S(l, "reason")!.StartsWith("This bridge requires a credential", StringComparison.Ordinal), "the missing credential");
            var signature = await LineAsync(l => S(l, "kind") == "credential" && S(l, "reason")!.Contains("signature", StringComparison.Ordinal), "the bad signature");
            Assert.Equal("/loom.v1.Bridge/RegisterAgent", S(signature, "action"));
            Assert.Equal("unauthenticated", S(signature, "outcome"));

            // The HTTP admin surface: a 401 is a credential failure, an MCP tool call by an admin an admin action.
            using var http = new HttpClient { Timeout = Short };
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(new Uri(_bridge.HttpAddress, "/v1/agents"))).StatusCode);
            await LineAsync(l => S(l, "kind") == "credential" && S(l, "action") == "GET /v1/agents", "the 401");
            var admin = Token("ops", admin: true);
            using var call = new HttpRequestMessage(HttpMethod.Post, new Uri(_bridge.HttpAddress, "/mcp"))
            {
                Content = new StringContent("""{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"orders.price","arguments":{}}}""", Encoding.UTF8, "application/json"),
            };
            call.Headers.Accept.ParseAdd("application/json");
            call.Headers.Accept.ParseAdd("text/event-stream");
            call.Headers.Authorization = new AuthenticationHeaderValue("Bearer", admin);
            using var _ = await http.SendAsync(call);
            var action = await LineAsync(l => S(l, "kind") == "admin", "the MCP tool call");
            Assert.Equal("mcp tools/call", S(action, "action"));
            Assert.Equal("orders.price", S(action, "resource"));
            Assert.Equal("ops", S(action, "identity"));

            // Leaving is an unregistration.
            await alice.LeaveAsync();
            var left = await LineAsync(l => S(l, "kind") == "registration" && S(l, "action") == "unregister" && S(l, "agent") == "alice", "alice leaving");
            Assert.Equal("left", S(left, "outcome"));

            // Never a secret: no token text anywhere in the file, and no whole session id.
            var text = await File.ReadAllTextAsync(AuditFile);
            Assert.DoesNotContain(aliceToken, text, StringComparison.Ordinal);
            Assert.DoesNotContain(admin, text, StringComparison.Ordinal);
            Assert.DoesNotContain(forged, text, StringComparison.Ordinal);
            Assert.DoesNotContain(alice.Registration.SessionId, text, StringComparison.Ordinal);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(AuditFile));
            }
        }

        var metrics = await MetricsAsync();
        Assert.Matches("loom_audit_records_total\\{kind=\"refusal\"\\} [1-9]", metrics);
        Assert.Matches("loom_audit_records_total\\{kind=\"registration\"\\} [1-9]", metrics);
        Assert.Matches("loom_audit_records_total\\{kind=\"credential\"\\} [1-9]", metrics);
        Assert.Matches("loom_audit_records_total\\{kind=\"admin\"\\} [1-9]", metrics);
    }

    [Fact]
    public async Task Audit_events_reach_permitted_subscribers_only_and_nobody_may_publish_them()
    {
        await StartAsync();
        await using var auditor = await AgentAsync("auditor", "_loom.audit.>");

        // An admin token reads them without a loom.yaml rule.
        var opsRequest = new RegisterAgentRequest { AgentId = "ops", Sdk = "test" };
        opsRequest.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "_loom.audit.refusal" });
        await using var ops = await RawAgent.RegisterAsync(_bridge.GrpcAddress, opsRequest, token: Token("ops", admin: true));

        // mallory may subscribe to everything but not to audit events: named, refused; through '>', filtered out.
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var wanting = new RegisterAgentRequest { AgentId = "mallory", Sdk = "test" };
        wanting.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "_loom.audit.>" });
        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(wanting, RawAgent.Options(token: Token("mallory"))));
        Assert.Equal(StatusCode.PermissionDenied, refused.StatusCode);
        Assert.Contains("may not subscribe to '_loom.audit.>': audit events are for admin credentials", refused.Status.Detail, StringComparison.Ordinal);
        await using var mallory = await AgentAsync("mallory", ">");
        await mallory.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "s1", Subscription = new Protocol.V1.Subscription { Pattern = "_loom.>" } } });
        var streamRefusal = await mallory.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error && m.Error.CorrelationId == "s1", Short);
        Assert.Equal(ErrorCode.PermissionDenied, streamRefusal.Error.Error.Code);

        // Nobody publishes on audit topics, not even with publish '>'.
        await mallory.PublishAsync("_loom.audit.refusal", "{\"forged\":true}", e => e.Id = "forged-1");
        var forged = await mallory.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error && m.Error.CorrelationId == "forged-1", Short);
        Assert.Equal(ErrorCode.PermissionDenied, forged.Error.Error.Code);
        Assert.Contains("audit topics are written by the bridge only", forged.Error.Error.Message, StringComparison.Ordinal);

        // A refusal: the auditor and the admin receive it as an event, with the line's fields.
        await using var alice = await AgentAsync("alice");
        await alice.PublishAsync("billing.y", "1");
        var seen = await auditor.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == "_loom.audit.refusal"
            && m.Deliver.Envelope.Payload.ToStringUtf8().Contains("billing.y", StringComparison.Ordinal), Short);
        Assert.Equal("_loom.audit", seen.Deliver.Envelope.Sender);
        using var payload = JsonDocument.Parse(seen.Deliver.Envelope.Payload.ToStringUtf8());
        Assert.Equal("alice", payload.RootElement.GetProperty("identity").GetString());
        Assert.Equal("publish", payload.RootElement.GetProperty("action").GetString());
        Assert.DoesNotContain("forged", seen.Deliver.Envelope.Payload.ToStringUtf8(), StringComparison.Ordinal);
        await ops.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == "_loom.audit.refusal", Short);

        // mallory's '>' delivers ordinary events published after the audit event, and no audit event before them.
        await alice.PublishAsync("orders.marker", "2");
        var delivered = new List<string>();
        await mallory.WaitForAsync(m =>
        {
            if (m.KindCase == ServerMessage.KindOneofCase.Deliver)
            {
                delivered.Add(m.Deliver.Envelope.Topic);
            }

            return m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == "orders.marker";
        }, Short);
        Assert.DoesNotContain(delivered, t => t.StartsWith("_loom.audit", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_flood_that_overflows_the_audit_queue_counts_drops_and_never_stalls_publishes()
    {
        // A tiny queue, and an audit subscriber that blocks and never reads: the writer is held up to 1 s per record.
        await StartAsync(new AuditOptions { File = AuditFile, QueueCapacity = 4, DisposeTimeout = TimeSpan.FromMilliseconds(200) });
        var stuck = new RegisterAgentRequest { AgentId = "auditor", Sdk = "test" };
        stuck.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "_loom.audit.>", Overflow = OverflowPolicy.Block, QueueCapacity = 1, BlockTimeoutMs = 2000 });
        await using var auditor = await RawAgent.RegisterAsync(_bridge.GrpcAddress, stuck, openStream: false, token: Token("auditor"));
        await using var alice = await AgentAsync("alice", "orders.>");

        // 2,000 refused publishes in frames of 100: each is answered at once, whatever the audit writer does.
        const int Flood = 2000;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        for (var f = 0; f < Flood / 100; f++)
        {
            await alice.SendAsync([.. Enumerable.Range(0, 100).Select(i => new ClientMessage { Publish = new Envelope { Id = $"f{f}-{i}", Topic = "billing.flood", Payload = Google.Protobuf.ByteString.CopyFromUtf8("x") } })]);
        }

        var errors = 0;
        await alice.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error && ++errors == Flood, TimeSpan.FromSeconds(60));

        // And an allowed publish still goes through promptly.
        await alice.PublishAsync("orders.after", "ok");
        await alice.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == "orders.after", Short);
        clock.Stop();

        // Were the writer waited for, 2,000 records at up to 1 s each would take over half an hour.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), $"the flood took {clock.Elapsed}");
        var metrics = await MetricsAsync();
        var dropped = System.Text.RegularExpressions.Regex.Match(metrics, "loom_audit_dropped_total\\{reason=\"queue_full\"\\} (\\d+)");
        Assert.True(dropped.Success, "loom_audit_dropped_total{reason=\"queue_full\"} is missing");
        Assert.True(long.Parse(dropped.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) >= Flood / 2, $"only {dropped.Groups[1].Value} drops counted");
    }
}
