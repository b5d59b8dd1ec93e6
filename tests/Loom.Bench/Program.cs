using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Loom.Bridge;

namespace Loom.Bench;

/// <summary>
/// End-to-end benchmarks of Loom: the in-process EventBus, and the .NET SDK against a real
/// bridge (in this process, a bridge process it starts, or one at <c>--url</c>). Every figure
/// is the median of several runs with its spread. Progress goes to stderr, a table to stdout,
/// and <c>--json FILE</c> writes the results as JSON.
/// </summary>
internal static class Program
{
    public const string Usage = """
        Usage: Loom.Bench <scenario> [options]      (./loom bench <scenario> [options])
        Scenarios:
          bus        in-process EventBus, one publisher thread to one subscriber thread (events/s)
          pubsub     one .NET publisher to one .NET subscriber through the bridge at full speed (events/s)
          paced      the same, paced at --rates (default 1000,100000 events/s): latency p50/p90/p99/p999
          rpc        capability-call round trip between two .NET agents (sequential): latency and calls/s
          reqreply   request/reply over topics (RequestAsync to a replying subscriber): latency
          fanout     one publisher to --subscribers N subscriber connections (default 10): events/s delivered
          agents     --agents N connected agents with heartbeats (default 10000): bridge memory per agent
          external   events/s received from an external publisher: --cmd "COMMAND" (see docs/performance.md)
          dashboard  the dashboard at scale: --agents N raw agents (default 1000) on a bridge in a child process, publishing
                     up to --rate N events/s (default 100000) over --topics N topics, and the page in chromium (Playwright):
                     page CPU, long tasks, update latency, SSE bytes/s per view; bridge CPU with the page open and closed
          soak       --minutes N of steady mixed load with one misbehaving client of each kind attached: bridge RSS,
                     drops by reason, p99 latency and errors, a line per interval (bridge in a child process)
          llm        the LLM gateway against a local fake OpenAI-compatible server: overhead per call over a direct
                     HTTP call, cache-hit latency (p50/p99, --calls per mode per run), and 50 identical concurrent
                     calls coalesced vs not (upstream requests, time) (its own in-process bridge)
          durable    acknowledged publishes to a durable stream (fsync'd group commits) against the ephemeral pubsub
                     figure in the same run: events/s, ack latency p50/p99 (pipelined and one at a time), disk bytes
                     per event, and the start time of a bridge over a --log-events log (bridge in this process)
          all        bus, pubsub, paced, rpc, reqreply, fanout (agents, external, soak, llm, dashboard and durable only when named)
        Options:
          --url URL          bridge gRPC address (default: a bridge in this process; agents: a bridge process)
          --http-url URL     the bridge's HTTP address, for /metrics (agents and soak with --url)
          --no-dashboard     the in-process bridge without the dashboard's feed (its overhead, paired)
          --runs N           measured runs per figure (default 5; agents 3)
          --events N         events per run (bus 10000000, pubsub 1000000, fanout 200000 per subscriber, external 1000000)
          --payload N        payload bytes (default 100; soak: at least 16)
          --rates R1,R2      paced: events/s (default 1000,100000)
          --seconds N        paced: seconds per run (default 5)
          --calls N          rpc/reqreply: calls per run (default 10000)
          --warmup N         rpc/reqreply: warm-up calls (default 2000)
          --subscribers N    fanout: subscriber connections (default 10)
          --agents N         agents: agents to connect (default 10000)
          --agents-per-connection N  agents: agents sharing one HTTP/2 connection (default 1: a connection each)
          --heartbeat-ms N   agents: heartbeat interval asked for (default 5000, the bridge default)
          --cmd COMMAND      external: publisher command; {url} {topic} {events} {payload} are replaced
          --minutes N        soak: how long (default 10)
          --rate N           soak: healthy events/s published (default 2000)
          --callers N        soak: concurrent callers of a capability (default 8)
          --call-rate N      soak: calls/s by all callers together (default 1000)
          --interval N       soak: seconds between samples, and between registration bursts (default 10)
          --silent N         soak: silent TCP connections held open (default 300)
          --flood N          soak: registrations per burst (default 500)
          --fill-rate N      soak: 1 MiB memory writes per second by the filler (default 2)
          --slow-ms N        soak: ms the slow subscriber takes per event (default 5)
          --oversize-every N soak: seconds between oversized forwards, headers and lists (default 5)
          --offenders LIST   soak: which misbehaving clients: all (default), none, or some of
                             stalled,slow,silent,flood,oversize,fill
          --topics N         dashboard: topics published to, one subscribed by each agent in turn (default 1000)
          --publishers N     dashboard: agents that publish (default 4)
          --views LIST       dashboard: views measured in turn (default overview,topology,topics,events)
          --markers N        dashboard: update-latency markers per run on the overview (default 3)
          --inflight N       durable: acknowledged publishes in flight at once (default 4096)
          --log-events N     durable: events in the log whose recovery is timed (default 10000000; 0 skips it)
          --json FILE        also write the results as JSON to FILE ('-' for stdout instead of the table)
        """;

