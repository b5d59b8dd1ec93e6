using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using Loom.Bridge;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Bench;

/// <summary>
/// End-to-end benchmark of the .NET SDK against a real bridge: <c>pubsub</c> (one publisher
/// connection, one subscriber connection, events/s; median of several runs with min and max) and
/// <c>rpc</c> (sequential capability calls between two .NET agents; p50/p99 latency).
/// </summary>
internal static class Program
{
    private const string Usage = """
        Usage: Loom.Bench [pubsub|rpc|all] [options]
          --url URL        bridge gRPC address (default: start a bridge in this process)
          --events N       pubsub: events per run (default 1000000)
          --runs N         pubsub: measured runs (default 5)
          --payload N      pubsub: payload bytes (default 100)
          --calls N        rpc: measured calls (default 20000)
          --warmup N       rpc: warm-up calls (default 2000)
          --json           print results as JSON
        """;

    private static readonly JsonSerializerOptions JsonOutput = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static async Task<int> Main(string[] args)
    {
        BenchOptions options;
        try
        {
            options = BenchOptions.Parse(args);
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message + Environment.NewLine + Usage);
            return 2;
        }

        if (options.Help)
        {
            Console.WriteLine(Usage);
            return 0;
        }

        LoomBridge? bridge = null;
        var url = options.Url;
        if (url is null)
        {
            bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0 }, static _ => { });
            await bridge.StartAsync();
            url = bridge.GrpcAddress;
        }

        var report = new BenchReport
        {
            Bridge = bridge is null ? url.ToString() : $"in-process ({url})",
            Runtime = Environment.Version.ToString(),
            ProcessorCount = Environment.ProcessorCount,
            SpinLimit = Environment.GetEnvironmentVariable("DOTNET_ThreadPool_UnfairSemaphoreSpinLimit") ?? "(default)",
        };
        try
        {
            if (options.Scenario is "pubsub" or "all")
            {
                report.PubSub = await PubSubBench.RunAsync(url, options, options.Json ? null : Console.Out);
            }

            if (options.Scenario is "rpc" or "all")
            {
                report.Rpc = await RpcBench.RunAsync(url, options, options.Json ? null : Console.Out);
            }
        }
        finally
        {
            if (bridge is not null)
            {
                await bridge.DisposeAsync();
            }
        }

        if (options.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(report, JsonOutput));
        }
        else
        {
            report.PrintTable(Console.Out);
        }

        return 0;
    }
}

internal sealed class BenchOptions
{
    public string Scenario { get; private set; } = "all";

    public Uri? Url { get; private set; }

    public int Events { get; private set; } = 1_000_000;

    public int Runs { get; private set; } = 5;

    public int PayloadBytes { get; private set; } = 100;

    public int Calls { get; private set; } = 20_000;

    public int Warmup { get; private set; } = 2_000;

    public bool Json { get; private set; }

    public bool Help { get; private set; }

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value.");
            int Number() => int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"{arg} needs a positive integer.");
            switch (arg)
            {
                case "pubsub" or "rpc" or "all":
                    o.Scenario = arg;
                    break;
                case "--url":
                    o.Url = Uri.TryCreate(Next(), UriKind.Absolute, out var url) ? url : throw new ArgumentException("--url needs an absolute http:// address.");
                    break;
                case "--events":
                    o.Events = Number();
                    break;
                case "--runs":
                    o.Runs = Number();
                    break;
                case "--payload":
                    o.PayloadBytes = Number();
                    break;
                case "--calls":
                    o.Calls = Number();
                    break;
                case "--warmup":
                    o.Warmup = Number();
                    break;
                case "--json":
                    o.Json = true;
                    break;
                case "-h" or "--help":
                    o.Help = true;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{arg}'.");
            }
        }

        return o;
    }
}

internal sealed class BenchReport
{
    public string Bridge { get; init; } = "";

    public string Runtime { get; init; } = "";

    public int ProcessorCount { get; init; }

    public string SpinLimit { get; init; } = "";

    public PubSubResult? PubSub { get; set; }

    public RpcResult? Rpc { get; set; }

    public void PrintTable(TextWriter output)
    {
        output.WriteLine();
        output.WriteLine($"bridge: {Bridge}; .NET {Runtime}; {ProcessorCount} CPUs; DOTNET_ThreadPool_UnfairSemaphoreSpinLimit={SpinLimit}");
        output.WriteLine();
        output.WriteLine("| scenario | measure | median | min | max |");
        output.WriteLine("|---|---|---:|---:|---:|");
        if (PubSub is { } p)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| pubsub ({p.Events:N0} x {p.PayloadBytes} B, {p.Runs.Count} runs) | events/s | {p.MedianEventsPerSecond:N0} | {p.MinEventsPerSecond:N0} | {p.MaxEventsPerSecond:N0} |"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| pubsub | events lost (all runs) | {p.Runs.Sum(r => r.Lost):N0} | | |"));
        }

        if (Rpc is { } r)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| rpc ({r.Calls:N0} sequential calls) | latency µs | p50 {r.P50Us:N1} | p99 {r.P99Us:N1} | max {r.MaxUs:N1} |"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| rpc | calls/s | {r.CallsPerSecond:N0} | | |"));
        }
    }
}

internal sealed record PubSubRun(long Received, long Lost, double Seconds, double EventsPerSecond, double PublishSeconds, long FramesSent, long MessagesSent);

