using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Loom.Sdk;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>A provider that numbers its invocations, so a replayed result is told apart from a new call.</summary>
public sealed class CountingAgent : Agent
{
    private int _calls;

    public int Calls => Volatile.Read(ref _calls);

    [Capability("count.next")]
    public CountOutput Next(CountInput input) => new(Interlocked.Increment(ref _calls), input.Order);
}

public sealed record CountInput(string Order);

public sealed record CountOutput(int Number, string Order);

/// <summary>
/// kill -9 of a real `loom up` after calls made with idempotency keys; a restart on the same data
/// directory: the same calls get the same results and the provider is not invoked again.
/// </summary>
public sealed class IdempotencyCrashTests : IDisposable
{
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(60);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loom-idem-crash-" + Guid.NewGuid().ToString("N"));

    public IdempotencyCrashTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // A file still held by a process being reaped; the temp directory is cleaned later.
        }
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    private CliProcess Up(int grpc, int http) => CliProcess.Start(
        _dir,
        null,
        "up",
        "--data-dir",
        Path.Combine(_dir, "data"),
        "--grpc-port",
        grpc.ToString(CultureInfo.InvariantCulture),
        "--http-port",
        http.ToString(CultureInfo.InvariantCulture));

    private static Task<RunningAgent> Host(Agent agent, string url, string id) => LoomAgentHost.StartAsync(agent, new Uri(url), new AgentHostOptions
    {
        AgentId = id,
        StopTimeout = TimeSpan.FromSeconds(2),
        Connection = new LoomConnectionOptions { ReconnectInitialDelay = TimeSpan.FromMilliseconds(50), ReconnectMaxDelay = TimeSpan.FromMilliseconds(500), DisposeTimeout = TimeSpan.FromSeconds(2) },
    });

    private static Task<CountOutput?[]> CallAll(RunningAgent caller, int count) => Task.WhenAll(Enumerable.Range(0, count).Select(i =>
        caller.Context.InvokeAsync<CountOutput>("count.next", new CountInput($"order-{i}"), TimeSpan.FromSeconds(30), new InvokeOptions { IdempotencyKey = $"key-{i}" })));

    [Fact]
    public async Task Kill_9_then_restart_replays_stored_results_without_invoking_the_provider()
    {
        const int Calls = 50;
        var grpc = FreePort();
        var http = FreePort();
        var up = Up(grpc, http);
        var url = (await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup)).Groups[1].Value;

        var before = new CountingAgent();
        CountOutput?[] first;
        var provider = await Host(before, url, "crash-provider");
        var caller = await Host(new ClientAgent(), url, "crash-caller");
        try
        {
            first = await CallAll(caller, Calls);
            Assert.Equal(Calls, before.Calls);
            Assert.Equal(Enumerable.Range(1, Calls).ToHashSet(), first.Select(r => r!.Number).ToHashSet());
            await up.KillHardAsync();
        }
        finally
        {
            await caller.DisposeAsync();
            await provider.DisposeAsync();
        }

        await using var again = Up(grpc, http);
        await again.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup);
        var after = new CountingAgent();
        await using var provider2 = await Host(after, url, "crash-provider");
        await using var caller2 = await Host(new ClientAgent(), url, "crash-caller");
        var replayed = await CallAll(caller2, Calls);
        Assert.Equal(first, replayed);
        Assert.Equal(0, after.Calls);

        var fresh = await caller2.Context.InvokeAsync<CountOutput>("count.next", new CountInput("new"), TimeSpan.FromSeconds(30), new InvokeOptions { IdempotencyKey = "key-new" });
        Assert.Equal(new CountOutput(1, "new"), fresh);
        Assert.Equal(1, after.Calls);
    }
}

/// <summary>An agent with no handlers: used for its context.</summary>
public sealed class ClientAgent : Agent
{
}