    private static readonly JsonSerializerOptions JsonOutput = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static async Task<int> Main(string[] args)
    {
        if (args is ["serve-bridge"])
        {
            return await BridgeProcess.ServeAsync();
        }

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

        var report = new BenchReport
        {
            Machine = $"{Environment.ProcessorCount} CPUs, {Environment.OSVersion}, {CpuModel()}",
            Runtime = Environment.Version.ToString(),
            SpinLimit = Environment.GetEnvironmentVariable("DOTNET_ThreadPool_UnfairSemaphoreSpinLimit") ?? "(default)",
            Started = DateTimeOffset.UtcNow,
            LoadAverage = LoadAverage(),
        };

        var scenarios = options.Scenario == "all" ? ["bus", "pubsub", "paced", "rpc", "reqreply", "fanout"] : new[] { options.Scenario };
        var needsBridge = scenarios.Any(s => s is not "bus" and not "agents" and not "soak" and not "llm" and not "dashboard" and not "durable");
        LoomBridge? bridge = null;
        var url = options.Url;
        if (url is null && needsBridge)
        {
            bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, Dashboard = options.Dashboard }, static _ => { });
            await bridge.StartAsync();
            url = bridge.GrpcAddress;
        }

        report.Bridge = options.Url is not null ? options.Url.ToString() : needsBridge ? $"in-process ({url})" : scenarios.Any(s => s is "agents" or "soak" or "dashboard") ? "child process (serve-bridge)" : scenarios.Contains("llm") ? "in-process, with an llm: gateway to a local fake provider" : "(none)";
        var progress = Console.Error;
        try
        {
            foreach (var scenario in scenarios)
            {
                progress.WriteLine($"== {scenario}");
                var results = scenario switch
                {
                    "bus" => await BusBench.RunAsync(options, progress),
                    "pubsub" => await PubSubBench.RunAsync(url!, options, progress),
                    "paced" => await PacedBench.RunAsync(url!, options, progress),
                    "rpc" => await RpcBench.RunAsync(url!, options, progress),
                    "reqreply" => await RequestReplyBench.RunAsync(url!, options, progress),
                    "fanout" => await FanOutBench.RunAsync(url!, options, progress),
                    "agents" => await AgentsBench.RunAsync(options, progress),
                    "external" => await ExternalBench.RunAsync(url!, options, progress),
                    "soak" => await Soak.SoakBench.RunAsync(options, progress),
                    "llm" => await LlmBench.RunAsync(options, progress),
                    "dashboard" => await DashboardBench.RunAsync(options, progress),
                    "durable" => await DurableBench.RunAsync(options, progress),
                    _ => throw new InvalidOperationException(scenario),
                };
                report.Results.AddRange(results);
            }
        }
        finally
        {
            if (bridge is not null)
            {
                await bridge.DisposeAsync();
            }
        }

        report.LoadAverageAfter = LoadAverage();
        if (options.JsonFile is { } file)
        {
            var json = JsonSerializer.Serialize(report, JsonOutput);
            if (file == "-")
            {
                Console.WriteLine(json);
                return 0;
            }

            await File.WriteAllTextAsync(file, json);
        }

        report.PrintTable(Console.Out);
        return 0;
    }

    private static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line is null ? "unknown CPU" : line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
        }
        catch (IOException)
        {
            return "unknown CPU";
        }
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "";
        }
    }
}

internal sealed class BenchOptions
{
    public string Scenario { get; private set; } = "all";

    public Uri? Url { get; private set; }

    public Uri? HttpUrl { get; private set; }

    /// <summary>The in-process bridge keeps the dashboard's feed (its default); --no-dashboard for the paired overhead figure.</summary>
    public bool Dashboard { get; private set; } = true;

    public int? Runs { get; private set; }

    public int? Events { get; private set; }

    public int PayloadBytes { get; private set; } = 100;

    public IReadOnlyList<int> Rates { get; private set; } = [1000, 100_000];

