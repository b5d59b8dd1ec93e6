using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Loom.Bridge;
using Loom.Sdk;

namespace Loom.Bench;

/// <summary>
/// N agents, each with its own stream, session and heartbeats, on one bridge: the bridge's
/// resident memory (and managed heap) per agent, read from its /metrics. Each agent has its own
/// HTTP/2 connection, or with --agents-per-connection K groups of K agents share one (as agents
/// hosted in one process can, through <see cref="LoomConnectionOptions.Channel"/>).
/// Without --url the bridge runs in a child process (this program in "serve-bridge" mode), a
/// fresh one per run.
/// </summary>
internal static partial class AgentsBench
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    public static async Task<IReadOnlyList<Figure>> RunAsync(BenchOptions options, TextWriter progress)
    {
        var perAgentRss = new List<double>();
        var perAgentRssUncollected = new List<double>();
        var perAgentHeap = new List<double>();
        var connectRates = new List<double>();
        var missed = new List<double>();
        for (var run = 0; run < options.RunsOr(3); run++)
        {
            await using var bridge = options.Url is null ? await BridgeProcess.StartAsync() : null;
            var grpc = bridge?.GrpcUrl ?? options.Url!;
            var http = bridge?.HttpUrl ?? options.HttpUrl ?? throw new ArgumentException("agents with --url needs --http-url for the bridge's /metrics.");

            // A few agents first so the baseline has every code path warm.
            await using (var warm = await LoomConnection.ConnectAsync(grpc, new LoomConnectionOptions { Name = "warm" }))
            {
            }

            await Task.Delay(TimeSpan.FromSeconds(2));
            if (bridge is not null)
            {
                await bridge.CollectAsync();
            }

            var before = await ScrapeAsync(http);
            var agents = new LoomConnection[options.Agents];
            var perConnection = options.AgentsPerConnection;
            var channels = perConnection == 1 ? [] : Enumerable.Range(0, (agents.Length + perConnection - 1) / perConnection).Select(_ => Grpc.Net.Client.GrpcChannel.ForAddress(grpc, LoomConnection.CreateChannelOptions())).ToArray();
            var stopwatch = Stopwatch.StartNew();
            try
            {
                var next = -1;
                var workers = Enumerable.Range(0, 64).Select(async _ =>
                {
                    int i;
                    while ((i = Interlocked.Increment(ref next)) < agents.Length)
                    {
                        agents[i] = await LoomConnection.ConnectAsync(grpc, new LoomConnectionOptions
                        {
                            Name = "bench-agent",
                            AgentId = $"bench-agent-{run}-{i}",
                            HeartbeatInterval = TimeSpan.FromMilliseconds(options.HeartbeatMs),
                            Channel = perConnection == 1 ? null : channels[i / perConnection],
                        });
                    }
                });
                await Task.WhenAll(workers);
                var connectSeconds = stopwatch.Elapsed.TotalSeconds;
                connectRates.Add(agents.Length / connectSeconds);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"agents run {run + 1}: {agents.Length:N0} connected in {connectSeconds:N1} s"));

                // Let heartbeats run for a few intervals, then read the bridge.
                var settle = TimeSpan.FromMilliseconds(Math.Max(5000, options.HeartbeatMs * 5));
                await Task.Delay(settle);
                var afterUncollected = await ScrapeAsync(http);
                if (bridge is not null)
                {
                    await bridge.CollectAsync();
                }

                var after = await ScrapeAsync(http);
                var connected = after.Value("loom_agents_connected");
                if ((int)connected != agents.Length)
                {
                    throw new InvalidOperationException($"The bridge reports {connected} connected agents, expected {agents.Length}.");
                }

                var rss = (after.Value("process_resident_memory_bytes") - before.Value("process_resident_memory_bytes")) / agents.Length;
                var heap = (after.Value("loom_gc_heap_bytes") - before.Value("loom_gc_heap_bytes")) / agents.Length;
                var rssUncollected = (afterUncollected.Value("process_resident_memory_bytes") - before.Value("process_resident_memory_bytes")) / agents.Length;
                perAgentRssUncollected.Add(rssUncollected);
                var missedNow = after.Value("loom_heartbeats_missed_total") - before.Value("loom_heartbeats_missed_total");
                perAgentRss.Add(rss);
                perAgentHeap.Add(heap);
                missed.Add(missedNow);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"agents run {run + 1}: {rss / 1024:N1} KB resident and {heap / 1024:N1} KB live managed heap per agent ({rssUncollected / 1024:N1} KB resident before a full GC); {missedNow} heartbeats missed over {settle.TotalSeconds:N0} s"));
            }
            finally
            {
                await Task.WhenAll(agents.Where(a => a is not null).Select(a => a.DisposeAsync().AsTask()));
                foreach (var channel in channels)
                {
                    channel.Dispose();
                }
            }
        }

        return
        [
            Figure.Of("agents", $"{options.Agents:N0} connected agents, heartbeat {options.HeartbeatMs} ms, {(options.AgentsPerConnection == 1 ? "a connection each" : $"{options.AgentsPerConnection} per connection")}: bridge resident memory per agent", "KB", perAgentRss.Select(b => b / 1024).ToList(), "RSS after - before (each after a full GC when the bench started the bridge), divided by N"),
            Figure.Of("agents", "bridge live managed heap per agent (after a full GC)", "KB", perAgentHeap.Select(b => b / 1024).ToList()),
            Figure.Of("agents", "bridge resident memory per agent before that GC", "KB", perAgentRssUncollected.Select(b => b / 1024).ToList()),
            Figure.Of("agents", "connect rate (64 at a time)", "agents/s", connectRates),
            Figure.Of("agents", "heartbeats missed while settled", "count", missed),
        ];
    }

    private static async Task<Scrape> ScrapeAsync(Uri http)
    {
        var text = await Http.GetStringAsync(new Uri(http, "/metrics"));
        return new Scrape(text);
    }

    private sealed partial class Scrape(string text)
    {
        public double Value(string name)
        {
            var match = Regex.Match(text, "^" + Regex.Escape(name) + " ([^ \n]+)$", RegexOptions.Multiline);
            return match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : throw new InvalidOperationException($"/metrics has no {name}.");
        }
    }
}

