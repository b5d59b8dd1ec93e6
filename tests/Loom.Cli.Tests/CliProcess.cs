using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;

[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]

namespace Loom.Cli.Tests;

/// <summary>The loom CLI run as a process (the dll the solution build produced), its output collected line by line.</summary>
internal sealed class CliProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();

    private CliProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) _lines.Enqueue("[stderr] " + e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public static string RepoRoot { get; } = FindRepoRoot();

    public static string LoomDll => Path.Combine(RepoRoot, "bridge", "Loom.Cli", "bin", "Release", "net10.0", "loom.dll");

    public string Output => string.Join('\n', _lines);

    public bool HasExited => _process.HasExited;

    public static CliProcess Start(string workingDirectory, IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(LoomDll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["LOOM_HOME"] = RepoRoot;
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        return new CliProcess(Process.Start(info)!);
    }

    /// <summary>Runs to completion; returns the exit code and the output.</summary>
    public static async Task<(int Code, string Output)> RunAsync(string workingDirectory, TimeSpan timeout, IReadOnlyDictionary<string, string>? env, params string[] args)
    {
        await using var cli = Start(workingDirectory, env, args);
        var code = await cli.WaitForExitAsync(timeout);
        return (code, cli.Output);
    }

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"loom did not exit within {timeout.TotalSeconds:0} s. Output:\n{Output}");
        }

        _process.WaitForExit(); // flushes the asynchronous output readers
        return _process.ExitCode;
    }

    /// <summary>Polls the output until a line matches; returns the match.</summary>
    public async Task<Match> WaitForLineAsync(string pattern, TimeSpan timeout)
    {
        var regex = new Regex(pattern);
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            foreach (var line in _lines)
            {
                var match = regex.Match(line);
                if (match.Success)
                {
                    return match;
                }
            }

            if (deadline.Elapsed > timeout || _process.HasExited)
            {
                // One last look: the line may have arrived with the exit.
                var last = _lines.Select(l => regex.Match(l)).FirstOrDefault(m => m.Success);
                return last ?? throw new TimeoutException($"No line matched /{pattern}/ within {timeout.TotalSeconds:0} s{(_process.HasExited ? $" (loom exited with {_process.ExitCode})" : "")}. Output:\n{Output}");
            }

            await Task.Delay(50);
        }
    }

    /// <summary>kill -9: no shutdown code runs (crash tests).</summary>
    public async Task KillHardAsync()
    {
        if (!_process.HasExited)
        {
            using var kill = Process.Start("kill", ["-KILL", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            await kill.WaitForExitAsync();
        }

        await _process.WaitForExitAsync();
    }

    /// <summary>Ctrl+C, as a user would.</summary>
    public void Interrupt()
    {
        if (!_process.HasExited)
        {
            using var kill = Process.Start("kill", ["-INT", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Interrupt();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _process.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
            }
        }

        _process.Dispose();
    }

    private static string FindRepoRoot() =>
        Commands.RunCommand.FindRepoRoot(AppContext.BaseDirectory) ?? throw new InvalidOperationException("Loom.sln not found above " + AppContext.BaseDirectory);
}
