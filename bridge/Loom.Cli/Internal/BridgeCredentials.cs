using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Microsoft.IdentityModel.JsonWebTokens;

namespace Loom.Cli.Internal;

/// <summary>
/// The credential CLI commands send to a secured bridge (loom list, loom logs, loom mcp): a token
/// (<c>--token</c>, else <c>LOOM_TOKEN</c>) and the CA bundle of its TLS certificate (<c>LOOM_TLS_CA</c>).
/// The token is never printed.
/// </summary>
internal static class BridgeCredentials
{
    /// <summary>The <c>--token</c> option (made with <see cref="CliOptions"/>).</summary>
    public static System.CommandLine.Option<string?> TokenOption() =>
        CliOptions.Text("--token", "A token for a bridge with auth on (from 'loom token create ... --read-only' or '--admin'). Default: $LOOM_TOKEN.", "TOKEN", "a token printed by loom token create");

    public static string? Token(string? given) =>
        given is { Length: > 0 } ? given.Trim() : Environment.GetEnvironmentVariable("LOOM_TOKEN") is { Length: > 0 } env ? env.Trim() : null;

    public static string? CaFile => Environment.GetEnvironmentVariable("LOOM_TLS_CA") is { Length: > 0 } ca ? ca : null;

    /// <summary>The identity (<c>sub</c>) a token names, read without checking it (the bridge checks it); null when it is not a JWT.</summary>
    public static string? SubjectOf(string token)
    {
        try
        {
            return new JsonWebToken(token).Subject is { Length: > 0 } subject ? subject : null;
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>An HTTP client sending the token (when any) and trusting <see cref="CaFile"/> (when set) for https.</summary>
    public static HttpClient Http(string? token, TimeSpan timeout)
    {
        var handler = new SocketsHttpHandler();
        if (CaFile is { } caFile)
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(caFile);
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                if (certificate is null || (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != SslPolicyErrors.None)
                {
                    return false;
                }

                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.AddRange(roots);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(certificate));
            };
        }

        var http = new HttpClient(handler) { Timeout = timeout };
        if (token is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return http;
    }
}
