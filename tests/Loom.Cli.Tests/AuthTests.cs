using Grpc.Core;
using Grpc.Net.Client;
using Loom.Bridge;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>Tokens on a real `loom up --auth ...`, with the official .NET client over real sockets.</summary>
public sealed class AuthTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-auth-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(60);

    private string Key => Path.Combine(_temp, "keys", "token.key");

    private string Token(string agent, TimeSpan? lifetime = null, DateTimeOffset? now = null, string? key = null) =>
        BridgeTokens.Create(key ?? Key, agent, ["orders.>"], ["orders.>"], lifetime ?? TimeSpan.FromHours(1), now: now);

    private static Loom.Protocol.V1.Bridge.BridgeClient Client(GrpcChannel channel) => new(channel);

    private static Metadata Bearer(string token) => new() { { "authorization", "Bearer " + token } };

    private static RegisterAgentRequest Registration(string agentId) => new() { AgentId = agentId, Name = agentId, Sdk = "test", HeartbeatIntervalMs = 60_000 };

    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(30);

    [Fact]
    public async Task Required_auth_refuses_missing_expired_and_forged_tokens_and_binds_the_agent_id_to_the_token()
    {
        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0", "--auth", "required", "--token-key", Key);
        var url = (await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup)).Groups[1].Value;
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Key));
        }

        using var channel = GrpcChannel.ForAddress(url);
        var client = Client(channel);

        // No token: UNAUTHENTICATED, saying what to set.
        var missing = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("alice"), deadline: Deadline));
        Assert.Equal(StatusCode.Unauthenticated, missing.StatusCode);
        Assert.Equal("UNAUTHENTICATED", missing.Trailers.GetValue("loom-error-code")); // its own code, not SESSION_NOT_FOUND
        Assert.Contains("LOOM_TOKEN", missing.Status.Detail, StringComparison.Ordinal);

        // Expired, forged (another bridge's key) and malformed tokens: UNAUTHENTICATED, each with its reason.
        var expired = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("alice"), Bearer(Token("alice", TimeSpan.FromHours(1), DateTimeOffset.UtcNow.AddDays(-2))), Deadline));
        Assert.Equal(StatusCode.Unauthenticated, expired.StatusCode);
        Assert.Contains("expired", expired.Status.Detail, StringComparison.Ordinal);
        var forged = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("alice"), Bearer(Token("alice", key: Path.Combine(_temp, "other.key"))), Deadline));
        Assert.Equal(StatusCode.Unauthenticated, forged.StatusCode);
        Assert.Contains("signature does not match", forged.Status.Detail, StringComparison.Ordinal);
        var garbage = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("alice"), Bearer("not.a.token"), Deadline));
        Assert.Equal(StatusCode.Unauthenticated, garbage.StatusCode);

        // A valid token registers its own agent id, and no other.
        var alice = Token("alice");
        var registered = await client.RegisterAgentAsync(Registration("alice"), Bearer(alice), Deadline);
        var mismatch = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("bob"), Bearer(alice), Deadline));
        Assert.Equal(StatusCode.PermissionDenied, mismatch.StatusCode);
        Assert.Contains("may register agent id 'alice' only", mismatch.Status.Detail, StringComparison.Ordinal);

        // Another identity cannot use alice's session (its heartbeat here; the stream and calls are checked alike).
        var bob = Token("bob");
        var hijack = await Assert.ThrowsAsync<RpcException>(async () => await client.HeartbeatAsync(new HeartbeatRequest { SessionId = registered.SessionId }, Bearer(bob), Deadline));
        Assert.Equal(StatusCode.PermissionDenied, hijack.StatusCode);
        await client.HeartbeatAsync(new HeartbeatRequest { SessionId = registered.SessionId }, Bearer(alice), Deadline);

        // The SDK with the token works end to end, and the token never reaches the log.
        using var timeout = new CancellationTokenSource(Startup);
        await using (var agent = await Loom.Sdk.LoomConnection.ConnectAsync(new Uri(url), new Loom.Sdk.LoomConnectionOptions { AgentId = "carol", Token = Token("carol") }, cancellationToken: timeout.Token))
        {
            var got = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            await using var subscription = await agent.SubscribeAsync("orders.>", (e, _) => { got.TrySetResult(e.Topic); return Task.CompletedTask; }, cancellationToken: timeout.Token);
            await agent.PublishAsync(new Envelope { Topic = "orders.new" }, timeout.Token);
            Assert.Equal("orders.new", await got.Task.WaitAsync(timeout.Token));
        }

        Assert.DoesNotContain(alice, up.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(alice.Split('.')[2], up.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Optional_auth_lets_anonymous_agents_in_but_not_onto_an_identity_s_agent_id()
    {
        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0", "--auth", "optional", "--token-key", Key);
        var url = (await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup)).Groups[1].Value;
        using var channel = GrpcChannel.ForAddress(url);
        var client = Client(channel);

        await client.RegisterAgentAsync(Registration("anon"), deadline: Deadline);
        await client.RegisterAgentAsync(Registration("alice"), Bearer(Token("alice")), Deadline);
        var takeover = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("alice"), deadline: Deadline));
        Assert.Equal(StatusCode.PermissionDenied, takeover.StatusCode);
        Assert.Contains("registered by identity 'alice'", takeover.Status.Detail, StringComparison.Ordinal);

        // A token that is sent is checked even here.
        var forged = await Assert.ThrowsAsync<RpcException>(async () => await client.RegisterAgentAsync(Registration("alice"), Bearer(Token("alice", key: Path.Combine(_temp, "other.key"))), Deadline));
        Assert.Equal(StatusCode.Unauthenticated, forged.StatusCode);
    }

    [Fact]
    public async Task Token_create_prints_a_token_the_bridge_accepts()
    {
        var (code, output) = await CliProcess.RunAsync(_temp, Startup, null, "token", "create", "--agent", "dave", "--allow-publish", "a.>", "--expires", "1h", "--token-key", Key);
        Assert.True(code == 0, output);
        var token = output.Trim();
        Assert.Equal(3, token.Split('.').Length);
        (code, output) = await CliProcess.RunAsync(_temp, Startup, null, "token", "create", "--agent", "dave", "--expires", "soon");
        Assert.Equal(2, code);
        Assert.Contains("loom token create: --expires: expected a number with s, m, h or d", output, StringComparison.Ordinal);

        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0", "--auth", "required", "--token-key", Key);
        var url = (await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup)).Groups[1].Value;
        using var channel = GrpcChannel.ForAddress(url);
        var reply = await Client(channel).RegisterAgentAsync(Registration("dave"), Bearer(token), Deadline);
        Assert.Equal("dave", reply.AgentId);
    }
}
