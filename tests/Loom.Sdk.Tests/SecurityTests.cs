using System.Text;
using Google.Protobuf;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Tests;

/// <summary>
/// The .NET SDK against a real bridge with auth on, over real sockets, with real tokens
/// (<see cref="BridgeTokens"/>, the code behind <c>loom token create</c>) and real certificates
/// (<see cref="DevCertificates"/>, behind <c>loom certs dev</c>): token auth, mutual TLS, a
/// permission denied, agent-id takeover refused, a forged sender overwritten.
/// </summary>
public sealed class SecurityTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-sdk-sec-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private string Key => Path.Combine(_temp, "keys", "token.key");

    private string Mint(string agent, string[]? publish = null, string[]? subscribe = null, string? keyFile = null) =>
        BridgeTokens.Create(keyFile ?? Key, agent, publish ?? [], subscribe ?? [], TimeSpan.FromHours(1));

    private async Task<LoomBridge> StartAsync(AuthMode auth, DevCertificateFiles? tls = null)
    {
        var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                HeartbeatInterval = TimeSpan.FromSeconds(1),
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ShutdownTimeout = TimeSpan.FromSeconds(1),
                Auth = auth,
                TokenKeyFile = Key,
                TlsCertificateFile = tls?.ServerCertificate,
                TlsKeyFile = tls?.ServerKey,
                TlsClientCaFile = tls?.CaCertificate,
            },
            TestBridge.Logging);
        await bridge.StartAsync();
        return bridge;
    }

    private static LoomConnectionOptions Options(string? agentId, string? token, string? ca = null, string? cert = null, string? key = null) => new()
    {
        AgentId = agentId,
        Token = token,
        TlsCaFile = ca,
        TlsCertificateFile = cert,
        TlsKeyFile = key,
        ConnectTimeout = TimeSpan.FromSeconds(10),
        ReconnectInitialDelay = TimeSpan.FromMilliseconds(50),
        DisposeTimeout = TimeSpan.FromSeconds(3),
        LoggerFactory = TestBridge.SdkLogs(),
    };

    [Fact]
    public async Task A_token_lets_its_agent_in_and_a_missing_or_forged_one_is_unauthenticated()
    {
        await using var bridge = await StartAsync(AuthMode.Required);
        await using (var ok = await LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("net-tok", Mint("net-tok"))))
        {
            Assert.Equal(ConnectionStatus.Connected, ok.Status);
            Assert.Equal("net-tok", ok.AgentId);
        }

        var missing = await Assert.ThrowsAsync<UnauthenticatedException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("net-tok", null)));
        Assert.Equal(ErrorCode.Unauthenticated, missing.Code);
        Assert.False(missing.Retryable);
        Assert.Contains("LOOM_TOKEN", missing.Message, StringComparison.Ordinal);

        var forged = Mint("net-tok", keyFile: Path.Combine(_temp, "other", "token.key"));
        var bad = await Assert.ThrowsAsync<UnauthenticatedException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("net-tok", forged)));
        Assert.Contains("signature does not match", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Another_identity_cannot_take_over_an_agent_id()
    {
        await using var bridge = await StartAsync(AuthMode.Optional);
        await using var alice = await LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("alice", Mint("alice")));

        // A token for mallory cannot register as alice ...
        var mismatch = await Assert.ThrowsAsync<PermissionDeniedException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("alice", Mint("mallory"))));
        Assert.Contains("may register agent id 'mallory' only", mismatch.Message, StringComparison.Ordinal);

        // ... and neither can an anonymous caller while alice's session lives.
        var anonymous = await Assert.ThrowsAsync<PermissionDeniedException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("alice", null)));
        Assert.Contains("Agent id 'alice' is registered by identity 'alice'", anonymous.Message, StringComparison.Ordinal);
        Assert.Equal(ConnectionStatus.Connected, alice.Status);
        Assert.Equal(alice.SessionId, bridge.Agents.Find("alice")?.SessionId);
    }

    [Fact]
    public async Task A_refused_subscribe_and_publish_do_nothing_and_a_forged_sender_is_overwritten()
    {
        await using var bridge = await StartAsync(AuthMode.Required);
        await using var sender = await LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("net-perm", Mint("net-perm", ["netperm.>"], ["netperm.>"])));
        await using var watcher = await LoomConnection.ConnectAsync(bridge.GrpcAddress, Options("net-watch", Mint("net-watch", [], ["netperm.>", "netother.>"])));
        var seen = new System.Collections.Concurrent.ConcurrentQueue<Envelope>();
        await watcher.SubscribeAsync("netperm.>", (e, _) => { seen.Enqueue(e); return Task.CompletedTask; });
        await watcher.SubscribeAsync("netother.>", (e, _) => { seen.Enqueue(e); return Task.CompletedTask; });

        var denied = await Assert.ThrowsAsync<PermissionDeniedException>(() => sender.SubscribeAsync("netother.>", (_, _) => Task.CompletedTask));
        Assert.Contains("Identity 'net-perm' may not subscribe to 'netother.>': no rule allows it", denied.Message, StringComparison.Ordinal);

        // Refused: counted as a publish error and not delivered.
        await sender.PublishAsync(new Envelope { Topic = "netother.x", Payload = ByteString.CopyFromUtf8("{}") });
        await Poll.UntilAsync(() => sender.Statistics.PublishErrors >= 1, Wait, "the refused publish reported");

        // Allowed, with a forged sender: delivered, stamped with the session's identity.
        await sender.PublishAsync(new Envelope { Topic = "netperm.hello", Sender = "mallory", Payload = ByteString.CopyFrom("{\"n\":1}", Encoding.UTF8) });
        await Poll.UntilAsync(() => seen.Any(e => e.Topic == "netperm.hello"), Wait, "the allowed event delivered");
        var hello = seen.Single(e => e.Topic == "netperm.hello");
        Assert.Equal("net-perm", hello.Sender);
        Assert.DoesNotContain(seen, e => e.Topic == "netother.x");
    }

    [Fact]
    public async Task Mutual_tls_takes_the_identity_from_the_client_certificate()
    {
        var certs = DevCertificates.Create(Path.Combine(_temp, "certs"), "net-tls");
        await using var bridge = await StartAsync(AuthMode.Required, certs);
        Assert.Equal("https", bridge.GrpcAddress.Scheme);
        LoomConnectionOptions Tls(string agentId, bool clientCertificate = true, string? token = null) =>
            Options(agentId, token, certs.CaCertificate, clientCertificate ? certs.ClientCertificate : null, clientCertificate ? certs.ClientKey : null);

        await using (var ok = await LoomConnection.ConnectAsync(bridge.GrpcAddress, Tls("net-tls")))
        {
            Assert.Equal(ConnectionStatus.Connected, ok.Status);
            Assert.Equal("net-tls", bridge.Agents.Find("net-tls")?.AgentId);
        }

        // The certificate names net-tls: no other agent id, and no token of another identity beside it.
        var other = await Assert.ThrowsAsync<PermissionDeniedException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Tls("someone-else")));
        Assert.Contains("may register agent id 'net-tls' only", other.Message, StringComparison.Ordinal);
        var mixed = await Assert.ThrowsAsync<UnauthenticatedException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Tls("net-tls", token: Mint("bob"))));
        Assert.Contains("the client certificate names 'net-tls'", mixed.Message, StringComparison.Ordinal);

        // No client certificate: the handshake itself is refused.
        var none = await Assert.ThrowsAsync<LoomException>(() => LoomConnection.ConnectAsync(bridge.GrpcAddress, Tls("net-tls", clientCertificate: false)));
        Assert.Equal(ErrorCode.Unavailable, none.Code);
    }
}