    public int Seconds { get; private set; } = 5;

    public int Calls { get; private set; } = 10_000;

    public int Warmup { get; private set; } = 2_000;

    public int Subscribers { get; private set; } = 10;

    public int InFlight { get; private set; } = 4096;

    public int LogEvents { get; private set; } = 10_000_000;

    public int Agents { get; private set; } = 10_000;

    public int HeartbeatMs { get; private set; } = 5000;

    public int AgentsPerConnection { get; private set; } = 1;

    public string? Command { get; private set; }

    public int Minutes { get; private set; } = 10;

    public int Rate { get; private set; } = 2000;

    public int Callers { get; private set; } = 8;

    public int CallRate { get; private set; } = 1000;

    public int IntervalSeconds { get; private set; } = 10;

    public int Silent { get; private set; } = 300;

    public int FloodBurst { get; private set; } = 500;

    public int FillRate { get; private set; } = 2;

    public int SlowMs { get; private set; } = 5;

    public int OversizeEverySeconds { get; private set; } = 5;

    public IReadOnlySet<string> Offenders { get; private set; } = Bench.Soak.SoakSettings.AllOffenders.ToHashSet(StringComparer.Ordinal);

    public string? JsonFile { get; private set; }

    public bool Help { get; private set; }

    public int Topics { get; private set; } = 1000;

    public int Publishers { get; private set; } = 4;

    public int Markers { get; private set; } = 3;

    public IReadOnlyList<string> Views { get; private set; } = ["overview", "topology", "topics", "events"];

    private bool _agentsGiven;
    private bool _rateGiven;
    private bool _secondsGiven;

    public int RunsOr(int fallback) => Runs ?? fallback;

    /// <summary>--agents when given, else the scenario's own default.</summary>
    public int AgentsOr(int fallback) => _agentsGiven ? Agents : fallback;

    public int RateOr(int fallback) => _rateGiven ? Rate : fallback;

    public int SecondsOr(int fallback) => _secondsGiven ? Seconds : fallback;

    public int EventsOr(int fallback) => Events ?? fallback;

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            var arg = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{arg} needs a value.");
            int Number() => int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException($"{arg} needs a positive integer.");
            Uri Address() => Uri.TryCreate(Next(), UriKind.Absolute, out var url) ? url : throw new ArgumentException($"{arg} needs an absolute http:// address.");
            switch (arg)
            {
                case "bus" or "pubsub" or "paced" or "rpc" or "reqreply" or "fanout" or "agents" or "external" or "soak" or "llm" or "dashboard" or "durable" or "all":
                    o.Scenario = arg;
                    break;
                case "--url":
                    o.Url = Address();
                    break;
                case "--http-url":
                    o.HttpUrl = Address();
                    break;
                case "--no-dashboard":
                    o.Dashboard = false;
                    break;
                case "--runs":
                    o.Runs = Number();
                    break;
                case "--events":
                    o.Events = Number();
                    break;
                case "--payload":
                    o.PayloadBytes = Number();
                    break;
                case "--rates":
                    o.Rates = Next().Split(',').Select(r => int.TryParse(r, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw new ArgumentException("--rates needs positive integers, e.g. 1000,100000.")).ToArray();
                    break;
                case "--seconds":
                    o.Seconds = Number();
                    o._secondsGiven = true;
                    break;
                case "--topics":
                    o.Topics = Number();
                    break;
                case "--publishers":
                    o.Publishers = Number();
                    break;
                case "--markers":
                    o.Markers = Number();
                    break;
                case "--views":
                    o.Views = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    break;
                case "--calls":
                    o.Calls = Number();
                    break;
                case "--warmup":
                    o.Warmup = Number();
                    break;
                case "--subscribers":
                    o.Subscribers = Number();
                    break;
                case "--agents":
                    o.Agents = Number();
                    o._agentsGiven = true;
                    break;
                case "--heartbeat-ms":
                    o.HeartbeatMs = Number();
                    break;
                case "--agents-per-connection":
                    o.AgentsPerConnection = Number();
                    break;
                case "--cmd":
                    o.Command = Next();
                    break;
                case "--minutes":
                    o.Minutes = Number();
                    break;
                case "--rate":
                    o.Rate = Number();
                    o._rateGiven = true;
                    break;
                case "--callers":
                    o.Callers = Number();
                    break;
                case "--call-rate":
                    o.CallRate = Number();
                    break;
                case "--interval":
                    o.IntervalSeconds = Number();
                    break;
                case "--silent":
                    o.Silent = Number();
                    break;
                case "--flood":
                    o.FloodBurst = Number();
                    break;
                case "--fill-rate":
                    o.FillRate = Number();
                    break;
                case "--slow-ms":
                    o.SlowMs = Number();
                    break;
                case "--oversize-every":
                    o.OversizeEverySeconds = Number();
                    break;
                case "--offenders":
                    o.Offenders = Next() switch
                    {
                        "all" => Bench.Soak.SoakSettings.AllOffenders.ToHashSet(StringComparer.Ordinal),
                        "none" => new HashSet<string>(StringComparer.Ordinal),
                        var list => list.Split(',').Select(k => Bench.Soak.SoakSettings.AllOffenders.Contains(k) ? k : throw new ArgumentException($"--offenders: unknown '{k}' (all, none, or some of {string.Join(',', Bench.Soak.SoakSettings.AllOffenders)}).")).ToHashSet(StringComparer.Ordinal),
                    };
                    break;
                case "--inflight":
                    o.InFlight = Number();
                    break;
                case "--log-events":
                    o.LogEvents = int.TryParse(Next(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var logEvents) && logEvents >= 0 ? logEvents : throw new ArgumentException("--log-events needs 0 or a positive integer.");
                    break;
                case "--json":
                    // "--json" alone (the old form) prints JSON to stdout.
                    o.JsonFile = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) && !IsScenario(args[i + 1]) ? args[++i] : "-";
                    break;
                case "-h" or "--help":
                    o.Help = true;
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{arg}'.");
            }
        }

