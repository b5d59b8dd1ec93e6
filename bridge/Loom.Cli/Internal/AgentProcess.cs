using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Loom.Cli.Internal;

/// <summary>
/// One agent's operating-system process: started in its own process group (through
/// <c>setsid</c>) so that stopping it reaches everything its command spawned; stdout and stderr
/// read line by line into a callback. Stop sends SIGTERM to the group, then SIGKILL after a bound.
/// </summary>
internal sealed partial class AgentProcess : IAsyncDisposable
{
    private const int SigTerm = 15;
    private const int SigKill = 9;

    private readonly Process _process;
    private readonly Task _stdout;
    private readonly Task _stderr;

    private AgentProcess(Process process, Action<string, bool> onLine)
    {
        _process = process;
        _stdout = PumpAsync(process.StandardOutput, line => onLine(line, false));
        _stderr = PumpAsync(process.StandardError, line => onLine(line, true));
        Exited = WaitForExitAsync();
    }

    public int Id => _process.Id;

    /// <summary>Completes with the exit code once the process has exited and its output is drained.</summary>
    public Task<int> Exited { get; }

    /// <summary>Starts <paramref name="command"/> with /bin/sh in <paramref name="workingDirectory"/>.</summary>
    /// <exception cref="InvalidOperationException">The process could not be started.</exception>
    public static AgentProcess Start(string command, string workingDirectory, IReadOnlyDictionary<string, string> environment, Action<string, bool> onLine)
    {
        var info = new ProcessStartInfo
        {
            FileName = File.Exists("/usr/bin/setsid") ? "/usr/bin/setsid" : "/bin/sh",
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (info.FileName.EndsWith("setsid", StringComparison.Ordinal))
        {
            info.ArgumentList.Add("/bin/sh");
        }

        info.ArgumentList.Add("-c");
        info.ArgumentList.Add(command);
        foreach (var (key, value) in environment)
        {
            info.Environment[key] = value;
        }

        try
        {
            // stdin is a pipe that stays open and silent: agents get no terminal input, and those
            // that stop when their stdin closes (a common parent-death signal) keep running.
            var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start '{command}'");
            return new AgentProcess(process, onLine);
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException($"could not start '{command}' in {workingDirectory}: {ex.Message}", ex);
        }
    }

    /// <summary>SIGTERM to the process group; SIGKILL after <paramref name="grace"/>. Returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan grace)
    {
        if (!_process.HasExited)
        {
            Signal(SigTerm);
            using var bound = new CancellationTokenSource(grace);
            try
            {
                await _process.WaitForExitAsync(bound.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                Signal(SigKill);
            }
        }

        using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        try
        {
            return await Exited.WaitAsync(drain.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // A grandchild kept the pipes open past the group kill: report what we know.
            return _process.HasExited ? _process.ExitCode : -1;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        _process.StandardInput.Dispose();
        _process.Dispose();
    }

    private void Signal(int signal)
    {
        // Negative pid: the whole process group that setsid created (the pid is its id).
        if (Kill(-_process.Id, signal) != 0)
        {
            _ = Kill(_process.Id, signal);
        }
    }

    private async Task<int> WaitForExitAsync()
    {
        await _process.WaitForExitAsync().ConfigureAwait(false);
        using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            await Task.WhenAll(_stdout, _stderr).WaitAsync(drain.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Output still held open by a grandchild; the exit code is what matters.
        }

        return _process.ExitCode;
    }

    private static async Task PumpAsync(StreamReader reader, Action<string> onLine)
    {
        while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            onLine(line);
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
