using System.CommandLine;
using System.Runtime.InteropServices;
using Loom.Cli.Internal;
using Loom.Core;
using Loom.Mcp;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Loom.Cli;

/// <summary>
/// <c>loom mcp</c>: serves the capabilities of a running bridge to an MCP client over stdio
/// (stdout carries only MCP messages; logs go to stderr).
/// </summary>
internal static class McpCommand
{
    public static Command Create()
    {
        var url = CliOptions.Url("--url", "The bridge's gRPC address (default: the bridge of a 'loom run' in this directory, else $LOOM_URL, else http://127.0.0.1:7070).", "http://127.0.0.1:7070");
        var httpUrl = CliOptions.Url("--http-url", "The bridge's HTTP address, for GET /v1/capabilities (default: as --url, for the HTTP port: $LOOM_HTTP_URL, else http://127.0.0.1:7071).", "http://127.0.0.1:7071");
        var include = CliOptions.Texts("--include", "Capability name patterns to expose ('*' any run, '?' one character); repeatable. Default: all.", "PATTERN", "a capability name pattern such as 'orders.*'", severalPerOccurrence: true);
        var exclude = CliOptions.Texts("--exclude", "Capability name patterns not to expose; repeatable.", "PATTERN", "a capability name pattern such as 'orders.*'", severalPerOccurrence: true);
        var timeout = CliOptions.Int("--timeout-ms", 1, 600_000, 60_000, "Deadline of each tool call, in milliseconds.", "MS", "milliseconds");
        var logLevel = CliOptions.Enum("--log-level", LogLevel.Warning, "Trace, Debug, Information, Warning, Error (to stderr).", LogLevel.Trace, LogLevel.Debug, LogLevel.Information, LogLevel.Warning, LogLevel.Error, LogLevel.Critical);
        var tokenOption = BridgeCredentials.TokenOption();
        var command = new Command("mcp", "Serve a running bridge's capabilities to an MCP client over stdio (e.g. as a client's 'command: loom mcp'). With auth on, give a token (--token or LOOM_TOKEN): its identity is the agent id and must be allowed to call the capabilities and read /v1 (--read-only).")
        {
            url, httpUrl, include, exclude, timeout, logLevel, tokenOption,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            string grpcAddress, httpAddress, grpcSource;
            try
            {
                grpcAddress = BridgeLocator.Resolve(parse.GetValue(url), "LOOM_URL", http: false, "http://127.0.0.1:7070", out grpcSource);
                httpAddress = BridgeLocator.Resolve(parse.GetValue(httpUrl), "LOOM_HTTP_URL", http: true, "http://127.0.0.1:7071", out _, useRecord: parse.GetValue(url) is null);
            }
            catch (AmbiguousRunException ex)
            {
                await Console.Error.WriteLineAsync($"loom mcp: {ex.Message}");
                return 2;
            }

            var options = new McpExposeOptions
            {
                Include = parse.GetValue(include) is { Length: > 0 } inc ? inc : ["*"],
                Exclude = parse.GetValue(exclude) ?? [],
                CallTimeout = TimeSpan.FromMilliseconds(parse.GetValue(timeout)),
            };
            var level = parse.GetValue(logLevel);
            using var loggerFactory = LoggerFactory.Create(logging =>
            {
                logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
                logging.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
                logging.SetMinimumLevel(level);
            });
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            try
            {
                await using var stdin = Console.OpenStandardInput();
                await using var stdout = Console.OpenStandardOutput();
                var token = BridgeCredentials.Token(parse.GetValue(tokenOption));
                using var http = BridgeCredentials.Http(token, TimeSpan.FromSeconds(10));
                await McpStdioServer.RunAsync(new Uri(grpcAddress), new Uri(httpAddress), options, stdin, stdout, loggerFactory, token: token, agentId: token is null ? null : BridgeCredentials.SubjectOf(token), http: http, cancellationToken: stop.Token);
                return 0;
            }
            catch (LoomException ex) when (ex.Code == Loom.Protocol.V1.ErrorCode.Unauthenticated)
            {
                await Console.Error.WriteLineAsync($"loom mcp: the bridge at {grpcAddress} refused the credential: {ex.Message}");
                return 1;
            }
            catch (LoomException ex) when (ex.Code == Loom.Protocol.V1.ErrorCode.Unavailable)
            {
                await Console.Error.WriteLineAsync($"loom mcp: cannot reach the bridge at {grpcAddress} ({grpcSource}): {ex.Message} (is 'loom up' running?)");
                return 1;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return 0;
            }

            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.Cancel();
            }
        });
        return command;
    }
}
