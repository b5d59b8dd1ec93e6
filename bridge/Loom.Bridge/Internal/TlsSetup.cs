using System.Net.Security;
using System.Security.Claims;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Certificate;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.AspNetCore.Hosting;

namespace Loom.Bridge.Internal;

/// <summary>
/// TLS on the bridge's listeners from PEM files (<see cref="BridgeOptions.TlsCertificateFile"/>,
/// <see cref="BridgeOptions.TlsKeyFile"/>, <see cref="BridgeOptions.TlsClientCaFile"/>), loaded once at start.
/// </summary>
internal sealed class TlsSetup
{
    private readonly X509Certificate2 _server;
    private readonly X509Certificate2Collection _chain;
    private readonly X509Certificate2Collection? _clientRoots;

    private TlsSetup(X509Certificate2 server, X509Certificate2Collection chain, X509Certificate2Collection? clientRoots)
    {
        _server = server;
        _chain = chain;
        _clientRoots = clientRoots;
    }

    /// <summary>True when client certificates are checked against a CA (mutual TLS).</summary>
    public bool MutualTls => _clientRoots is not null;

    /// <summary>
    /// Registers ASP.NET Core's certificate authentication handler (Microsoft.AspNetCore.Authentication.Certificate)
    /// for mutual TLS: it checks the client certificate against the configured client CAs (not the system's),
    /// its client-authentication usage and validity period, and makes the principal whose name is the
    /// certificate's identity (<see cref="IdentityOf"/>). Results are cached per certificate.
    /// </summary>
    public void AddCertificateAuthentication(IServiceCollection services)
    {
        var roots = _clientRoots ?? throw new InvalidOperationException("Certificate authentication needs a client CA (tls_client_ca).");
        services.AddAuthentication().AddCertificate(o =>
        {
            o.AllowedCertificateTypes = CertificateTypes.Chained;
            o.ChainTrustValidationMode = X509ChainTrustMode.CustomRootTrust;
            o.CustomTrustStore = roots;
            o.RevocationMode = X509RevocationMode.NoCheck;
            o.ValidateCertificateUse = true;
            o.ValidateValidityPeriod = true;
            o.Events = new CertificateAuthenticationEvents
            {
                OnCertificateValidated = context =>
                {
                    if (IdentityOf(context.ClientCertificate) is not { } name)
                    {
                        context.Fail("The client certificate names no identity: give it a DNS subject alternative name or a subject CN.");
                        return Task.CompletedTask;
                    }

                    context.Principal = new ClaimsPrincipal(new ClaimsIdentity([new Claim(ClaimTypes.Name, name, ClaimValueTypes.String, context.Options.ClaimsIssuer)], context.Scheme.Name, ClaimTypes.Name, ClaimTypes.Role));
                    context.Success();
                    return Task.CompletedTask;
                },
            };
        }).AddCertificateCache();
    }

    /// <summary>
    /// The identity of <paramref name="http"/>'s client certificate as the certificate handler
    /// authenticated it; null without a certificate (or without mutual TLS).
    /// </summary>
    /// <exception cref="InvalidOperationException">The certificate was presented and refused (the message says why).</exception>
    public static async Task<string?> AuthenticateCertificateAsync(HttpContext http)
    {
        if (http.Connection.ClientCertificate is null)
        {
            return null;
        }

        var result = await http.AuthenticateAsync(CertificateAuthenticationDefaults.AuthenticationScheme).ConfigureAwait(false);
        if (result.Succeeded)
        {
            return result.Principal?.Identity?.Name;
        }

        return result.Failure is { } failure
            ? throw new InvalidOperationException($"The client certificate was refused: {failure.Message}", failure)
            : null;
    }

    /// <summary>Loads the files of <paramref name="options"/>; null when TLS is off.</summary>
    /// <exception cref="InvalidOperationException">A file is not a PEM certificate or key, or the key does not match the certificate; the message names the file.</exception>
    public static TlsSetup? From(BridgeOptions options)
    {
        if (options.TlsCertificateFile is not { } certFile || options.TlsKeyFile is not { } keyFile)
        {
            return null;
        }

        X509Certificate2 server;
        var chain = new X509Certificate2Collection();
        try
        {
            server = X509Certificate2.CreateFromPemFile(certFile, keyFile);
            chain.ImportFromPemFile(certFile);
        }
        catch (Exception ex) when (ex is System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new InvalidOperationException($"Cannot load the TLS certificate '{certFile}' with the key '{keyFile}' (tls_cert, tls_key): {ex.Message} Both must be PEM files and the key must be the certificate's.", ex);
        }

        X509Certificate2Collection? roots = null;
        if (options.TlsClientCaFile is { } caFile)
        {
            roots = new X509Certificate2Collection();
            try
            {
                roots.ImportFromPemFile(caFile);
            }
            catch (System.Security.Cryptography.CryptographicException ex)
            {
                throw new InvalidOperationException($"Cannot read the client CA bundle '{caFile}' (tls_client_ca): {ex.Message}", ex);
            }

            if (roots.Count == 0)
            {
                throw new InvalidOperationException($"The client CA bundle '{caFile}' (tls_client_ca) holds no PEM certificate.");
            }
        }

        return new TlsSetup(server, chain, roots);
    }

    /// <summary>
    /// Serves TLS on <paramref name="listen"/>. With a client CA, <paramref name="requireClientCertificate"/>
    /// decides whether a connection without a valid client certificate is refused (the gRPC port) or
    /// only asked for one (the HTTP port, so health probes keep working).
    /// </summary>
    public void Apply(ListenOptions listen, bool requireClientCertificate)
    {
        var https = new HttpsConnectionAdapterOptions
        {
            ServerCertificate = _server,
            ServerCertificateChain = _chain.Count > 1 ? new X509Certificate2Collection(_chain.Skip(1).ToArray()) : null,
            SslProtocols = System.Security.Authentication.SslProtocols.Tls12 | System.Security.Authentication.SslProtocols.Tls13,
            CheckCertificateRevocation = false,
            ClientCertificateMode = _clientRoots is null ? ClientCertificateMode.NoCertificate
                : requireClientCertificate ? ClientCertificateMode.RequireCertificate
                : ClientCertificateMode.AllowCertificate,
        };
        if (_clientRoots is not null)
        {
            https.ClientCertificateValidation = ValidateClient;
        }

        listen.UseHttps(https);
    }

    /// <summary>A client certificate is valid when it chains to one of the configured client CAs (not the system's) and is meant for client authentication.</summary>
    private bool ValidateClient(X509Certificate2 certificate, X509Chain? unused, SslPolicyErrors errors)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_clientRoots!);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(new System.Security.Cryptography.Oid("1.3.6.1.5.5.7.3.2")); // client authentication
        if (chain.Build(certificate))
        {
            return true;
        }

        Rejected?.Invoke(certificate, string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct()));
        return false;
    }

    /// <summary>Called with a client certificate the handshake refuses, and why (for the audit log).</summary>
    public Action<X509Certificate2, string>? Rejected { get; set; }

    /// <summary>
    /// The identity a client certificate names (the certificate handler's principal name): its first
    /// DNS subject alternative name when it has one, else its subject's common name (CN); null when it
    /// names neither.
    /// </summary>
    public static string? IdentityOf(X509Certificate2? certificate)
    {
        if (certificate is null)
        {
            return null;
        }

        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509SubjectAlternativeNameExtension san)
            {
                foreach (var name in san.EnumerateDnsNames())
                {
                    return name;
                }
            }
        }

        var cn = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        return string.IsNullOrEmpty(cn) ? null : cn;
    }
}
