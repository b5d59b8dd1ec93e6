using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Core;

namespace Loom.Sdk.Internal;

/// <summary>TLS and the bearer token of <see cref="LoomConnectionOptions"/> applied to the channel a connection makes.</summary>
internal static class ChannelSecurity
{
    /// <summary>True when the connection uses TLS: an <c>https://</c> address, or a CA or client certificate given.</summary>
    public static bool UsesTls(Uri address, LoomConnectionOptions options) =>
        address.Scheme == Uri.UriSchemeHttps || options.TlsCaFile is not null || options.TlsCertificateFile is not null;

    /// <summary>The address with <c>https</c> when TLS is on (an <c>http://</c> address with a CA given).</summary>
    public static Uri Address(Uri address, LoomConnectionOptions options) =>
        UsesTls(address, options) && address.Scheme == Uri.UriSchemeHttp ? new UriBuilder(address) { Scheme = Uri.UriSchemeHttps, Port = address.Port }.Uri : address;

    /// <exception cref="InvalidParamsException">A file cannot be read, a certificate comes without its key, or a token would go in the clear to another machine.</exception>
    public static GrpcChannelOptions Apply(GrpcChannelOptions channel, Uri address, LoomConnectionOptions options)
    {
        var tls = UsesTls(address, options);
        if (tls && channel.HttpHandler is SocketsHttpHandler handler)
        {
            handler.SslOptions = Ssl(options);
        }

        if (options.Token is { } token)
        {
            if (!tls && !IsLoopback(address))
            {
                throw new InvalidParamsException($"A token is never sent in the clear to another machine: use an https:// address (and LOOM_TLS_CA) for {address}, or a loopback address.", "/Token");
            }

            var header = "Bearer " + token;
            var call = CallCredentials.FromInterceptor((_, metadata) =>
            {
                metadata.Add("authorization", header);
                return Task.CompletedTask;
            });
            channel.Credentials = ChannelCredentials.Create(tls ? ChannelCredentials.SecureSsl : ChannelCredentials.Insecure, call);
            channel.UnsafeUseInsecureChannelCallCredentials = !tls;
        }

        return channel;
    }

    private static SslClientAuthenticationOptions Ssl(LoomConnectionOptions options)
    {
        var ssl = new SslClientAuthenticationOptions();
        if (options.TlsCaFile is { } caFile)
        {
            var roots = new X509Certificate2Collection();
            try
            {
                roots.ImportFromPemFile(caFile);
            }
            catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException)
            {
                throw new InvalidParamsException($"Cannot read the CA bundle '{caFile}' (TlsCaFile, LOOM_TLS_CA): {ex.Message}", "/TlsCaFile");
            }

            if (roots.Count == 0)
            {
                throw new InvalidParamsException($"The CA bundle '{caFile}' (TlsCaFile, LOOM_TLS_CA) holds no PEM certificate.", "/TlsCaFile");
            }

            ssl.CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            ssl.CertificateChainPolicy.CustomTrustStore.AddRange(roots);
        }

        if ((options.TlsCertificateFile is null) != (options.TlsKeyFile is null))
        {
            throw new InvalidParamsException("A client certificate needs its key: give both TlsCertificateFile (LOOM_TLS_CERT) and TlsKeyFile (LOOM_TLS_KEY), or neither.", "/TlsKeyFile");
        }

        if (options.TlsCertificateFile is { } certFile && options.TlsKeyFile is { } keyFile)
        {
            try
            {
                ssl.ClientCertificates = [X509Certificate2.CreateFromPemFile(certFile, keyFile)];
            }
            catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
            {
                throw new InvalidParamsException($"Cannot load the client certificate '{certFile}' with the key '{keyFile}' (LOOM_TLS_CERT, LOOM_TLS_KEY): {ex.Message}", "/TlsCertificateFile");
            }
        }

        return ssl;
    }

    private static bool IsLoopback(Uri address) => address.IsLoopback || (IPAddress.TryParse(address.DnsSafeHost, out var ip) && IPAddress.IsLoopback(ip));

    /// <summary>A TLS handshake failure in <paramref name="ex"/>'s causes, said plainly; null when there is none.</summary>
    public static string? HandshakeFailure(Exception ex, Uri address)
    {
        for (var e = ex; e is not null; e = e.InnerException ?? (e as RpcException)?.Status.DebugException)
        {
            if (e is System.Security.Authentication.AuthenticationException auth)
            {
                return $"The TLS handshake with the bridge at {address} failed: {auth.Message} Check that LOOM_TLS_CA (TlsCaFile) is the CA that signed the bridge's certificate, that the address's host is one the certificate names, and, for mutual TLS, LOOM_TLS_CERT and LOOM_TLS_KEY.";
            }
        }

        return null;
    }
}