/// <summary>A bridge in a child process: this program run as <c>serve-bridge</c>.</summary>
internal sealed partial class BridgeProcess : IAsyncDisposable
{
    private readonly Process _process;

    private BridgeProcess(Process process, Uri grpc, Uri http)
    {
        _process = process;
        GrpcUrl = grpc;
        HttpUrl = http;
    }

    public Uri GrpcUrl { get; }

    public Uri HttpUrl { get; }

    public int ProcessId => _process.Id;

    /// <summary>True once the bridge process has ended (the soak reports it).</summary>
    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.HasExited ? _process.ExitCode : 0;

    /// <summary>Makes the bridge process run a full compacting collection.</summary>
    public async Task CollectAsync()
    {
        await _process.StandardInput.WriteLineAsync("gc");
        await _process.StandardInput.FlushAsync();
        while (await _process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60)) is { } line && line != "gc done")
        {
        }
    }

    /// <param name="environment">Variables set for the child only (e.g. the GC mode of the process it stands for).</param>
    public static async Task<BridgeProcess> StartAsync(IReadOnlyDictionary<string, string>? environment = null)
    {
        var self = Environment.ProcessPath!;
        var start = new ProcessStartInfo(self) { RedirectStandardOutput = true, RedirectStandardInput = true, RedirectStandardError = false, UseShellExecute = false };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            start.ArgumentList.Add(typeof(BridgeProcess).Assembly.Location);
        }

        start.ArgumentList.Add("serve-bridge");
        var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start the bridge process.");
        var line = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30));
        var match = line is null ? null : ListeningLine().Match(line);
        if (match is not { Success: true })
        {
            process.Kill();
            throw new InvalidOperationException($"The bridge process said '{line}' instead of its listening line.");
        }

        return new BridgeProcess(process, new Uri(match.Groups[1].Value), new Uri(match.Groups[2].Value));
    }

    /// <summary>The child's side: host a bridge on free ports, print the listening line, serve until stdin closes or the parent kills it.</summary>
    public static async Task<int> ServeAsync()
    {
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0 }, static _ => { });
        await bridge.StartAsync();
        Console.WriteLine($"listening grpc={bridge.GrpcAddress.ToString().TrimEnd('/')} http={bridge.HttpAddress.ToString().TrimEnd('/')}");
        await Console.Out.FlushAsync();
        var stop = new TaskCompletionSource();
        using var term = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var interrupt = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });
        // "gc" on stdin: a full compacting collection, then "gc done" (so the parent can read live memory).
        _ = Task.Run(async () =>
        {
            while (await Console.In.ReadLineAsync() is { } command)
            {
                if (command == "gc")
                {
                    GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
                    GC.WaitForPendingFinalizers();
                    GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
                    Console.WriteLine("gc done");
                }
            }

            stop.TrySetResult(); // stdin closed: the parent is gone
        });
        await stop.Task;
        return 0;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException)
        {
        }

        _process.Dispose();
    }

    [GeneratedRegex(@"^listening grpc=(\S+) http=(\S+)")]
    private static partial Regex ListeningLine();
}