internal sealed record PubSubResult(int Events, int PayloadBytes, IReadOnlyList<PubSubRun> Runs, double MedianEventsPerSecond, double MinEventsPerSecond, double MaxEventsPerSecond);

internal sealed record RpcResult(int Calls, int Warmup, double P50Us, double P90Us, double P99Us, double P999Us, double MeanUs, double MaxUs, double CallsPerSecond);

internal static class PubSubBench
{
    public static async Task<PubSubResult> RunAsync(Uri url, BenchOptions options, TextWriter? progress)
    {
        await using var subscriber = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-sub" });
        await using var publisher = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-pub" });
        var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);

        // Warm-up runs, not reported: tiered JIT and dynamic PGO need a few hundred thousand events
        // before the hot paths reach their final code (the first cold run is about 2.5x slower).
        for (var i = 0; i < 3; i++)
        {
            await RunOnceAsync(subscriber, publisher, payload, Math.Min(options.Events, 500_000), $"bench.pubsub.warmup{i}");
        }
        var runs = new List<PubSubRun>();
        for (var i = 0; i < options.Runs; i++)
        {
            var run = await RunOnceAsync(subscriber, publisher, payload, options.Events, $"bench.pubsub.r{i}");
            runs.Add(run);
            progress?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"pubsub run {i + 1}/{options.Runs}: {run.EventsPerSecond:N0} events/s ({run.Received:N0} received, {run.Lost:N0} lost, {run.Seconds:N2} s; {run.MessagesSent / (double)Math.Max(1, run.FramesSent):N0} messages per frame)"));
        }

        var rates = runs.Select(r => r.EventsPerSecond).Order().ToArray();
        return new PubSubResult(options.Events, options.PayloadBytes, runs, Median(rates), rates[0], rates[^1]);
    }

    private static async Task<PubSubRun> RunOnceAsync(LoomConnection subscriber, LoomConnection publisher, ByteString payload, int count, string topic)
    {
        long received = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await subscriber.SubscribeAsync(
            topic,
            (_, _) =>
            {
                if (Interlocked.Increment(ref received) == count)
                {
                    done.TrySetResult();
                }

                return Task.CompletedTask;
            },
            new SubscribeOptions { Qos = QosClass.Batch });

        var before = publisher.Statistics;
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            await publisher.PublishAsync(new Envelope { Topic = topic, Payload = payload, Qos = QosClass.Batch });
        }

        var published = stopwatch.Elapsed;

        // Until everything arrived, or nothing arrived for 5 s (then the rest is counted as lost).
        while (!done.Task.IsCompleted)
        {
            var seen = Interlocked.Read(ref received);
            await Task.WhenAny(done.Task, Task.Delay(TimeSpan.FromSeconds(5)));
            if (!done.Task.IsCompleted && Interlocked.Read(ref received) == seen)
            {
                break;
            }
        }

        stopwatch.Stop();
        var after = publisher.Statistics;
        var got = Interlocked.Read(ref received);
        return new PubSubRun(got, count - got, stopwatch.Elapsed.TotalSeconds, got / stopwatch.Elapsed.TotalSeconds, published.TotalSeconds, after.FramesSent - before.FramesSent, after.MessagesSent - before.MessagesSent);
    }

    private static double Median(double[] sorted) => sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
}

internal static class RpcBench
{
    public static async Task<RpcResult> RunAsync(Uri url, BenchOptions options, TextWriter? progress)
    {
        await using var provider = await LoomAgentHost.StartAsync(new EchoAgent(), url);
        await using var caller = await LoomAgentHost.StartAsync(new CallerAgent(), url);
        var timeout = TimeSpan.FromSeconds(10);
        for (var i = 0; i < options.Warmup; i++)
        {
            await caller.Context.InvokeAsync<EchoOutput>("bench.echo", new EchoInput(i, "ping"), timeout);
        }

        var ticks = new long[options.Calls];
        var total = Stopwatch.StartNew();
        for (var i = 0; i < options.Calls; i++)
        {
            var start = Stopwatch.GetTimestamp();
            var output = await caller.Context.InvokeAsync<EchoOutput>("bench.echo", new EchoInput(i, "ping"), timeout);
            ticks[i] = Stopwatch.GetTimestamp() - start;
            if (output!.Seq != i)
            {
                throw new InvalidOperationException($"Call {i} answered {output.Seq}.");
            }
        }

        total.Stop();
        Array.Sort(ticks);
        double Us(long t) => t * 1_000_000.0 / Stopwatch.Frequency;
        double Percentile(double p) => Us(ticks[Math.Min(ticks.Length - 1, (int)Math.Ceiling(p * ticks.Length) - 1)]);
        var result = new RpcResult(
            options.Calls,
            options.Warmup,
            Percentile(0.50),
            Percentile(0.90),
            Percentile(0.99),
            Percentile(0.999),
            ticks.Average(t => Us(t)),
            Us(ticks[^1]),
            options.Calls / total.Elapsed.TotalSeconds);
        progress?.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rpc: {options.Calls:N0} calls, p50 {result.P50Us:N1} µs, p99 {result.P99Us:N1} µs"));
        return result;
    }
}

public sealed record EchoInput(int Seq, string Text);

public sealed record EchoOutput(int Seq, string Text);

internal sealed class EchoAgent : Agent
{
    public override string Name => "bench-echo";

    [Capability("bench.echo", Description = "Returns its input.")]
    public static EchoOutput Echo(EchoInput input) => new(input.Seq, input.Text);
}

internal sealed class CallerAgent : Agent
{
    public override string Name => "bench-caller";
}
