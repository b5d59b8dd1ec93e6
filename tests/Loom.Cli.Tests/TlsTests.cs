using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>TLS and mutual TLS on a real `loom up` with certificates from `loom certs dev`, over real sockets.</summary>
public sealed class TlsTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-tls-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(60);

    private async Task<string> CertsAsync(string name, params string[] extra)
    {
        var dir = Path.Combine(_temp, name);
        var (code, output) = await CliProcess.RunAsync(_temp, Startup, null, ["certs", "dev", "--dir", dir, .. extra]);
        Assert.True(code == 0, output);
        return dir;
    }

    /// <summary>A handler that trusts only the CA in <paramref name="caFile"/> (not the system's), optionally showing a client certificate.</summary>
    internal static SocketsHttpHandler Handler(string caFile, string? clientCert = null, string? clientKey = null)
    {
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(caFile);
        var ssl = new SslClientAuthenticationOptions
        {
            CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck },
        };
        ssl.CertificateChainPolicy.CustomTrustStore.AddRange(roots);
        if (clientCert is not null)
        {
            ssl.ClientCertificates = [X509Certificate2.CreateFromPemFile(clientCert, clientKey)];
        }

        return new SocketsHttpHandler { SslOptions = ssl, EnableMultipleHttp2Connections = true };
    }

    private static async Task<HealthCheckResponse.Types.ServingStatus> HealthAsync(string url, SocketsHttpHandler handler)
    {
        using var channel = GrpcChannel.ForAddress(url, new GrpcChannelOptions { HttpHandler = handler });
        var reply = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow.AddSeconds(20));
        return reply.Status;
    }

    [Fact]
    public async Task Certs_dev_writes_a_ca_a_server_and_a_client_certificate_with_private_keys()
    {
        var dir = await CertsAsync("certs", "--client-name", "alice");
        if (!OperatingSystem.IsWindows())
        {
            foreach (var key in new[] { "ca.key", "server.key", "client.key" })
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(dir, key)));
            }
        }

        using var server = X509Certificate2.CreateFromPemFile(Path.Combine(dir, "server.pem"), Path.Combine(dir, "server.key"));
        Assert.True(server.MatchesHostname("localhost"));
        Assert.True(server.MatchesHostname("127.0.0.1"));
        using var client = X509Certificate2.CreateFromPemFile(Path.Combine(dir, "client.pem"), Path.Combine(dir, "client.key"));
        Assert.Equal("alice", client.GetNameInfo(X509NameType.SimpleName, false));
        using var ca = X509Certificate2.CreateFromPem(File.ReadAllText(Path.Combine(dir, "ca.pem")));
        Assert.Equal(ca.Subject, client.Issuer);
        Assert.Equal(ca.Subject, server.Issuer);
    }

    [Fact]
    public async Task Up_with_tls_serves_https_on_both_ports_and_a_client_trusting_another_ca_is_refused()
    {
        var dir = await CertsAsync("certs");
        var other = await CertsAsync("other");
        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0", "--tls-cert", Path.Combine(dir, "server.pem"), "--tls-key", Path.Combine(dir, "server.key"));
        var listening = await up.WaitForLineAsync(@"listening grpc=(https://\S+) http=(https://\S+)", Startup);
        var (grpcUrl, httpUrl) = (listening.Groups[1].Value, listening.Groups[2].Value);

        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, await HealthAsync(grpcUrl, Handler(Path.Combine(dir, "ca.pem"))));
        using (var http = new HttpClient(Handler(Path.Combine(dir, "ca.pem"))) { Timeout = TimeSpan.FromSeconds(20) })
        {
            Assert.Contains("\"ok\"", await http.GetStringAsync(httpUrl + "/healthz"), StringComparison.Ordinal);
        }

        // A client that trusts a different CA does not get through: the TLS handshake fails, and says so.
        var refused = await Assert.ThrowsAsync<RpcException>(() => HealthAsync(grpcUrl, Handler(Path.Combine(other, "ca.pem"))));
        Assert.Contains(refused.StatusCode, new[] { StatusCode.Unavailable, StatusCode.Internal });
        Assert.Contains("SSL", refused.Status.DebugException?.ToString() ?? refused.Message, StringComparison.OrdinalIgnoreCase);

        // Cleartext on a TLS port is not served.
        using var plain = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => plain.GetStringAsync(httpUrl.Replace("https://", "http://", StringComparison.Ordinal) + "/healthz"));
    }

    [Fact]
    public async Task Up_with_a_client_ca_requires_a_client_certificate_on_the_grpc_port()
    {
        var dir = await CertsAsync("certs");
        var other = await CertsAsync("other");
        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0",
            "--tls-cert", Path.Combine(dir, "server.pem"), "--tls-key", Path.Combine(dir, "server.key"), "--tls-client-ca", Path.Combine(dir, "ca.pem"));
        var listening = await up.WaitForLineAsync(@"listening grpc=(https://\S+) http=(https://\S+)", Startup);
        var (grpcUrl, httpUrl) = (listening.Groups[1].Value, listening.Groups[2].Value);
        var ca = Path.Combine(dir, "ca.pem");

        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, await HealthAsync(grpcUrl, Handler(ca, Path.Combine(dir, "client.pem"), Path.Combine(dir, "client.key"))));
        await Assert.ThrowsAsync<RpcException>(() => HealthAsync(grpcUrl, Handler(ca)));
        await Assert.ThrowsAsync<RpcException>(() => HealthAsync(grpcUrl, Handler(ca, Path.Combine(other, "client.pem"), Path.Combine(other, "client.key"))));

        // The HTTP port asks for a certificate but health probes work without one.
        using var http = new HttpClient(Handler(ca)) { Timeout = TimeSpan.FromSeconds(20) };
        Assert.Contains("\"ok\"", await http.GetStringAsync(httpUrl + "/healthz"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_refuses_a_certificate_without_its_key_and_a_key_that_is_not_pem()
    {
        var dir = await CertsAsync("certs");
        var (code, output) = await CliProcess.RunAsync(_temp, Startup, null, "up", "--grpc-port", "0", "--http-port", "0", "--tls-cert", Path.Combine(dir, "server.pem"));
        Assert.Equal(2, code);
        Assert.Contains("TLS needs both a certificate and its key", output, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(_temp, "bad.key"), "not a key");
        (code, output) = await CliProcess.RunAsync(_temp, Startup, null, "up", "--grpc-port", "0", "--http-port", "0", "--tls-cert", Path.Combine(dir, "server.pem"), "--tls-key", Path.Combine(_temp, "bad.key"));
        Assert.Equal(1, code);
        Assert.Contains("Cannot load the TLS certificate", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_dotnet_sdk_connects_over_tls_and_mutual_tls_and_says_what_to_fix_with_a_wrong_ca()
    {
        var dir = await CertsAsync("certs", "--client-name", "tls-agent");
        var other = await CertsAsync("other");
        await using var up = CliProcess.Start(_temp, null, "up", "--grpc-port", "0", "--http-port", "0",
            "--tls-cert", Path.Combine(dir, "server.pem"), "--tls-key", Path.Combine(dir, "server.key"), "--tls-client-ca", Path.Combine(dir, "ca.pem"));
        var listening = await up.WaitForLineAsync(@"listening grpc=(https://\S+) http=(https://\S+)", Startup);
        var url = new Uri(listening.Groups[1].Value);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        // Under mutual TLS the certificate's name is the identity: the agent id must be it.
        var otherId = await Assert.ThrowsAsync<Loom.Core.PermissionDeniedException>(() => Loom.Sdk.LoomConnection.ConnectAsync(url, new Loom.Sdk.LoomConnectionOptions
        {
            AgentId = "someone-else",
            TlsCaFile = Path.Combine(dir, "ca.pem"),
            TlsCertificateFile = Path.Combine(dir, "client.pem"),
            TlsKeyFile = Path.Combine(dir, "client.key"),
        }, cancellationToken: timeout.Token));
        Assert.Contains("Identity 'tls-agent' may register agent id 'tls-agent' only", otherId.Message, StringComparison.Ordinal);

        var options = new Loom.Sdk.LoomConnectionOptions
        {
            AgentId = "tls-agent",
            Name = "tls-agent",
            TlsCaFile = Path.Combine(dir, "ca.pem"),
            TlsCertificateFile = Path.Combine(dir, "client.pem"),
            TlsKeyFile = Path.Combine(dir, "client.key"),
        };
        await using (var agent = await Loom.Sdk.LoomConnection.ConnectAsync(url, options, cancellationToken: timeout.Token))
        {
            var got = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            await using var subscription = await agent.SubscribeAsync("tls.>", (e, _) => { got.TrySetResult(e.Topic); return Task.CompletedTask; }, cancellationToken: timeout.Token);
            await agent.PublishAsync(new Loom.Protocol.V1.Envelope { Topic = "tls.hello" }, timeout.Token);
            Assert.Equal("tls.hello", await got.Task.WaitAsync(timeout.Token));
        }

        // The same client with the wrong CA: a LoomException that says what to check.
        var wrong = await Assert.ThrowsAnyAsync<Loom.Core.LoomException>(() => Loom.Sdk.LoomConnection.ConnectAsync(url, new Loom.Sdk.LoomConnectionOptions { AgentId = "tls-agent", TlsCaFile = Path.Combine(other, "ca.pem"), TlsCertificateFile = options.TlsCertificateFile, TlsKeyFile = options.TlsKeyFile }, cancellationToken: timeout.Token));
        Assert.Contains("TLS handshake with the bridge", wrong.Message, StringComparison.Ordinal);
        Assert.Contains("LOOM_TLS_CA", wrong.Message, StringComparison.Ordinal);
    }
}
