using System.CommandLine;
using Loom.Bridge;

namespace Loom.Cli.Commands;

/// <summary><c>loom certs dev</c>: a local CA with a server and a client certificate, for trying TLS and mutual TLS on one machine.</summary>
internal static class CertsCommand
{
    public static Command Create()
    {
        var dir = Internal.CliOptions.Text("--dir", "Where the PEM files go (made if missing).", "DIR", "a directory path", defaultValue: Path.Combine(".loom", "certs"));
        var client = Internal.CliOptions.Text("--client-name", "Subject CN (and DNS SAN) of the client certificate: the agent identity it carries under mutual TLS.", "NAME", "an agent id usable as a DNS name (letters, digits, '-', '.')", text => text.Length > 0 && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.') ? null : "not a DNS name", "a b", "dev-agent");
        var days = Internal.CliOptions.Int("--days", 1, 3650, 365, "Validity of the certificates, in days.", "DAYS", "days");
        var dev = new Command("dev", "Make a local CA (ca.pem), a server certificate for localhost/127.0.0.1 (server.pem, server.key) and a client certificate (client.pem, client.key); keys are 0600. For development only.")
        {
            dir, client, days,
        };
        dev.SetAction(async (parse, _) =>
        {
            var files = DevCertificates.Create(Path.GetFullPath(parse.GetValue(dir)!), parse.GetValue(client)!, TimeSpan.FromDays(parse.GetValue(days)));
            var output = Console.Out;
            await output.WriteLineAsync($"wrote {files.CaCertificate}, {files.ServerCertificate}, {files.ClientCertificate} and their keys");
            await output.WriteLineAsync($"bridge:  loom up --tls-cert {files.ServerCertificate} --tls-key {files.ServerKey} [--tls-client-ca {files.CaCertificate}]");
            await output.WriteLineAsync($"agents:  LOOM_URL=https://127.0.0.1:7070 LOOM_TLS_CA={files.CaCertificate} [LOOM_TLS_CERT={files.ClientCertificate} LOOM_TLS_KEY={files.ClientKey}]");
            return 0;
        });
        return new Command("certs", "Certificates for TLS.") { dev };
    }
}
