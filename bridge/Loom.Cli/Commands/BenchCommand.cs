using System.CommandLine;
using System.Diagnostics;

namespace Loom.Cli.Commands;

/// <summary>
/// <c>loom bench</c>: the end-to-end benchmarks live in tests/Loom.Bench (they reference the test
/// agents and start bridges of their own); the ./loom script builds and runs it directly, and this
/// command does the same when the CLI is started some other way, so that it shows in --help.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Benchmarks: bus, pubsub, paced, rpc, reqreply, fanout, agents, external, all (loom bench --help; figures in docs/performance.md).");
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(async (parse, cancellationToken) =>
        {
            var dll = Path.Combine(RunCommand.LoomHome(), "tests", "Loom.Bench", "bin", "Release", "net10.0", "Loom.Bench.dll");
            if (!File.Exists(dll))
            {
                await Console.Error.WriteLineAsync($"loom: the bench is not built ({dll}); run it through ./loom bench, which builds it");
                return 1;
            }

            var info = new ProcessStartInfo("dotnet") { UseShellExecute = false };
            info.ArgumentList.Add(dll);
            foreach (var token in parse.UnmatchedTokens)
            {
                info.ArgumentList.Add(token);
            }

            using var process = Process.Start(info)!;
            try
            {
                await process.WaitForExitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                return 130;
            }

            return process.ExitCode;
        });
        return command;
    }
}
