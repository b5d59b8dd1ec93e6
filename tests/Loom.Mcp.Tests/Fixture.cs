using System.Diagnostics;
using System.Text;
using Loom.Bridge;
using Loom.Sdk;
using Microsoft.Extensions.Logging;

namespace Loom.Mcp.Tests;

/// <summary>Paths of the repository and of what the tests run as separate processes.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    /// <summary>Release or Debug: the configuration this test assembly was built in (the processes it starts are built alongside).</summary>
    public static string Configuration { get; } = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";

    public static string NpmDir => Path.Combine(Root, "tests", "Loom.Mcp.Tests", "npm");

    public static string Everything => Path.Combine(NpmDir, "node_modules", "@modelcontextprotocol", "server-everything", "dist", "index.js");

    public static string DynamicServer => Path.Combine(NpmDir, "dynamic-server.mjs");

    public static string TestAgentDll => Path.Combine(Root, "tests", "Loom.TestAgent", "bin", Configuration, "net10.0", "Loom.TestAgent.dll");

    public static string LoomDll => Path.Combine(Root, "bridge", "Loom.Cli", "bin", Configuration, "net10.0", "loom.dll");

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"Loom.sln not found above {AppContext.BaseDirectory}.");
    }
}

/// <summary>
/// Installs the npm MCP servers (tests/Loom.Mcp.Tests/npm, from its committed lock file) once per
/// run with <c>npm ci</c>, unless node_modules is already newer than the lock file.
/// </summary>
public sealed class NpmServers
{
    private static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(5);

    public NpmServers()
    {
        var dir = Repo.NpmDir;
        using var lockFile = AcquireLock(Path.Combine(dir, ".install.lock"));
        var hidden = Path.Combine(dir, "node_modules", ".package-lock.json");
        if (File.Exists(hidden) && File.Exists(Repo.Everything)
            && File.GetLastWriteTimeUtc(hidden) >= File.GetLastWriteTimeUtc(Path.Combine(dir, "package-lock.json")))
        {
            return;
        }

        var start = new ProcessStartInfo("npm", "ci --no-audit --no-fund --loglevel=error")
        {
            WorkingDirectory = dir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var npm = Process.Start(start) ?? throw new InvalidOperationException("npm did not start; Node.js 20+ with npm is needed.");
        var output = new StringBuilder();
        npm.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        npm.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        npm.BeginOutputReadLine();
        npm.BeginErrorReadLine();
        if (!npm.WaitForExit(InstallTimeout))
        {
            npm.Kill(entireProcessTree: true);
            throw new TimeoutException($"npm ci in {dir} took more than {InstallTimeout.TotalMinutes} min.");
        }

        if (npm.ExitCode != 0)
        {
            throw new InvalidOperationException($"npm ci in {dir} failed (exit {npm.ExitCode}):\n{output}");
        }
    }

    private static FileStream AcquireLock(string path)
    {
        var deadline = DateTime.UtcNow + InstallTimeout;
        while (true)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(200); // another test process is installing
            }
        }
    }
}

[CollectionDefinition("mcp")]
public sealed class McpCollection : ICollectionFixture<NpmServers>;

internal static class TestBridge
{
    public static async Task<LoomBridge> StartAsync(IReadOnlyList<McpServerOptions>? servers = null, McpExposeOptions? expose = null)
    {
        var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                HeartbeatInterval = TimeSpan.FromSeconds(1),
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ShutdownTimeout = TimeSpan.FromSeconds(2),
                McpServers = servers ?? [],
                Mcp = expose ?? new McpExposeOptions { RefreshInterval = TimeSpan.FromMilliseconds(200) },
            },
            Logging);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await bridge.StartAsync(timeout.Token);
        return bridge;
    }

    /// <summary>Quiet unless LOOM_TEST_LOGS is set.</summary>
    public static void Logging(ILoggingBuilder builder)
    {
        if (Environment.GetEnvironmentVariable("LOOM_TEST_LOGS") is { Length: > 0 })
        {
            builder.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.SetMinimumLevel(LogLevel.Debug);
        }
    }

    public static ILoggerFactory LoggerFactory() => Microsoft.Extensions.Logging.LoggerFactory.Create(Logging);

    /// <summary>A .NET agent (Loom.Sdk, over gRPC) to call capabilities with.</summary>
    public static async Task<RunningAgent> CallerAsync(LoomBridge bridge)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await LoomAgentHost.StartAsync(new CallerAgent(), bridge.GrpcAddress, new AgentHostOptions { AgentId = "mcp-test-caller-" + Guid.NewGuid().ToString("N")[..8] }, timeout.Token);
    }

    public static McpServerOptions Everything(string name = "everything", string? marker = null) => new()
    {
        Name = name,
        Command = "node",
        Args = marker is null ? [Repo.Everything, "stdio"] : [Repo.Everything, "stdio", marker],
        WorkingDirectory = Repo.NpmDir,
        RestartInitialDelay = TimeSpan.FromMilliseconds(200),
        RestartMaxDelay = TimeSpan.FromSeconds(2),
    };

    public static McpServerOptions Dynamic(string name = "dyn", string? marker = null) => new()
    {
        Name = name,
        Command = "node",
        Args = marker is null ? [Repo.DynamicServer] : [Repo.DynamicServer, marker],
        WorkingDirectory = Repo.NpmDir,
        RestartInitialDelay = TimeSpan.FromMilliseconds(200),
        RestartMaxDelay = TimeSpan.FromSeconds(2),
    };

    private sealed class CallerAgent : Agent
    {
        public override string Name => "mcp-test-caller";
    }
}

/// <summary>A child process (the .NET test agent, a node server), killed with its tree on dispose.</summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ChildProcess(Process process, string? readyText)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => OnLine(e.Data, readyText);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data, readyText);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Id => _process.Id;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Starts a process and waits (with a deadline) until a line containing <paramref name="readyText"/> appears.</summary>
    public static async Task<ChildProcess> StartAsync(string fileName, IEnumerable<string> args, string readyText, IReadOnlyDictionary<string, string>? env = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(fileName) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, WorkingDirectory = Repo.Root };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        var child = new ChildProcess(Process.Start(start) ?? throw new InvalidOperationException($"{fileName} did not start"), readyText);
        try
        {
            await child._ready.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            await child.DisposeAsync();
            throw new TimeoutException($"{fileName} {string.Join(' ', args)} did not print '{readyText}' in time; output:\n{child.Output}");
        }

        return child;
    }

    /// <summary>The .NET test agent serving dotnet.echo and dotnet.add.</summary>
    public static Task<ChildProcess> TestAgentAsync(Uri grpc, string agentId) =>
        StartAsync("dotnet", [Repo.TestAgentDll, "serve", "--url", grpc.ToString(), "--agent-id", agentId], "ready");

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException)
        {
            // Already gone.
        }

        _process.Dispose();
    }

    private void OnLine(string? line, string? readyText)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }

        if (readyText is not null && line.Contains(readyText, StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }
}

internal static class Processes
{
    /// <summary>Ids of the processes whose command line contains <paramref name="marker"/> (Linux /proc).</summary>
    public static IReadOnlyList<int> WithArgument(string marker)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId)
            {
                continue;
            }

            try
            {
                var cmdline = File.ReadAllText(Path.Combine(dir, "cmdline"));
                if (cmdline.Split('\0').Contains(marker, StringComparer.Ordinal))
                {
                    found.Add(pid);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // Exited meanwhile.
            }
        }

        return found;
    }
}
