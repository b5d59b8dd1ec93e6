using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.Protocol.V1;
using Loom.Sdk;
using Loom.Tests;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// Run records survive kill -9 of a real `loom up`: a thread's events and calls, recorded under
/// the default data directory (.loom/data beside loom.yaml), are all there after a restart on the
/// same directory; a torn tail record is cut off with a log line and the bridge serves the rest.
/// `loom inspect` reads them.
/// </summary>
public sealed class RunRecordCrashTests : IDisposable
{
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(60);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loom-runs-crash-" + Guid.NewGuid().ToString("N"));

    public RunRecordCrashTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "loom.yaml"), "name: runs-crash\n");
    }

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

    private CliProcess Up(int grpc, int http) =>
        CliProcess.Start(_dir, null, "up", "--config", Path.Combine(_dir, "loom.yaml"), "--grpc-port", grpc.ToString(CultureInfo.InvariantCulture), "--http-port", http.ToString(CultureInfo.InvariantCulture));

    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetThreadAsync(string http, string id)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using var response = await client.GetAsync(new Uri(new Uri(http), "/v1/threads/" + id));
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text);
        return (response.StatusCode, document.RootElement.Clone());
    }

    private static List<string> Ids(JsonElement thread) => thread.GetProperty("steps").EnumerateArray().Select(s => s.GetProperty("kind").GetString() + ":" + s.GetProperty("id").GetString()).ToList();

    [Fact]
    public async Task A_threads_record_survives_kill_9_and_a_torn_tail_is_cut_with_a_log_line()
    {
        const int Events = 40;
        const int Calls = 10;
        var grpc = FreePort();
        var httpPort = FreePort();
        var up = Up(grpc, httpPort);
        var match = await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup);
        var url = match.Groups[1].Value;
        var http = match.Groups[2].Value;

        var echo = new LoomCapability(new CapabilityDescriptor { Name = "crash.echo", Version = "1.0.0" }, (call, _) => ValueTask.FromResult(call.InputJson));
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        List<string> before;
        {
            await using var provider = await LoomConnection.ConnectAsync(new Uri(url), new LoomConnectionOptions { AgentId = "provider", Name = "provider" }, [echo], timeout.Token);
            await using var caller = await LoomConnection.ConnectAsync(new Uri(url), new LoomConnectionOptions { AgentId = "caller", Name = "caller" }, cancellationToken: timeout.Token);
            for (var i = 0; i < Events; i++)
            {
                await caller.PublishAsync(new Envelope { Topic = "crash.step", ThreadId = "t-crash", ContentType = "application/json", Payload = ByteString.CopyFromUtf8($$"""{"i":{{i}}}""") }, timeout.Token);
                if (i % (Events / Calls) == 0)
                {
                    await caller.CallAsync(new ActionCall { Capability = "crash.echo", ThreadId = "t-crash", InputJson = ByteString.CopyFromUtf8($$"""{"call":{{i}}}"""), TimeoutMs = 20_000 }, timeout.Token);
                }
            }

            JsonElement recorded = default;
            await Poll.UntilAsync(async () => (recorded = (await GetThreadAsync(http, "t-crash")).Body).TryGetProperty("steps", out var s) && s.GetArrayLength() == Events + Calls, Startup, "every step recorded");
            before = Ids(recorded);
        }

        await up.KillHardAsync();
        Assert.True(Directory.EnumerateFiles(Path.Combine(_dir, ".loom", "data", "runs"), "*.log").Any(), "run records under .loom/data/runs by default");

        // Restarted on the same data directory: the same steps, in the same order.
        await using (var again = Up(grpc, httpPort))
        {
            await again.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup);
            var (status, thread) = await GetThreadAsync(http, "t-crash");
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(before, Ids(thread));
            Assert.Equal(Events, thread.GetProperty("events").GetInt32());
            Assert.Equal(Calls, thread.GetProperty("calls").GetInt32());
            Assert.All(thread.GetProperty("steps").EnumerateArray().Where(s => s.GetProperty("kind").GetString() == "call"), s => Assert.Equal("provider", s.GetProperty("target").GetString()));

            // loom inspect: the timeline, its JSON, and the list of threads.
            var (code, output) = await CliProcess.RunAsync(_dir, TimeSpan.FromSeconds(60), new Dictionary<string, string> { ["COLUMNS"] = "200" }, "inspect", "t-crash", "--url", http);
            Assert.True(code == 0, output);
            Assert.Contains("thread t-crash", output, StringComparison.Ordinal);
            Assert.Contains("crash.echo", output, StringComparison.Ordinal);
            Assert.Contains("caller → provider", output, StringComparison.Ordinal);
            Assert.Contains("""{"i":39}""", output, StringComparison.Ordinal);
            (code, output) = await CliProcess.RunAsync(_dir, TimeSpan.FromSeconds(60), null, "inspect", "t-crash", "--url", http, "--json");
            Assert.True(code == 0, output);
            using (var json = JsonDocument.Parse(output))
            {
                Assert.Equal(Events + Calls, json.RootElement.GetProperty("steps").GetArrayLength());
            }

            (code, output) = await CliProcess.RunAsync(_dir, TimeSpan.FromSeconds(60), new Dictionary<string, string> { ["COLUMNS"] = "200" }, "inspect", "--url", http);
            Assert.True(code == 0, output);
            Assert.Contains("t-crash", output, StringComparison.Ordinal);
            (code, output) = await CliProcess.RunAsync(_dir, TimeSpan.FromSeconds(60), null, "inspect", "t-nobody", "--url", http);
            Assert.True(code == 1, output);
            Assert.Contains("No run record of thread 't-nobody'", output, StringComparison.Ordinal);
            await again.KillHardAsync();
        }

        // A torn tail: the last record loses its last bytes, as a crash mid-write leaves it.
        var last = Directory.EnumerateFiles(Path.Combine(_dir, ".loom", "data", "runs"), "*.log").Order(StringComparer.Ordinal).Last();
        using (var file = new FileStream(last, FileMode.Open, FileAccess.Write))
        {
            file.SetLength(file.Length - 5);
        }

        await using var third = Up(grpc, httpPort);
        await third.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup);
        Assert.Contains("has a bad record at byte", third.Output, StringComparison.Ordinal);
        var (afterStatus, after) = await GetThreadAsync(http, "t-crash");
        Assert.Equal(HttpStatusCode.OK, afterStatus);
        Assert.Equal(before[..^1], Ids(after));
        Assert.False(third.HasExited);
    }
}
