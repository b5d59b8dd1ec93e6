using System.CommandLine;
using System.Runtime.InteropServices;
using Loom.Bridge;
using Microsoft.Extensions.Logging;

namespace Loom.Cli;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var parse = BuildRoot().Parse(args);
        if (parse.Errors.Count > 0)
        {
            // One line whatever went wrong (Internal.CliErrors): the command, the option, the form it takes.
            await Console.Error.WriteLineAsync(Internal.CliErrors.Describe(parse));
            return 2;
        }

        return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    /// <summary>Every command with every option (the option test walks this tree).</summary>
    internal static RootCommand BuildRoot()
    {
        var root = new RootCommand("Loom: an event-driven runtime for multi-agent systems.");
        root.Subcommands.Add(UpCommand());
        root.Subcommands.Add(Commands.RunCommand.Create(dev: false));
        root.Subcommands.Add(Commands.RunCommand.Create(dev: true));
        root.Subcommands.Add(Commands.ListCommand.Create());
        root.Subcommands.Add(Commands.LogsCommand.Create());
        root.Subcommands.Add(Commands.InspectCommand.Create());
        root.Subcommands.Add(Commands.NewCommand.Create());
        root.Subcommands.Add(Commands.BenchCommand.Create());
        root.Subcommands.Add(McpCommand.Create());
        root.Subcommands.Add(Commands.CertsCommand.Create());
        root.Subcommands.Add(Commands.TokenCommand.Create());
        return root;
    }

    private static Command UpCommand()
    {
        var host = Internal.CliOptions.Text("--host", "Address to bind (127.0.0.1, 0.0.0.0, ::1).", "ADDRESS", "an IP address or host name such as 127.0.0.1, 0.0.0.0 or ::1", HostProblem, "a b", "127.0.0.1");
        var grpcPort = Internal.CliOptions.Port("--grpc-port", 7070, "gRPC (HTTP/2) port; 0 picks a free one.");
        var httpPort = Internal.CliOptions.Port("--http-port", 7071, "HTTP/1.1 port for /healthz, /metrics, /v1/agents, /mcp; 0 picks a free one.");
        var heartbeat = Internal.CliOptions.Int("--heartbeat-ms", 100, 60_000, 5000, "Heartbeat interval offered to agents, in milliseconds.", "MS", "milliseconds");
        var logLevel = Internal.CliOptions.Enum("--log-level", LogLevel.Information, "Trace, Debug, Information, Warning, Error.", LogLevel.Trace, LogLevel.Debug, LogLevel.Information, LogLevel.Warning, LogLevel.Error, LogLevel.Critical);
        var topicGroups = Internal.CliOptions.Texts(
            "--metric-topic-group",
            "A topic pattern whose matches share one metric label (repeatable; tried in order). Default: a topic's first token, e.g. 'orders.>'.",
            "PATTERN",
            "a topic pattern such as orders.*.created or orders.>",
            Internal.ProjectFileLoader.TopicPatternReason,
            "a.>.b");
        var reflection = Internal.CliOptions.Boolean("--grpc-reflection", "Serve gRPC server reflection (true or false). Default: on when --host is a loopback address.");
        var config = Internal.CliOptions.Text("--config", "A loom.yaml whose bridge settings, mcp_servers and mcp_expose to use (options given here win).", "FILE", "the path of a loom.yaml");
        var tlsCert = Internal.CliOptions.Text("--tls-cert", "Serve TLS on both ports with this certificate (PEM; see 'loom certs dev'). Needs --tls-key.", "FILE", "the path of a PEM certificate file");
        var tlsKey = Internal.CliOptions.Text("--tls-key", "The private key (PEM) of --tls-cert.", "FILE", "the path of a PEM private key file");
        var tlsClientCa = Internal.CliOptions.Text("--tls-client-ca", "Mutual TLS: gRPC clients must show a certificate signed by a CA in this PEM bundle; its CN/SAN is the agent's identity.", "FILE", "the path of a PEM CA bundle");
        var auth = Internal.CliOptions.Text("--auth", "Tokens: off (ignored), optional (checked when sent), required (every agent needs a token or a client certificate). Default off.", "off|optional|required", "one of off, optional, required", text => System.Enum.TryParse<AuthMode>(text.Trim(), ignoreCase: true, out _) && !int.TryParse(text, out _) ? null : "not a mode", "loud");
        var tokenKey = Internal.CliOptions.Text("--token-key", "The key file tokens are signed with (made 0600 when missing). Default .loom/keys/token.key.", "FILE", "the path of a key file");
        var insecure = Internal.CliOptions.Flag("--insecure", "Listen on a non-loopback --host without --auth required and TLS, on purpose (anyone who reaches the ports is trusted).");
        var auditLog = Internal.CliOptions.Text("--audit-log", "Append the audit trail (refusals, credential failures, admin actions, registrations) to this JSON-lines file, or 'off'. Default with auth on: .loom/audit.log.", "FILE|off", "the path of a file, or off");
        var dataDir = Internal.CliOptions.Text("--data-dir", "Where durable streams (loom.yaml streams:) and consumer positions are kept. Default: .loom/data beside --config's loom.yaml.", "DIR", "the path of a directory");
        var metricsOpen = Internal.CliOptions.Flag("--metrics-open", "With auth on, serve /metrics without a credential (for a Prometheus that sends none); /v1/* and /mcp stay protected.");
        var noDashboard = Internal.CliOptions.Flag("--no-dashboard", "Do not serve the web dashboard (/ and its /v1/ views) nor keep its buffers of recent events; loom.yaml: bridge.dashboard: false.");
        var command = new Command("up", "Run a bridge with embedded defaults; prints 'listening grpc=... http=...' when ready.")
        {
            host, grpcPort, httpPort, heartbeat, logLevel, topicGroups, reflection, config, tlsCert, tlsKey, tlsClientCa, auth, tokenKey, metricsOpen, insecure, auditLog, dataDir, noDashboard,
        };

        // Every limit, as --KEY (see docs/operations.md); a value given here wins over --config's.
        var limits = new List<(Internal.BridgeLimit Limit, Option<string?> Option)>();
        foreach (var limit in Internal.BridgeLimits.All)
        {
            var option = Internal.CliOptions.Limit(limit);
            command.Options.Add(option);
            limits.Add((limit, option));
        }

        command.SetAction(async (parse, _) =>
        {
            var file = new BridgeOptions();
            if (parse.GetValue(config) is { } path)
            {
                try
                {
                    file = Internal.ProjectRunner.BridgeOptionsFor(Internal.ProjectFileLoader.Load(path, requireAgents: false));
                }
                catch (Exception ex) when (ex is Internal.ProjectFileException or ArgumentException)
                {
                    await Console.Error.WriteLineAsync($"loom up: {ex.Message}");
                    return 2;
                }
            }

            bool Given(Option option) => parse.GetResult(option) is { Implicit: false } || parse.GetValue(config) is null;
            var options = file with
            {
                Host = Given(host) ? parse.GetValue(host)! : file.Host,
                GrpcPort = Given(grpcPort) ? parse.GetValue(grpcPort) : file.GrpcPort,
                HttpPort = Given(httpPort) ? parse.GetValue(httpPort) : file.HttpPort,
                HeartbeatInterval = Given(heartbeat) ? TimeSpan.FromMilliseconds(parse.GetValue(heartbeat)) : file.HeartbeatInterval,
                EventBus = parse.GetValue(topicGroups) is { Length: > 0 } groups ? file.EventBus with { MetricTopicGroups = groups } : file.EventBus,
                GrpcReflection = Internal.CliOptions.BoolValue(parse.GetValue(reflection)) ?? file.GrpcReflection,
                TlsCertificateFile = FullPath(parse.GetValue(tlsCert)) ?? file.TlsCertificateFile,
                TlsKeyFile = FullPath(parse.GetValue(tlsKey)) ?? file.TlsKeyFile,
                TlsClientCaFile = FullPath(parse.GetValue(tlsClientCa)) ?? file.TlsClientCaFile,
                Auth = parse.GetValue(auth) is { } mode ? System.Enum.Parse<AuthMode>(mode.Trim(), ignoreCase: true) : file.Auth,
                TokenKeyFile = FullPath(parse.GetValue(tokenKey)) ?? file.TokenKeyFile,
                MetricsOpen = parse.GetValue(metricsOpen) || file.MetricsOpen,
                Insecure = parse.GetValue(insecure) || file.Insecure,
                DataDirectory = FullPath(parse.GetValue(dataDir)) ?? file.DataDirectory,
                Dashboard = !parse.GetValue(noDashboard) && file.Dashboard,
            };
            // The audit file: --audit-log, else loom.yaml's (see ProjectRunner), else .loom/audit.log here when auth is on.
            options = parse.GetValue(auditLog) is { } audit
                ? options with { Audit = options.Audit with { File = audit == "off" ? null : Path.GetFullPath(audit) } }
                : parse.GetValue(config) is null && options.Auth != AuthMode.Off ? options with { Audit = options.Audit with { File = Path.GetFullPath(Path.Combine(".loom", "audit.log")) } } : options;
            var given = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (var (limit, option) in limits)
            {
                if (parse.GetValue(option) is { } text && limit.TryParse(text, out var value, out var unused))
                {
                    given[limit.Key] = value;
                }
            }

            options = Internal.BridgeLimits.Apply(options, given);
            try
            {
                options.Validate();
            }
            catch (ArgumentException ex)
            {
                await Console.Error.WriteLineAsync($"loom up: {Internal.BridgeLimits.Describe(ex)}");
                return 2;
            }

            var level = parse.GetValue(logLevel);
            return await RunBridgeAsync(options, level);
        });
        return command;
    }

    private static string? HostProblem(string host) =>
        host.Length > 0 && Uri.CheckHostName(host) != UriHostNameType.Unknown ? null : "not an address";

    private static string? FullPath(string? path) => path is null ? null : Path.GetFullPath(path);

    private static async Task<int> RunBridgeAsync(BridgeOptions options, LogLevel level)
    {
        using var stop = new CancellationTokenSource();
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        await using var bridge = new LoomBridge(options, logging =>
        {
            logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            logging.SetMinimumLevel(level);
            logging.AddFilter("Microsoft", LogLevel.Warning);
        });
        try
        {
            await bridge.StartAsync(stop.Token);
        }
        catch (IOException ex)
        {
            await Console.Error.WriteLineAsync($"loom up: could not start the bridge: {ex.Message} (is the port in use? try --grpc-port 0 --http-port 0)");
            return 1;
        }
        catch (InvalidOperationException ex)
        {
            await Console.Error.WriteLineAsync($"loom: could not start the bridge: {ex.Message}");
            return 1;
        }

        // The one line tools and tests wait for.
        Console.Out.WriteLine($"listening grpc={bridge.GrpcAddress.ToString().TrimEnd('/')} http={bridge.HttpAddress.ToString().TrimEnd('/')}");
        Console.Out.WriteLine(options.Dashboard ? $"dashboard {bridge.HttpAddress}" : "dashboard off");
        Console.Out.Flush();
        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token);
        }
        catch (OperationCanceledException)
        {
            // SIGINT or SIGTERM.
        }

        await bridge.StopAsync();
        await Console.Error.WriteLineAsync("loom: bridge stopped");
        return 0;

        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
    }
}
