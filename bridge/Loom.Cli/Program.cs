using System.CommandLine;
using System.Runtime.InteropServices;
using Loom.Bridge;
using Microsoft.Extensions.Logging;

namespace Loom.Cli;

internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        var root = new RootCommand("Loom: an event-driven runtime for multi-agent systems.");
        root.Subcommands.Add(UpCommand());
        root.Subcommands.Add(Commands.RunCommand.Create(dev: false));
        root.Subcommands.Add(Commands.RunCommand.Create(dev: true));
        root.Subcommands.Add(Commands.ListCommand.Create());
        root.Subcommands.Add(Commands.LogsCommand.Create());
        root.Subcommands.Add(Commands.NewCommand.Create());
        root.Subcommands.Add(Commands.BenchCommand.Create());
        root.Subcommands.Add(McpCommand.Create());
        root.Subcommands.Add(Commands.CertsCommand.Create());
        root.Subcommands.Add(Commands.TokenCommand.Create());
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"loom: {error.Message} (see 'loom --help')");
            }

            return 2;
        }

        return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    private static Command UpCommand()
    {
        var host = new Option<string>("--host") { Description = "Address to bind (127.0.0.1, 0.0.0.0, ::1).", DefaultValueFactory = _ => "127.0.0.1" };
        var grpcPort = new Option<int>("--grpc-port") { Description = "gRPC (HTTP/2) port; 0 picks a free one.", DefaultValueFactory = _ => 7070 };
        var httpPort = new Option<int>("--http-port") { Description = "HTTP/1.1 port for /healthz, /metrics, /v1/agents, /mcp; 0 picks a free one.", DefaultValueFactory = _ => 7071 };
        var heartbeat = new Option<int>("--heartbeat-ms") { Description = "Heartbeat interval offered to agents, in milliseconds.", DefaultValueFactory = _ => 5000 };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Trace, Debug, Information, Warning, Error.", DefaultValueFactory = _ => LogLevel.Information };
        var topicGroups = new Option<string[]>("--metric-topic-group")
        {
            Description = "A topic pattern whose matches share one metric label (repeatable; tried in order). Default: a topic's first token, e.g. 'orders.>'.",
            AllowMultipleArgumentsPerToken = false,
        };
        var reflection = new Option<bool?>("--grpc-reflection") { Description = "Serve gRPC server reflection (true or false). Default: on when --host is a loopback address." };
        var config = new Option<string?>("--config") { Description = "A loom.yaml whose bridge settings, mcp_servers and mcp_expose to use (options given here win)." };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "Serve TLS on both ports with this certificate (PEM; see 'loom certs dev'). Needs --tls-key.", HelpName = "FILE" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "The private key (PEM) of --tls-cert.", HelpName = "FILE" };
        var tlsClientCa = new Option<string?>("--tls-client-ca") { Description = "Mutual TLS: gRPC clients must show a certificate signed by a CA in this PEM bundle; its CN/SAN is the agent's identity.", HelpName = "FILE" };
        var auth = new Option<AuthMode?>("--auth") { Description = "Tokens: off (ignored), optional (checked when sent), required (every agent needs a token or a client certificate). Default off." };
        var tokenKey = new Option<string?>("--token-key") { Description = "The key file tokens are signed with (made 0600 when missing). Default .loom/keys/token.key.", HelpName = "FILE" };
        var command = new Command("up", "Run a bridge with embedded defaults; prints 'listening grpc=... http=...' when ready.")
        {
            host, grpcPort, httpPort, heartbeat, logLevel, topicGroups, reflection, config, tlsCert, tlsKey, tlsClientCa, auth, tokenKey,
        };

        // Every limit, as --KEY (see docs/operations.md); a value given here wins over --config's.
        var limits = new List<(Internal.BridgeLimit Limit, Option<string> Option)>();
        foreach (var limit in Internal.BridgeLimits.All)
        {
            var option = new Option<string>(limit.Flag)
            {
                Description = limit.Unit == Internal.LimitUnit.Bytes ? limit.Help + " Bytes, or with KiB, MiB, GiB or TiB (e.g. 64MiB)." : limit.Help,
                HelpName = limit.Unit switch { Internal.LimitUnit.Bytes => "BYTES", Internal.LimitUnit.Milliseconds => "MS", _ => "N" },
            };
            option.Validators.Add(r =>
            {
                if (!limit.TryParse(r.GetValueOrDefault<string>(), out _, out var problem))
                {
                    r.AddError($"{limit.Flag}: {problem}.");
                }
            });
            command.Options.Add(option);
            limits.Add((limit, option));
        }

        topicGroups.Validators.Add(r =>
        {
            foreach (var pattern in r.GetValueOrDefault<string[]>() ?? [])
            {
                if (Internal.ProjectFileLoader.TopicPatternProblem(pattern) is { } problem)
                {
                    r.AddError("--metric-topic-group " + problem);
                }
            }
        });
        foreach (var port in new[] { grpcPort, httpPort })
        {
            port.Validators.Add(r =>
            {
                var value = r.GetValueOrDefault<int>();
                if (value is < 0 or > 65535)
                {
                    r.AddError($"{r.Option.Name} must be between 0 and 65535, not {value}.");
                }
            });
        }

        heartbeat.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 100 or > 60000)
            {
                r.AddError("--heartbeat-ms must be between 100 and 60000.");
            }
        });

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
                    await Console.Error.WriteLineAsync($"loom: {ex.Message}");
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
                GrpcReflection = parse.GetValue(reflection) ?? file.GrpcReflection,
                TlsCertificateFile = FullPath(parse.GetValue(tlsCert)) ?? file.TlsCertificateFile,
                TlsKeyFile = FullPath(parse.GetValue(tlsKey)) ?? file.TlsKeyFile,
                TlsClientCaFile = FullPath(parse.GetValue(tlsClientCa)) ?? file.TlsClientCaFile,
                Auth = parse.GetValue(auth) ?? file.Auth,
                TokenKeyFile = FullPath(parse.GetValue(tokenKey)) ?? file.TokenKeyFile,
            };
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
                await Console.Error.WriteLineAsync($"loom: {Internal.BridgeLimits.Describe(ex)}");
                return 2;
            }

            var level = parse.GetValue(logLevel);
            return await RunBridgeAsync(options, level);
        });
        return command;
    }

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
            await Console.Error.WriteLineAsync($"loom: could not start the bridge: {ex.Message} (is the port in use? try --grpc-port 0 --http-port 0)");
            return 1;
        }
        catch (InvalidOperationException ex)
        {
            await Console.Error.WriteLineAsync($"loom: could not start the bridge: {ex.Message}");
            return 1;
        }

        // The one line tools and tests wait for.
        Console.Out.WriteLine($"listening grpc={bridge.GrpcAddress.ToString().TrimEnd('/')} http={bridge.HttpAddress.ToString().TrimEnd('/')}");
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
