using System.Text.Json;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Tests;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// Issue 16's per-identity limits on a real bridge with auth required, over real sockets: publishes and
/// calls per second (token buckets), max subscriptions, capabilities and memory bytes. Each refusal is
/// RESOURCE_EXHAUSTED naming the limit, does nothing else, is counted and audited.
/// </summary>
public sealed class IdentityLimitTests : IAsyncLifetime
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(20);
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-limits-").FullName;
    private LoomBridge _bridge = null!;

    private string Key => Path.Combine(_temp, "token.key");

    private string AuditFile => Path.Combine(_temp, "audit.log");

    public async Task InitializeAsync()
    {
        var everything = new PermissionGrants { Publish = [">"], Subscribe = [">"], Provide = ["*"], Call = ["*"], MemoryRead = ["*"], MemoryWrite = ["*"], Collaboration = ["*"] };
        _bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                Auth = AuthMode.Required,
                MetricsOpen = true,
                TokenKeyFile = Key,
                Audit = new AuditOptions { File = AuditFile },
                Permissions = new Dictionary<string, IdentityPermissions>
                {
                    ["*"] = new() { Allow = everything, Limits = new() { MaxSubscriptions = 2, MaxCapabilities = 1 } },
                    ["slow"] = new() { Limits = new() { PublishesPerSecond = 1, PublishBurst = 5, CallsPerSecond = 1, CallBurst = 2, MaxMemoryBytes = 600 } },
                },
            },
            _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _bridge.DisposeAsync();
        Directory.Delete(_temp, recursive: true);
    }

    private string Token(string agent) => BridgeTokens.Create(Key, agent, [], [], TimeSpan.FromHours(1));

    private Task<RawAgent> AgentAsync(string id, params string[] subscribe)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        foreach (var pattern in subscribe)
        {
            request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = pattern });
        }

        return RawAgent.RegisterAsync(_bridge.GrpcAddress, request, token: Token(id));
    }

    private async Task<string> MetricsAsync()
    {
        using var http = new HttpClient { Timeout = Short };
        return await http.GetStringAsync(new Uri(_bridge.HttpAddress, "/metrics"));
    }

    private async Task AuditedAsync(string limit)
    {
        await Poll.UntilAsync(
            () => File.Exists(AuditFile) && ReadShared(AuditFile).Split('\n').Any(l => l.Contains("\"kind\":\"limit\"", StringComparison.Ordinal) && l.Contains(limit, StringComparison.Ordinal)),
            Short,
            $"an audit line for {limit}");
    }

    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    [Fact]
    public async Task Publishes_over_the_rate_are_refused_each_naming_the_limit_and_not_delivered_batched_ones_each_counted()
    {
        await using var watcher = await AgentAsync("watcher", "orders.>");
        await using var slow = await AgentAsync("slow");

        // 20 publishes in one frame: the bucket holds 5 (publish_burst) and refills 1 per second.
        await slow.SendAsync([.. Enumerable.Range(0, 20).Select(i => new ClientMessage { Publish = new Envelope { Id = $"p{i}", Topic = "orders.new", Payload = ByteString.CopyFromUtf8(i.ToString(System.Globalization.CultureInfo.InvariantCulture)) } })]);
        // Only the allowed ones arrive: publish a marker after the bucket refills and count what came before it.
        var delivered = new List<string>();
        await Poll.UntilAsync(async _ =>
        {
            await slow.PublishAsync("orders.marker", "m", e => e.Id = $"marker-{Guid.NewGuid():N}");
            try
            {
                await watcher.WaitForAsync(m =>
                {
                    if (m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == "orders.new")
                    {
                        delivered.Add(m.Deliver.Envelope.Id);
                    }

                    return m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == "orders.marker";
                }, TimeSpan.FromSeconds(2));
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }, Short, "a marker after the refill");

        // The marker went after the 20 on the same stream: every one of them has been answered by now.
        var refusals = new List<ErrorReply>();
        while (refusals.Count < 20 - delivered.Count)
        {
            refusals.Add((await slow.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error && m.Error.CorrelationId.StartsWith('p'), Short)).Error);
        }

        Assert.InRange(refusals.Count, 14, 15); // 5 in the bucket, and perhaps 1 refilled meanwhile
        foreach (var refusal in refusals)
        {
            Assert.Equal(ErrorCode.ResourceExhausted, refusal.Error.Code);
            Assert.Contains("Identity 'slow' is over its limit of 1 publishes per second (permissions.slow.limits.publishes_per_second, burst 5)", refusal.Error.Message, StringComparison.Ordinal);
            Assert.Contains($"envelope '{refusal.CorrelationId}'", refusal.Error.Message, StringComparison.Ordinal);
        }

        Assert.Empty(delivered.Intersect(refusals.Select(r => r.CorrelationId)));

        var metrics = await MetricsAsync();
        Assert.Matches("loom_rate_limited_total\\{kind=\"publishes_per_second\"\\} (1[4-9]|[2-9][0-9])", metrics);
        await AuditedAsync("publishes_per_second");
    }

    [Fact]
    public async Task Calls_over_the_rate_are_refused_naming_the_limit_on_the_stream_and_through_ForwardAction()
    {
        await using var slow = await AgentAsync("slow");

        // Stream calls in one frame: 2 pass the bucket (call_burst) and fail for want of a provider; the rest are refused by the limit.
        await slow.SendAsync([.. Enumerable.Range(0, 6).Select(i => new ClientMessage { Call = new ActionCall { CallId = $"c{i}", Capability = "nobody.here", InputJson = ByteString.CopyFromUtf8("{}") } })]);
        var results = new List<ActionResult>();
        while (results.Count < 6)
        {
            results.Add((await slow.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Result, Short)).Result);
        }

        var limited = results.Where(r => r.Error?.Code == ErrorCode.ResourceExhausted).ToList();
        Assert.InRange(limited.Count, 3, 4);
        Assert.All(limited, r => Assert.Contains("Identity 'slow' is over its limit of 1 calls per second (permissions.slow.limits.calls_per_second, burst 2): the call of 'nobody.here' was not made", r.Error.Message, StringComparison.Ordinal));
        Assert.All(results.Except(limited), r => Assert.NotEqual(ErrorCode.ResourceExhausted, r.Error.Code));

        // ForwardAction shares the identity's bucket: of 5 at once at most 2 pass (call_burst), the others are
        // RESOURCE_EXHAUSTED in the status and the trailer.
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var forwarded = await Task.WhenAll(Enumerable.Range(0, 5).Select(async i =>
        {
            try
            {
                await client.ForwardActionAsync(
                    new ForwardActionRequest { SessionId = slow.Registration.SessionId, Call = new ActionCall { CallId = $"f{i}", Capability = "nobody.here", InputJson = ByteString.CopyFromUtf8("{}") } },
                    RawAgent.Options(token: Token("slow")));
                return null;
            }
            catch (RpcException ex)
            {
                return ex;
            }
        }));
        var refused = forwarded.Where(e => e?.StatusCode == StatusCode.ResourceExhausted).ToList();
        Assert.InRange(refused.Count, 3, 5);
        Assert.All(refused, e => Assert.Equal("RESOURCE_EXHAUSTED", e!.Trailers.GetValue("loom-error-code")));
        Assert.All(refused, e => Assert.Contains("Identity 'slow' is over its limit of 1 calls per second", e!.Status.Detail, StringComparison.Ordinal));

        Assert.Matches("loom_rate_limited_total\\{kind=\"calls_per_second\"\\} ([6-9]|[1-9][0-9])", await MetricsAsync());
        await AuditedAsync("calls_per_second");
    }

    [Fact]
    public async Task Subscriptions_and_capabilities_past_the_default_limits_are_refused_naming_them()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);

        // max_subscriptions 2 from the '*' entry: three at registration are refused, nothing subscribed.
        var many = new RegisterAgentRequest { AgentId = "greedy", Sdk = "test" };
        foreach (var p in new[] { "a.>", "b.>", "c.>" })
        {
            many.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = p });
        }

        var refused = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(many, RawAgent.Options(token: Token("greedy"))));
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Contains("Identity 'greedy' may hold at most 2 subscriptions (permissions.'*'.limits.max_subscriptions)", refused.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain(_bridge.Bus.Subscriptions, s => s.Owner == "greedy");

        // On the stream: the third subscribe is refused, the first two are held.
        await using var greedy = await AgentAsync("greedy", "a.>", "b.>");
        await greedy.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "s3", Subscription = new Protocol.V1.Subscription { Pattern = "c.>" } } });
        var third = await greedy.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error && m.Error.CorrelationId == "s3", Short);
        Assert.Equal(ErrorCode.ResourceExhausted, third.Error.Error.Code);
        Assert.Contains("max_subscriptions", third.Error.Error.Message, StringComparison.Ordinal);
        Assert.Equal(2, _bridge.Bus.Subscriptions.Count(s => s.Owner == "greedy"));

        // max_capabilities 1.
        var provider = new RegisterAgentRequest { AgentId = "prov", Sdk = "test" };
        provider.Capabilities.Add(new CapabilityDescriptor { Name = "x.one" });
        provider.Capabilities.Add(new CapabilityDescriptor { Name = "x.two" });
        refused = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(provider, RawAgent.Options(token: Token("prov"))));
        Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
        Assert.Contains("Identity 'prov' may provide at most 1 capabilities (permissions.'*'.limits.max_capabilities); this registration has 2", refused.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(_bridge.Broker.FindProviders("x.one"));

        var metrics = await MetricsAsync();
        Assert.Matches("loom_rate_limited_total\\{kind=\"max_subscriptions\"\\} [2-9]", metrics);
        Assert.Matches("loom_rate_limited_total\\{kind=\"max_capabilities\"\\} 1", metrics);
        await AuditedAsync("max_capabilities");
        await AuditedAsync("max_subscriptions");
    }

    [Fact]
    public async Task Memory_writes_past_the_identitys_bytes_are_refused_and_freed_bytes_count_again()
    {
        await using var slow = await AgentAsync("slow");
        var value = ByteString.CopyFrom(new byte[300]); // an entry counts key + value + 192: 493 bytes

        async Task<MemoryResponse> SendAsync(string id, Action<MemoryRequest> op)
        {
            var request = new MemoryRequest { CorrelationId = id, Namespace = "slow" };
            op(request);
            await slow.SendAsync(new ClientMessage { Memory = request });
            return (await slow.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory && m.Memory.CorrelationId == id, Short)).Memory;
        }

        Assert.Null((await SendAsync("m1", r => r.Set = new MemorySet { Key = "a", Value = value })).Error);
        var over = await SendAsync("m2", r => r.Set = new MemorySet { Key = "b", Value = value });
        Assert.Equal(ErrorCode.ResourceExhausted, over.Error.Code);
        Assert.Contains("Identity 'slow' holds 493 bytes of memory and this write needs 493 more, over its limit of 600 bytes (permissions.slow.limits.max_memory_bytes", over.Error.Message, StringComparison.Ordinal);
        Assert.False((await SendAsync("m3", r => r.Get = new MemoryGet { Key = "b" })).Found); // nothing written

        // Overwriting its own entry costs only the difference; deleting gives the bytes back.
        Assert.Null((await SendAsync("m4", r => r.Set = new MemorySet { Key = "a", Value = value })).Error);
        Assert.True((await SendAsync("m5", r => r.Delete = new MemoryDelete { Key = "a" })).Found);
        Assert.Null((await SendAsync("m6", r => r.Set = new MemorySet { Key = "b", Value = value })).Error);

        Assert.Matches("loom_rate_limited_total\\{kind=\"max_memory_bytes\"\\} 1", await MetricsAsync());
        await AuditedAsync("max_memory_bytes");
    }
}
