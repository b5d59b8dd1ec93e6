using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Loom.Bridge;

/// <summary>The files <see cref="DevCertificates.Create"/> wrote.</summary>
/// <param name="CaCertificate">The local CA's certificate (PEM): what clients trust (LOOM_TLS_CA) and the bridge checks client certificates against (--tls-client-ca).</param>
/// <param name="CaKey">The CA's private key (PEM, 0600).</param>
/// <param name="ServerCertificate">The server's certificate for localhost and 127.0.0.1 (--tls-cert).</param>
/// <param name="ServerKey">The server's key (--tls-key; 0600).</param>
/// <param name="ClientCertificate">A client certificate whose subject CN is the agent name given (LOOM_TLS_CERT).</param>
/// <param name="ClientKey">The client's key (LOOM_TLS_KEY; 0600).</param>
public sealed record DevCertificateFiles(string CaCertificate, string CaKey, string ServerCertificate, string ServerKey, string ClientCertificate, string ClientKey);

/// <summary>
/// A local certificate authority and certificates signed by it, for trying TLS and mutual TLS on one
/// machine (<c>loom certs dev</c>). Not for production: the CA's key lies next to the certificates.
/// </summary>
public static class DevCertificates
{
    /// <summary>
    /// Writes ca.pem/ca.key, server.pem/server.key (for localhost, 127.0.0.1 and ::1) and client.pem/client.key
    /// (subject CN <paramref name="clientName"/>) into <paramref name="directory"/>, made if missing.
    /// Keys are ECDSA P-256 in PKCS#8 PEM, readable by the owner only (0600). Existing files are overwritten.
    /// </summary>
    public static DevCertificateFiles Create(string directory, string clientName = "dev-agent", TimeSpan? validity = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentException.ThrowIfNullOrWhiteSpace(clientName);
        Directory.CreateDirectory(directory);
        var notBefore = DateTimeOffset.UtcNow.AddMinutes(-5);
        var notAfter = DateTimeOffset.UtcNow + (validity ?? TimeSpan.FromDays(365));

        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=Loom dev CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var ca = caRequest.CreateSelfSigned(notBefore, notAfter.AddDays(1));

        var server = new SubjectAlternativeNameBuilder();
        server.AddDnsName("localhost");
        server.AddIpAddress(IPAddress.Loopback);
        server.AddIpAddress(IPAddress.IPv6Loopback);
        var client = new SubjectAlternativeNameBuilder();
        client.AddDnsName(clientName);

        var files = new DevCertificateFiles(
            Path.Combine(directory, "ca.pem"), Path.Combine(directory, "ca.key"),
            Path.Combine(directory, "server.pem"), Path.Combine(directory, "server.key"),
            Path.Combine(directory, "client.pem"), Path.Combine(directory, "client.key"));
        WritePublic(files.CaCertificate, ca.ExportCertificatePem());
        WriteSecret(files.CaKey, caKey.ExportPkcs8PrivateKeyPem());
        Issue(ca, "CN=localhost", server.Build(), "1.3.6.1.5.5.7.3.1", notBefore, notAfter, files.ServerCertificate, files.ServerKey);
        Issue(ca, $"CN={clientName}", client.Build(), "1.3.6.1.5.5.7.3.2", notBefore, notAfter, files.ClientCertificate, files.ClientKey);
        return files;
    }

    private static void Issue(X509Certificate2 ca, string subject, X509Extension alternativeNames, string usage, DateTimeOffset notBefore, DateTimeOffset notAfter, string certFile, string keyFile)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyAgreement, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(usage)], false));
        request.CertificateExtensions.Add(alternativeNames);
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        using var certificate = request.Create(ca, notBefore, notAfter, serial);
        WritePublic(certFile, certificate.ExportCertificatePem());
        WriteSecret(keyFile, key.ExportPkcs8PrivateKeyPem());
    }

    private static void WritePublic(string path, string pem) => File.WriteAllText(path, pem + "\n");

    /// <summary>Writes a key readable by its owner only: the file is made 0600 before the key goes in.</summary>
    internal static void WriteSecret(string path, string text, bool overwrite = true)
    {
        if (overwrite)
        {
            File.Delete(path);
        }

        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        using var stream = new FileStream(path, options);
        using var writer = new StreamWriter(stream);
        writer.Write(text);
        writer.Write('\n');
    }
}
