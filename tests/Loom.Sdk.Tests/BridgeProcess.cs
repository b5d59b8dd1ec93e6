using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Loom.Sdk.Tests;

/// <summary>`loom up` in a child process (the CLI the solution build produced) on a given gRPC port; <see cref="KillAsync"/> is a kill -9.</summary>
internal sealed partial class BridgeProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Queue<string> _tail = new();

    private BridgeProcess(Process process) => _process = process;

    public Uri GrpcUrl { get; private set; } = null!;

    /// <summary>Starts <c>loom up --grpc-port PORT</c> and waits for its listening line.</summary>
    public static async Task<BridgeProcess> StartAsync(int grpcPort)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        start.ArgumentList.Add(LoomDll());
        foreach (var arg in (string[])["up", "--grpc-port", grpcPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--http-port", "0", "--log-level", "Warning"])
        {
            start.ArgumentList.Add(arg);
        }

        var listening = new TaskCompletionSource<Match>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = start };
        var bridge = new BridgeProcess(process);
        void OnLine(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is not { } line)
            {
                return;
            }

            bridge.Remember(line);
            if (ListeningLine().Match(line) is { Success: true } match)
            {
                listening.TrySetResult(match);
            }
        }

        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        if (!process.Start())
        {
            throw new InvalidOperationException("Could not start loom up.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var match = await listening.Task.WaitAsync(TimeSpan.FromSeconds(120));
            bridge.GrpcUrl = new Uri(match.Groups[1].Value);
            return bridge;
        }
        catch (TimeoutException)
        {
            await bridge.DisposeAsync();
            throw new InvalidOperationException("loom up printed no listening line within 120 s: " + bridge.Tail());
        }
    }

    /// <summary>A free TCP port on 127.0.0.1 (for a bridge that must come back on the same one).</summary>
    public static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>SIGKILL to the bridge's process tree; waits until it is gone.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>bridge/Loom.Cli/bin/CONFIGURATION/net10.0/loom.dll, in the configuration this test project was built in.</summary>
    private static string LoomDll()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
        {
            dir = dir.Parent;
        }

        if (dir is null)
        {
            throw new InvalidOperationException("No Loom.sln above " + AppContext.BaseDirectory);
        }

        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var dll = Path.Combine(dir.FullName, "bridge", "Loom.Cli", "bin", configuration, "net10.0", "loom.dll");
        return File.Exists(dll) ? dll : throw new InvalidOperationException($"{dll} is missing: build Loom.sln in {configuration} first.");
    }

    private void Remember(string line)
    {
        lock (_tail)
        {
            _tail.Enqueue(line.Length > 300 ? line[..300] : line);
            while (_tail.Count > 20)
            {
                _tail.Dequeue();
            }
        }
    }

    /// <summary>The last lines the bridge wrote (for failure messages).</summary>
    public string Tail()
    {
        lock (_tail)
        {
            return _tail.Count == 0 ? "(nothing)" : string.Join(" | ", _tail);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await KillAsync();
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
        }

        _process.Dispose();
    }

    [GeneratedRegex(@"listening grpc=(\S+) http=(\S+)")]
    private static partial Regex ListeningLine();
}