        if (o.Scenario == "external" && o.Command is null)
        {
            throw new ArgumentException("external needs --cmd \"COMMAND\".");
        }

        return o;
    }

    private static bool IsScenario(string s) => s is "bus" or "pubsub" or "paced" or "rpc" or "reqreply" or "fanout" or "agents" or "external" or "soak" or "llm" or "dashboard" or "durable" or "all";
}

/// <summary>One figure: the median of several runs, with the spread.</summary>
internal sealed record Figure(string Scenario, string Measure, string Unit, double Median, double Min, double Max, IReadOnlyList<double> Runs, string Note = "")
{
    public static Figure Of(string scenario, string measure, string unit, IReadOnlyList<double> runs, string note = "")
    {
        var sorted = runs.Order().ToArray();
        var median = sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
        return new Figure(scenario, measure, unit, median, sorted.FirstOrDefault(double.NaN), sorted.LastOrDefault(double.NaN), runs, note);
    }
}

internal sealed class BenchReport
{
    public string Bridge { get; set; } = "";

    public string Machine { get; init; } = "";

    public string Runtime { get; init; } = "";

    public string SpinLimit { get; init; } = "";

    public DateTimeOffset Started { get; init; }

    public string LoadAverage { get; init; } = "";

    public string LoadAverageAfter { get; set; } = "";

    public List<Figure> Results { get; } = [];

    public void PrintTable(TextWriter output)
    {
        output.WriteLine();
        output.WriteLine($"bridge: {Bridge}; .NET {Runtime}; {Machine}; DOTNET_ThreadPool_UnfairSemaphoreSpinLimit={SpinLimit}; load average {LoadAverage} -> {LoadAverageAfter}");
        output.WriteLine();
        output.WriteLine("| scenario | measure | median | min | max | runs | note |");
        output.WriteLine("|---|---|---:|---:|---:|---:|---|");
        foreach (var f in Results)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {f.Scenario} | {f.Measure} ({f.Unit}) | {Format(f.Median)} | {Format(f.Min)} | {Format(f.Max)} | {f.Runs.Count} | {f.Note} |"));
        }
    }

    private static string Format(double value) => value switch
    {
        double.NaN => "-",
        >= 1000 => value.ToString("N0", CultureInfo.InvariantCulture),
        >= 10 => value.ToString("N1", CultureInfo.InvariantCulture),
        _ => value.ToString("N2", CultureInfo.InvariantCulture),
    };
}

/// <summary>Latency samples (Stopwatch ticks) and their percentiles in microseconds.</summary>
internal static class Percentiles
{
    public static double Us(long ticks) => ticks * 1_000_000.0 / Stopwatch.Frequency;

    public static double Of(long[] sortedTicks, double p) =>
        sortedTicks.Length == 0 ? double.NaN : Us(sortedTicks[Math.Clamp((int)Math.Ceiling(p * sortedTicks.Length) - 1, 0, sortedTicks.Length - 1)]);
}