/// <summary>
/// Events from a publisher in another program (Python, TypeScript, ...): the bench subscribes, runs
/// <c>--cmd</c> through /bin/sh with {url}, {topic}, {events} and {payload} replaced (also in the
/// environment as LOOM_URL, LOOM_TOPIC, LOOM_EVENTS, LOOM_PAYLOAD), and measures events/s from the
/// first to the last event received. The command publishes {events} envelopes of {payload} bytes on
/// {topic} with QoS batch and exits.
/// </summary>
internal static class ExternalBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(Uri url, BenchOptions options, TextWriter progress)
    {
        var events = options.EventsOr(1_000_000);
        await using var subscriber = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-external-sub" });
        var rates = new List<double>();
        long lost = 0;
        for (var run = 0; run < options.RunsOr(5); run++)
        {
            var topic = $"bench.external.r{run}";
            long received = 0;
            long first = 0;
            long last = 0;
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            await using var subscription = await subscriber.SubscribeAsync(topic, (_, _) =>
            {
                var now = Stopwatch.GetTimestamp();
                var n = Interlocked.Increment(ref received);
                if (n == 1)
                {
                    Volatile.Write(ref first, now);
                }

                Volatile.Write(ref last, now);
                if (n == events)
                {
                    done.TrySetResult();
                }

                return Task.CompletedTask;
            }, new Loom.Sdk.SubscribeOptions { Qos = Loom.Protocol.V1.QosClass.Batch });

            var command = options.Command!
                .Replace("{url}", url.ToString().TrimEnd('/'), StringComparison.Ordinal)
                .Replace("{topic}", topic, StringComparison.Ordinal)
                .Replace("{events}", events.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
                .Replace("{payload}", options.PayloadBytes.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);
            var start = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add(command);
            start.Environment["LOOM_URL"] = url.ToString().TrimEnd('/');
            start.Environment["LOOM_TOPIC"] = topic;
            start.Environment["LOOM_EVENTS"] = events.ToString(CultureInfo.InvariantCulture);
            start.Environment["LOOM_PAYLOAD"] = options.PayloadBytes.ToString(CultureInfo.InvariantCulture);
            using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not run: {command}");
            await process.WaitForExitAsync();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"The publisher command exited with {process.ExitCode}: {command}");
            }

            await PubSubBench.WaitQuietAsync(done.Task, () => Interlocked.Read(ref received));
            var got = Interlocked.Read(ref received);
            var seconds = Percentiles.Us(Volatile.Read(ref last) - Volatile.Read(ref first)) / 1e6;
            var rate = got <= 1 || seconds <= 0 ? 0 : (got - 1) / seconds;
            rates.Add(rate);
            lost += events - got;
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"external run {run + 1}: {rate:N0} events/s ({got:N0} of {events:N0})"));
        }

        return [Figure.Of("external", $"external publisher -> .NET subscriber, {options.PayloadBytes} B", "events/s", rates, $"{lost} lost; command: {options.Command}")];
    }
}
