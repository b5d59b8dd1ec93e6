using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// Streams created at run time (issue 17): from an agent over the EventStream (stream_admin) and
/// over HTTP, kept across a restart in the data directory, refused with a clear error when the
/// settings clash, overlap another stream or the identity lacks the permissions.
/// </summary>
public sealed class StreamAdminTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-stream-admin-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Data => Path.Combine(_temp, "data");

    private async Task<LoomBridge> StartAsync(Func<BridgeOptions, BridgeOptions>? configure = null)
    {
        var options = new BridgeOptions { GrpcPort = 0, HttpPort = 0, DataDirectory = Data, ShutdownTimeout = TimeSpan.FromSeconds(1) };
        var bridge = new LoomBridge(configure?.Invoke(options) ?? options);
        await bridge.StartAsync();
        return bridge;
    }

    private static Task<RawAgent> AgentAsync(LoomBridge bridge, string name, string? token = null) =>
        RawAgent.RegisterAsync(bridge.GrpcAddress, new RegisterAgentRequest { Name = name }, token: token);

    private static async Task<ServerMessage> AdminAsync(RawAgent agent, StreamAdminRequest request)
    {
        request.CorrelationId = Guid.NewGuid().ToString("N");
        await agent.SendAsync(new ClientMessage { StreamAdmin = request });
        return await agent.WaitForAsync(m =>
            (m.KindCase == ServerMessage.KindOneofCase.StreamAdmin && m.StreamAdmin.CorrelationId == request.CorrelationId)
            || (m.KindCase == ServerMessage.KindOneofCase.Error && m.Error.CorrelationId == request.CorrelationId));
    }

    private static StreamSpec Spec(string name, params string[] subjects)
    {
        var spec = new StreamSpec { Name = name, MaxEvents = 1000 };
        spec.Subjects.AddRange(subjects);
        return spec;
    }

    private static async Task<ServerMessage> PublishAckedAsync(RawAgent agent, string topic, string id)
    {
        await agent.SendAsync(new ClientMessage { PublishAcked = new PublishRequest { Envelope = new Envelope { Id = id, Topic = topic, Payload = ByteString.CopyFromUtf8(id) } } });
        return await agent.WaitForAsync(m =>
            (m.KindCase == ServerMessage.KindOneofCase.PublishAck && m.PublishAck.CorrelationId == id)
            || (m.KindCase == ServerMessage.KindOneofCase.Error && m.Error.CorrelationId == id));
    }

    [Fact]
    public async Task An_agent_creates_a_stream_that_captures_at_once_survives_a_restart_and_can_be_deleted()
    {
        await using (var bridge = await StartAsync())
        await using (var agent = await AgentAsync(bridge, "admin"))
        {
            var refused = await PublishAckedAsync(agent, "orders.new", "before");
            Assert.Equal(ErrorCode.InvalidParams, refused.Error.Error.Code);

            var created = await AdminAsync(agent, new StreamAdminRequest { Create = Spec("orders", "orders.>") });
            Assert.Equal(ServerMessage.KindOneofCase.StreamAdmin, created.KindCase);
            Assert.Equal("orders", created.StreamAdmin.Streams.Single().Spec.Name);
            Assert.Equal(120_000ul, created.StreamAdmin.Streams.Single().Spec.DuplicateWindowMs);

            // The topic cache held "no stream" for orders.new: creation must clear it.
            var ack = await PublishAckedAsync(agent, "orders.new", "after");
            Assert.Equal(ServerMessage.KindOneofCase.PublishAck, ack.KindCase);
            Assert.Equal(("orders", 1ul), (ack.PublishAck.Stream, ack.PublishAck.Sequence));

            // The same settings again: idempotent. Different settings: refused with what to do.
            var again = await AdminAsync(agent, new StreamAdminRequest { Create = Spec("orders", "orders.>") });
            Assert.Equal(1ul, again.StreamAdmin.Streams.Single().Events);
            var clash = await AdminAsync(agent, new StreamAdminRequest { Create = Spec("orders", "orders.eu.>") });
            Assert.Equal(ErrorCode.InvalidParams, clash.Error.Error.Code);
            Assert.Contains("already exists with other settings", clash.Error.Error.Message, StringComparison.Ordinal);
        }

        await using (var bridge = await StartAsync())
        await using (var agent = await AgentAsync(bridge, "admin"))
        {
            var info = await AdminAsync(agent, new StreamAdminRequest { Info = "orders" });
            Assert.Equal((1ul, 1ul), (info.StreamAdmin.Streams.Single().LastSequence, info.StreamAdmin.Streams.Single().Events));
            Assert.Equal(2ul, (await PublishAckedAsync(agent, "orders.new", "after-restart")).PublishAck.Sequence);

            var list = await AdminAsync(agent, new StreamAdminRequest { List = true });
            Assert.Equal(["orders"], list.StreamAdmin.Streams.Select(s => s.Spec.Name));

            var deleted = await AdminAsync(agent, new StreamAdminRequest { Delete = "orders" });
            Assert.Equal(ServerMessage.KindOneofCase.StreamAdmin, deleted.KindCase);
            Assert.False(Directory.Exists(Path.Combine(Data, "streams", "orders")));
            Assert.Equal(ErrorCode.InvalidParams, (await PublishAckedAsync(agent, "orders.new", "gone")).Error.Error.Code);
            var missing = await AdminAsync(agent, new StreamAdminRequest { Info = "orders" });
            Assert.Contains("There is no durable stream 'orders'", missing.Error.Error.Message, StringComparison.Ordinal);
        }

        await using (var bridge = await StartAsync())
        await using (var agent = await AgentAsync(bridge, "admin"))
        {
            Assert.Empty((await AdminAsync(agent, new StreamAdminRequest { List = true })).StreamAdmin.Streams);
        }
    }

    [Theory]
    [InlineData("bad name!", "orders.>", "is not valid")]
    [InlineData("orders", "", "no subjects")]
    [InlineData("orders", "orders..x", "not a valid topic pattern")]
    [InlineData("other", "billing.*.paid", "overlaps 'billing.>' of stream 'billing'")]
    public async Task Bad_or_overlapping_specs_are_refused_with_what_to_fix(string name, string subject, string expected)
    {
        await using var bridge = await StartAsync(o => o with { Streams = [new StreamConfig { Name = "billing", Subjects = ["billing.>"] }] });
        await using var agent = await AgentAsync(bridge, "admin");
        var spec = new StreamSpec { Name = name };
        if (subject.Length > 0)
        {
            spec.Subjects.Add(subject);
        }

        var reply = await AdminAsync(agent, new StreamAdminRequest { Create = spec });
        Assert.Equal(ServerMessage.KindOneofCase.Error, reply.KindCase);
        Assert.Equal(ErrorCode.InvalidParams, reply.Error.Error.Code);
        Assert.Contains(expected, reply.Error.Error.Message, StringComparison.Ordinal);

        // A stream from loom.yaml cannot be deleted at run time.
        var delete = await AdminAsync(agent, new StreamAdminRequest { Delete = "billing" });
        Assert.Contains("defined in loom.yaml", delete.Error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bridge_without_a_data_directory_says_how_to_get_one()
    {
        await using var bridge = await StartAsync(o => o with { DataDirectory = null });
        await using var agent = await AgentAsync(bridge, "admin");
        var reply = await AdminAsync(agent, new StreamAdminRequest { Create = Spec("orders", "orders.>") });
        Assert.Equal(ErrorCode.InvalidParams, reply.Error.Error.Code);
        Assert.Contains("--data-dir", reply.Error.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Http_creates_reads_and_deletes_and_auth_limits_changes_to_admins_and_subjects_to_permissions()
    {
        var key = Path.Combine(_temp, "keys", "token.key");
        await using var bridge = await StartAsync(o => o with { Auth = AuthMode.Required, TokenKeyFile = key });
        var admin = BridgeTokens.Create(key, "ops", [], [], TimeSpan.FromHours(1), admin: true);
        var reader = BridgeTokens.Create(key, "viewer", [], [], TimeSpan.FromHours(1), admin: false, readOnly: true);
        using var http = new HttpClient { BaseAddress = bridge.HttpAddress, Timeout = TimeSpan.FromSeconds(20) };

        async Task<(HttpStatusCode, string)> SendAsync(HttpMethod method, string path, string? token, string? body = null)
        {
            using var request = new HttpRequestMessage(method, path);
            if (body is not null)
            {
                request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            }

            if (token is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            }

            using var response = await http.SendAsync(request);
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }

        const string spec = """{"name": "audit", "subjects": ["audit.>"], "max_age_ms": 86400000}""";
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Post, "/v1/streams", reader, spec)).Item1);
        var (status, body) = await SendAsync(HttpMethod.Post, "/v1/streams", admin, spec);
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("audit", JsonDocument.Parse(body).RootElement.GetProperty("name").GetString());
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/v1/streams/audit", reader)).Item1);
        var (bad, why) = await SendAsync(HttpMethod.Post, "/v1/streams", admin, """{"name": "x", "subjects": ["audit.eu"]}""");
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Contains("overlaps 'audit.>'", why, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(HttpMethod.Post, "/v1/streams", admin, "{not json")).Item1);

        // An agent whose token allows publishing only to chat.> may not create a stream over audit.>.
        var narrow = BridgeTokens.Create(key, "narrow", ["chat.>"], [], TimeSpan.FromHours(1));
        await using (var agent = await AgentAsync(bridge, "narrow", narrow))
        {
            var refused = await AdminAsync(agent, new StreamAdminRequest { Create = Spec("mine", "audit.mine.>") });
            Assert.Equal(ErrorCode.PermissionDenied, refused.Error.Error.Code);
            Assert.Empty((await AdminAsync(agent, new StreamAdminRequest { List = true })).StreamAdmin.Streams);
        }

        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Delete, "/v1/streams/audit", reader)).Item1);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(HttpMethod.Delete, "/v1/streams/audit", admin)).Item1);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Get, "/v1/streams/audit", admin)).Item1);
    }

    [Theory]
    [InlineData("a.>", "a.b", true)]
    [InlineData("a.*", "a.b.c", false)]
    [InlineData("a.*.c", "a.b.*", true)]
    [InlineData("a.b", "a.c", false)]
    [InlineData("a", "a.>", false)]
    [InlineData(">", "x.y", true)]
    public void Overlap_is_decided_token_by_token(string a, string b, bool overlap)
    {
        Assert.Equal(overlap, Internal.Streams.StreamHost.Overlap(a, b));
        Assert.Equal(overlap, Internal.Streams.StreamHost.Overlap(b, a));
    }
}
