using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.TestAgent;

/// <summary>
/// A .NET agent for the other languages' test suites. Every command prints one JSON line on stdout
/// when it is done (and <c>ready</c> alone on a line once it serves or is subscribed); errors of the
/// command line go to stderr with exit code 2, a connection failure exits 3.
/// </summary>
internal static class Program
{
    private const string Usage = """
        Usage: Loom.TestAgent <command> --url URL [options]
          serve      --agent-id ID                 serve dotnet.echo and dotnet.add until stdin closes or SIGTERM
          call       --capability NAME --input JSON [--timeout-ms N]
          subscribe  --topic PATTERN --count N [--timeout-s S]
          publish    --topic TOPIC --count N [--payload BYTES]
          bench-call --capability NAME --input JSON --calls N [--concurrency C]
          worker     --agent-id ID --topic PATTERN [--answer JSON] [--delay-ms N] [--bid-cost X] [--bid-latency-ms N]
                     [--capability NAME] [--work-ms N] [--fail true] [--heartbeat-ms N]
                     answer requests on PATTERN (after --delay-ms), bid --bid-cost on calls for proposals,
                     serve NAME (default collab.work) after --work-ms, until stdin closes or SIGTERM
          barrier    --barrier-id ID [--agent-id ID] [--participants a,b | --count N] [--timeout-ms N]
        """;

