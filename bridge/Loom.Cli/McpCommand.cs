using System.CommandLine;
using System.Runtime.InteropServices;
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
        var url = new Option<string>("--url") { Description = "The bridge's gRPC address.", DefaultValueFactory = _ => "http://127.0.0.1:7070" };
        var httpUrl = new Option<string>("--http-url") { Description = "The bridge's HTTP address (for GET /v1/capabilities).", DefaultValueFactory = _ => "http://127.0.0.1:7071" };
        var include = new Option<string[]>("--include") { Description = "Capability name patterns to expose ('*' any run, '?' one character); repeatable. Default: all.", AllowMultipleArgumentsPerToken = true };
        var exclude = new Option<string[]>("--exclude") { Description = "Capability name patterns not to expose; repeatable.", AllowMultipleArgumentsPerToken = true };
        var timeout = new Option<int>("--timeout-ms") { Description = "Deadline of each tool call, in milliseconds.", DefaultValueFactory = _ => 60_000 };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Trace, Debug, Information, Warning, Error (to stderr).", DefaultValueFactory = _ => LogLevel.Warning };
        var command = new Command("mcp", "Serve a running bridge's capabilities to an MCP client over stdio (e.g. as a client's 'command: loom mcp').")
        {
            url, httpUrl, include, exclude, timeout, logLevel,
        };
        foreach (var address in new[] { url, httpUrl })
        {
            address.Validators.Add(r =>
            {
                if (!Uri.TryCreate(r.GetValueOrDefault<string>(), UriKind.Absolute, out var parsed) || (parsed.Scheme != Uri.UriSchemeHttp && parsed.Scheme != Uri.UriSchemeHttps))
                {
                    r.AddError($"{r.Option.Name} must be an absolute http(s) URL such as http://127.0.0.1:7070, not '{r.GetValueOrDefault<string>()}'.");
                }
            });
        }

        timeout.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 600_000)
            {
                r.AddError("--timeout-ms must be between 1 and 600000.");
            }
        });

        command.SetAction(async (parse, cancellationToken) =>
        {
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
                await McpStdioServer.RunAsync(new Uri(parse.GetValue(url)!), new Uri(parse.GetValue(httpUrl)!), options, stdin, stdout, loggerFactory, cancellationToken: stop.Token);
                return 0;
            }
            catch (LoomException ex) when (ex.Code == Loom.Protocol.V1.ErrorCode.Unavailable)
            {
                await Console.Error.WriteLineAsync($"loom mcp: cannot reach the bridge at {parse.GetValue(url)}: {ex.Message} (is 'loom up' running?)");
                return 3;
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
