using System.CommandLine;
using Loom.Bridge;

namespace Loom.Cli.Commands;

/// <summary><c>loom certs dev</c>: a local CA with a server and a client certificate, for trying TLS and mutual TLS on one machine.</summary>
internal static class CertsCommand
{
    public static Command Create()
    {
        var dir = new Option<string>("--dir") { Description = "Where the PEM files go (made if missing).", DefaultValueFactory = _ => Path.Combine(".loom", "certs"), HelpName = "DIR" };
        var client = new Option<string>("--client-name") { Description = "Subject CN (and DNS SAN) of the client certificate: the agent identity it carries under mutual TLS.", DefaultValueFactory = _ => "dev-agent", HelpName = "NAME" };
        var days = new Option<int>("--days") { Description = "Validity of the certificates, in days.", DefaultValueFactory = _ => 365 };
        days.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 3650)
            {
                r.AddError("--days must be between 1 and 3650.");
            }
        });
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
