using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Loom.Bridge;
using Loom.Protocol.V1;
using Loom.Sdk;
using Microsoft.Playwright;
using Xunit;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Loom.Dashboard.Tests;

/// <summary>
/// One real bridge (127.0.0.1, free ports) with the dashboard, one headless Debian chromium driven
/// by Playwright (no browser download: /usr/bin/chromium or LOOM_CHROMIUM), and a .NET agent
/// "calc" providing math.add, shared by the tests of the collection.
/// </summary>
public sealed class DashboardFixture : IAsyncLifetime
{
    public static readonly string[] ChromiumArgs = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];

    public LoomBridge Bridge { get; private set; } = null!;

    public IPlaywright Playwright { get; private set; } = null!;

    public IBrowser Browser { get; private set; } = null!;

    public LoomConnection Calc { get; private set; } = null!;

    public static string RepoRoot { get; } = FindRepoRoot();

    /// <summary>Screenshots and timings of the browser tests.</summary>
    public static string Artifacts { get; } = Directory.CreateDirectory(Path.Combine(RepoRoot, ".loom", "test-logs", "dashboard")).FullName;

    public string Url => Bridge.HttpAddress.ToString();

    public static string ChromiumPath => Environment.GetEnvironmentVariable("LOOM_CHROMIUM") is { Length: > 0 } p ? p : "/usr/bin/chromium";

    public async Task InitializeAsync()
    {
        Bridge = await StartBridgeAsync(new BridgeOptions { GrpcPort = 0, HttpPort = 0, HeartbeatInterval = TimeSpan.FromSeconds(1), MinHeartbeatInterval = TimeSpan.FromMilliseconds(50), ShutdownTimeout = TimeSpan.FromSeconds(2) });
        Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        Browser = await LaunchAsync(Playwright);
        Calc = await ConnectCalcAsync(Bridge.GrpcAddress, null);
    }

    public static async Task<LoomBridge> StartBridgeAsync(BridgeOptions options)
    {
        var bridge = new LoomBridge(options, logging => { });
        await bridge.StartAsync();
        return bridge;
    }

    public static async Task<IBrowser> LaunchAsync(IPlaywright playwright)
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException($"No chromium at {ChromiumPath}: install Debian's package (apt-get install chromium; tests/run-all.sh does) or set LOOM_CHROMIUM to a Chromium binary.");
        }

        return await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions { ExecutablePath = ChromiumPath, Headless = true, Args = ChromiumArgs, Timeout = 60_000 });
    }

    /// <summary>A .NET agent providing math.add ({a, b} → {sum}); with a token when the bridge requires one.</summary>
    public static async Task<LoomConnection> ConnectCalcAsync(Uri grpc, string? token)
    {
        var descriptor = new CapabilityDescriptor
        {
            Name = "math.add",
            Version = "1.0.0",
            Description = "Adds two numbers.",
            InputSchemaJson = """{"type":"object","properties":{"a":{"type":"number","description":"first"},"b":{"type":"number","description":"second"}},"required":["a","b"]}""",
            OutputSchemaJson = """{"type":"object","properties":{"sum":{"type":"number"}},"required":["sum"]}""",
        };
        var add = new LoomCapability(descriptor, (call, _) =>
        {
            var input = JsonNode.Parse(call.InputJson.Span)!;
            var sum = input["a"]!.GetValue<double>() + input["b"]!.GetValue<double>();
            return ValueTask.FromResult<ReadOnlyMemory<byte>>(Encoding.UTF8.GetBytes(new JsonObject { ["sum"] = sum }.ToJsonString()));
        });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await LoomConnection.ConnectAsync(grpc, new LoomConnectionOptions { AgentId = "calc", Name = "calc", Token = token }, [add], timeout.Token);
    }

    public async Task<IPage> NewPageAsync()
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
        var page = await context.NewPageAsync();
        page.SetDefaultTimeout(30_000);
        return page;
    }

    public static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(Artifacts, name + ".png"), FullPage = true });

    public async Task DisposeAsync()
    {
        await Calc.DisposeAsync();
        await Browser.DisposeAsync();
        Playwright.Dispose();
        await Bridge.DisposeAsync();
    }

    private static string FindRepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Loom.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>Runs the loom CLI (the dll the build produced) to completion.</summary>
    public static async Task<(int Code, string Output)> RunLoomAsync(TimeSpan timeout, IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { WorkingDirectory = RepoRoot, RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(RepoRoot, "bridge", "Loom.Cli", "bin", "Release", "net10.0", "loom.dll"));
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["LOOM_HOME"] = RepoRoot;
        info.Environment["DOTNET_NOLOGO"] = "1";
        foreach (var (k, v) in env)
        {
            info.Environment[k] = v;
        }

        using var process = Process.Start(info)!;
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine("[stderr] " + e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"loom {string.Join(' ', args)} did not exit within {timeout.TotalSeconds:0} s:\n{output}");
        }

        process.WaitForExit();
        lock (output)
        {
            return (process.ExitCode, output.ToString());
        }
    }
}

[CollectionDefinition("dashboard")]
public sealed class DashboardCollection : ICollectionFixture<DashboardFixture>;