    // Readable output: quotes and apostrophes in messages as they are, not \u0027.
    private static readonly JsonSerializerOptions Json = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static async Task<int> Main(string[] args)
    {
        Dictionary<string, string> o;
        string command;
        try
        {
            (command, o) = Parse(args);
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message + Environment.NewLine + Usage);
            return 2;
        }

        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            stop.Cancel();
        };
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx =>
        {
            ctx.Cancel = true;
            stop.Cancel();
        });

        var url = new Uri(Required(o, "url"));
        try
        {
            return command switch
            {
                "serve" => await ServeAsync(url, o.GetValueOrDefault("agent-id") ?? "dotnet-test-agent", stop.Token),
                "call" => await CallAsync(url, o, stop.Token),
                "subscribe" => await SubscribeAsync(url, o, stop.Token),
                "publish" => await PublishAsync(url, o, stop.Token),
                "bench-call" => await BenchCallAsync(url, o, stop.Token),
                "worker" => await CollabWorker.RunAsync(url, o, stop.Token),
                "barrier" => await CollabWorker.BarrierAsync(url, o, stop.Token),
                _ => throw new ArgumentException($"Unknown command '{command}'."),
            };
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message + Environment.NewLine + Usage);
            return 2;
        }
        catch (LoomException ex) when (ex.Code == ErrorCode.Unavailable)
        {
            await Console.Error.WriteLineAsync($"cannot reach the bridge at {url}: {ex.Message}");
            return 3;
        }
    }

    private static async Task<int> ServeAsync(Uri url, string agentId, CancellationToken stop)
    {
        await using var agent = await LoomAgentHost.StartAsync(new DotnetTestAgent(), url, new AgentHostOptions { AgentId = agentId }, stop);
        Console.WriteLine("ready");
        var stdinClosed = Task.Run(async () =>
        {
            using var stdin = Console.OpenStandardInput();
            var buffer = new byte[256];
            while (await stdin.ReadAsync(buffer, stop) > 0)
            {
            }
        }, stop);
        try
        {
            await Task.WhenAny(stdinClosed, Task.Delay(Timeout.Infinite, stop));
        }
        catch (OperationCanceledException)
        {
        }

        return 0;
    }

    private static async Task<int> CallAsync(Uri url, Dictionary<string, string> o, CancellationToken stop)
    {
        var input = Encoding.UTF8.GetBytes(Required(o, "input"));
        var timeout = TimeSpan.FromMilliseconds(Number(o, "timeout-ms", 10_000));
        await using var caller = await LoomAgentHost.StartAsync(new CallerAgent(), url, cancellationToken: stop);
        JsonObject line;
        try
        {
            var output = await caller.Context.InvokeRawAsync(Required(o, "capability"), input, timeout, cancellationToken: stop);
            line = new JsonObject { ["ok"] = true, ["output"] = JsonNode.Parse(output.Span) };
        }
        catch (LoomException ex)
        {
            line = new JsonObject { ["ok"] = false, ["code"] = ErrorCodes.Name(ex.Code), ["message"] = ex.Message, ["path"] = ex.Path };
        }

        Console.WriteLine(line.ToJsonString(Json));
        return 0;
    }

    private static async Task<int> SubscribeAsync(Uri url, Dictionary<string, string> o, CancellationToken stop)
    {
        var count = Number(o, "count", 1);
        var timeout = TimeSpan.FromSeconds(Number(o, "timeout-s", 60));
        await using var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "dotnet-test-subscriber" }, cancellationToken: stop);
        long received = 0;
        long firstTicks = 0;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await connection.SubscribeAsync(
            Required(o, "topic"),
            (_, _) =>
            {
                var n = Interlocked.Increment(ref received);
                if (n == 1)
                {
                    Interlocked.Exchange(ref firstTicks, Stopwatch.GetTimestamp());
                }

                if (n == count)
                {
                    done.TrySetResult();
                }

                return Task.CompletedTask;
            },
            new SubscribeOptions { Qos = QosClass.Batch },
            stop);
        Console.WriteLine("ready");
        await Task.WhenAny(done.Task, Task.Delay(timeout, stop)).ConfigureAwait(false);
        var end = Stopwatch.GetTimestamp();
        var got = Interlocked.Read(ref received);
        var seconds = got == 0 ? 0 : Stopwatch.GetElapsedTime(Interlocked.Read(ref firstTicks), end).TotalSeconds;
        Console.WriteLine(new JsonObject
        {
            ["received"] = got,
            ["seconds"] = Math.Round(seconds, 6),
            ["events_per_second"] = seconds > 0 ? Math.Round((got - 1) / seconds) : 0,
        }.ToJsonString(Json));
        return got >= count ? 0 : 4;
    }

    private static async Task<int> PublishAsync(Uri url, Dictionary<string, string> o, CancellationToken stop)
    {
        var count = Number(o, "count", 1);
        var payload = Google.Protobuf.ByteString.CopyFrom(new byte[Number(o, "payload", 100)]);
        var topic = Required(o, "topic");
        await using var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "dotnet-test-publisher" }, cancellationToken: stop);
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            await connection.PublishAsync(new Envelope { Topic = topic, Payload = payload, Qos = QosClass.Batch }, stop);
        }

        stopwatch.Stop();
        Console.WriteLine(new JsonObject { ["published"] = count, ["seconds"] = Math.Round(stopwatch.Elapsed.TotalSeconds, 6) }.ToJsonString(Json));
        return 0;
    }

    private static async Task<int> BenchCallAsync(Uri url, Dictionary<string, string> o, CancellationToken stop)
    {
        var input = Encoding.UTF8.GetBytes(Required(o, "input"));
        var capability = Required(o, "capability");
        var calls = Number(o, "calls", 1000);
        var concurrency = Number(o, "concurrency", 1);
        await using var caller = await LoomAgentHost.StartAsync(new CallerAgent(), url, cancellationToken: stop);
        var timeout = TimeSpan.FromSeconds(10);

        // Warm-up: JIT and connection setup are not measured.
        for (var i = 0; i < Math.Min(200, calls); i++)
        {
            await caller.Context.InvokeRawAsync(capability, input, timeout, cancellationToken: stop);
        }

        var ticks = new long[calls];
        var next = -1;
        var errors = 0;
        var total = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, concurrency).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < calls)
            {
                var start = Stopwatch.GetTimestamp();
                try
                {
                    await caller.Context.InvokeRawAsync(capability, input, timeout, cancellationToken: stop);
                }
                catch (LoomException)
                {
                    Interlocked.Increment(ref errors);
                }

                ticks[i] = Stopwatch.GetTimestamp() - start;
            }
        }).ToArray();
        await Task.WhenAll(workers);
        total.Stop();
        Array.Sort(ticks);
        double Percentile(double p) => ticks[Math.Min(ticks.Length - 1, (int)Math.Ceiling(p * ticks.Length) - 1)] * 1_000_000.0 / Stopwatch.Frequency;
        Console.WriteLine(new JsonObject
        {
            ["calls"] = calls,
            ["seconds"] = Math.Round(total.Elapsed.TotalSeconds, 6),
            ["calls_per_second"] = Math.Round(calls / total.Elapsed.TotalSeconds),
            ["p50_us"] = Math.Round(Percentile(0.50), 1),
            ["p99_us"] = Math.Round(Percentile(0.99), 1),
            ["errors"] = errors,
        }.ToJsonString(Json));
        return 0;
    }

    private static (string Command, Dictionary<string, string> Options) Parse(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            throw new ArgumentException("A command is required.");
        }

        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 1; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new ArgumentException($"Expected '--name value', got '{args[i]}'.");
            }

            options[args[i][2..]] = args[++i];
        }

        return (args[0], options);
    }

    internal static string Required(Dictionary<string, string> o, string name) =>
        o.TryGetValue(name, out var value) ? value : throw new ArgumentException($"--{name} is required.");

    internal static int Number(Dictionary<string, string> o, string name, int fallback) =>
        !o.TryGetValue(name, out var text) ? fallback
        : int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0 ? n
        : throw new ArgumentException($"--{name} needs a positive integer, got '{text}'.");
}

/// <summary>The input of <c>dotnet.add</c>.</summary>
public sealed class AddInput
{
    public required double A { get; init; }

    public required double B { get; init; }
}

/// <summary>The output of <c>dotnet.add</c>.</summary>
public sealed record AddOutput(double Sum);

internal sealed class DotnetTestAgent : Agent
{
    public override string Name => "dotnet-test-agent";

    [Capability("dotnet.echo", Description = "Returns its input unchanged.")]
    public static JsonElement Echo(JsonElement input) => input;

    [Capability("dotnet.add", Description = "Adds a and b.")]
    public static AddOutput Add(AddInput input) => new(input.A + input.B);
}

internal sealed class CallerAgent : Agent
{
    public override string Name => "dotnet-test-caller";
}
