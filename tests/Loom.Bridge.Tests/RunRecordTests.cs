using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Loom.Tests;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// Run records (issue 17) against a real bridge: agents publish on a thread and call capabilities
/// for it over gRPC; GET /v1/threads and /v1/threads/{id} show the steps in order, persisted
/// under the data directory and read back by the next bridge on it.
/// </summary>
public sealed class RunRecordTests : IDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-runs-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(_temp, recursive: true);
        }
        catch (IOException)
        {
            // A file still held; the temp directory is cleaned later.
        }
    }

    private static async Task<LoomBridge> StartAsync(BridgeOptions options)
    {
        var bridge = new LoomBridge(options with { GrpcPort = 0, HttpPort = 0 }, l => { });
        await bridge.StartAsync();
        return bridge;
    }

    private static async Task<(HttpStatusCode Status, JsonElement Body)> GetAsync(LoomBridge bridge, string path, string? token = null)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(bridge.HttpAddress, path));
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text.StartsWith('{') ? text : "null");
        return (response.StatusCode, document.RootElement.Clone());
    }

    private static async Task<JsonElement> ThreadAsync(LoomBridge bridge, string id, int steps)
    {
        JsonElement body = default;
        await Poll.UntilAsync(async () =>
        {
            var (status, b) = await GetAsync(bridge, "/v1/threads/" + Uri.EscapeDataString(id));
            body = b;
            return status == HttpStatusCode.OK && b.GetProperty("steps").GetArrayLength() >= steps;
        }, Deadline, $"{steps} steps recorded on thread {id}");
        return body;
    }

    private static Task<LoomConnection> ConnectAsync(LoomBridge bridge, string name) =>
        LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = name, RequestTimeout = TimeSpan.FromSeconds(20) });

    private static Envelope Event(string topic, string thread, string json, string correlation = "") => new()
    {
        Topic = topic,
        ThreadId = thread,
        CorrelationId = correlation,
        ContentType = "application/json",
        Payload = ByteString.CopyFromUtf8(json),
    };

    private sealed class Provider : Agent
    {
        [Capability("runs.echo", Description = "Echoes its input.")]
        public static JsonElement Echo(JsonElement input) => input;

        [Capability("runs.fail", Description = "Always fails.")]
        public static JsonElement Fail(JsonElement input) => throw new InvalidOperationException("runs.fail always fails");
    }

    [Fact]
    public async Task A_threads_events_and_calls_are_listed_and_shown_in_order_with_previews_results_and_errors()
    {
        await using var bridge = await StartAsync(new BridgeOptions());
        await using var provider = await LoomAgentHost.StartAsync(new Provider(), bridge.GrpcAddress, new AgentHostOptions { AgentId = "provider-1" });
        await using var planner = await ConnectAsync(bridge, "planner");
        using var timeout = new CancellationTokenSource(Deadline);

        await planner.PublishAsync(Event("work.plan", "t-runs", """{"kind":"plan","steps":3}"""), timeout.Token);
        var output = await planner.CallAsync(new ActionCall { Capability = "runs.echo", ThreadId = "t-runs", InputJson = ByteString.CopyFromUtf8("""{"q":"loom"}"""), TimeoutMs = 20_000 }, timeout.Token);
        Assert.Equal("""{"q":"loom"}""", Encoding.UTF8.GetString(output.Span));
        await Assert.ThrowsAnyAsync<LoomException>(() => planner.CallAsync(new ActionCall { Capability = "runs.fail", ThreadId = "t-runs", InputJson = ByteString.CopyFromUtf8("{}"), TimeoutMs = 20_000 }, timeout.Token));
        await planner.PublishAsync(Event("work.report", "t-runs", "{\"kind\":\"report\",\"text\":\"" + new string('x', 5000) + "\"}"), timeout.Token);
        await planner.PublishAsync(Event("work.other", "t-elsewhere", "{}"), timeout.Token);
        await planner.PublishAsync(Event("work.unthreaded", "", "{}"), timeout.Token);

        var thread = await ThreadAsync(bridge, "t-runs", 4);
        var steps = thread.GetProperty("steps").EnumerateArray().ToList();
        Assert.Equal(["event", "call", "call", "event"], steps.Select(s => s.GetProperty("kind").GetString()));
        Assert.Equal(["work.plan", "runs.echo", "runs.fail", "work.report"], steps.Select(s => s.GetProperty("topic").GetString()));
        Assert.All(steps, s => Assert.Equal("planner", s.GetProperty("sender").GetString()![..7]));
        Assert.Equal("""{"kind":"plan","steps":3}""", steps[0].GetProperty("payload").GetString());

        var echo = steps[1];
        Assert.Equal("provider-1", echo.GetProperty("target").GetString());
        Assert.Equal("""{"q":"loom"}""", echo.GetProperty("payload").GetString());
        Assert.Equal("""{"q":"loom"}""", echo.GetProperty("output").GetString());
        Assert.True(echo.GetProperty("duration_ms").GetDouble() >= 0);
        Assert.False(echo.TryGetProperty("error_code", out _));

        var failed = steps[2];
        Assert.Equal("TOOL_ERROR", failed.GetProperty("error_code").GetString());
        Assert.Contains("always fails", failed.GetProperty("error_message").GetString(), StringComparison.Ordinal);

        var report = steps[3];
        Assert.True(report.GetProperty("payload_truncated").GetBoolean());
        Assert.Equal(5000 + 27, report.GetProperty("payload_bytes").GetInt32());
        Assert.Equal(new RunsOptions().PreviewBytes, report.GetProperty("payload").GetString()!.Length);

        Assert.Equal(2, thread.GetProperty("events").GetInt32());
        Assert.Equal(2, thread.GetProperty("calls").GetInt32());
        Assert.Equal(1, thread.GetProperty("errors").GetInt32());
        Assert.Contains("provider-1", thread.GetProperty("agents").EnumerateArray().Select(a => a.GetString()));

        // The list: newest first, with counts; paging by limit and offset.
        await ThreadAsync(bridge, "t-elsewhere", 1);
        var (status, list) = await GetAsync(bridge, "/v1/threads");
        Assert.Equal(HttpStatusCode.OK, status);
        var threads = list.GetProperty("threads").EnumerateArray().ToList();
        Assert.Equal(["t-elsewhere", "t-runs"], threads.Select(t => t.GetProperty("id").GetString()));
        Assert.Equal(2, list.GetProperty("total").GetInt32());
        Assert.Equal(4, threads[1].GetProperty("count").GetInt32());
        Assert.Equal(1, threads[1].GetProperty("errors").GetInt32());
        (_, list) = await GetAsync(bridge, "/v1/threads?limit=1&offset=1");
        Assert.Equal("t-runs", list.GetProperty("threads").EnumerateArray().Single().GetProperty("id").GetString());

        // Unknown thread: 404 with the JSON error shape; bad paging: 400.
        var (missing, error) = await GetAsync(bridge, "/v1/threads/t-nobody");
        Assert.Equal(HttpStatusCode.NotFound, missing);
        Assert.Equal("NOT_FOUND", error.GetProperty("code").GetString());
        Assert.Contains("t-nobody", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        var (bad, badBody) = await GetAsync(bridge, "/v1/threads?limit=0");
        Assert.Equal(HttpStatusCode.BadRequest, bad);
        Assert.Equal("INVALID_PARAMS", badBody.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_gather_on_a_thread_is_recorded_as_collaboration_steps_with_the_calls_it_made()
    {
        await using var bridge = await StartAsync(new BridgeOptions());
        await using var a = await LoomAgentHost.StartAsync(new Provider(), bridge.GrpcAddress, new AgentHostOptions { AgentId = "echo-a" });
        await using var b = await LoomAgentHost.StartAsync(new Provider(), bridge.GrpcAddress, new AgentHostOptions { AgentId = "echo-b" });
        await using var caller = await ConnectAsync(bridge, "caller");
        using var timeout = new CancellationTokenSource(Deadline);
        var result = await caller.GatherAsync(new GatherRequest { ThreadId = "t-gather", Capability = "runs.echo", Payload = ByteString.CopyFromUtf8("""{"n":1}"""), Strategy = JoinStrategy.All, TimeoutMs = 20_000 }, timeout.Token);
        Assert.Equal(2, result.Replies.Count);

        var thread = await ThreadAsync(bridge, "t-gather", 4);
        await Poll.UntilAsync(async () => (await ThreadAsync(bridge, "t-gather", 4)).GetProperty("steps").EnumerateArray().Any(s => s.TryGetProperty("step", out var k) && k.GetString() == "completed"), Deadline, "the gather's completion recorded");
        thread = await ThreadAsync(bridge, "t-gather", 4);
        var steps = thread.GetProperty("steps").EnumerateArray().ToList();
        var collab = steps.Where(s => s.GetProperty("kind").GetString() == "collab").ToList();
        Assert.Equal("started", collab.First().GetProperty("step").GetString());
        Assert.Equal("completed", collab.Last().GetProperty("step").GetString());
        Assert.All(collab, s => Assert.Equal("gather", s.GetProperty("operation").GetString()));
        Assert.Equal(result.OpId, collab[0].GetProperty("op_id").GetString());
        var calls = steps.Where(s => s.GetProperty("kind").GetString() == "call").ToList();
        Assert.Equal(["echo-a", "echo-b"], calls.Select(c => c.GetProperty("target").GetString()).Order());
        Assert.True(thread.GetProperty("collab").GetInt32() >= 2);
    }

    [Fact]
    public async Task Records_under_the_data_directory_are_read_back_by_the_next_bridge_and_retention_bounds_them()
    {
        var options = new BridgeOptions { DataDirectory = _temp, Runs = new RunsOptions { MaxSteps = 50, SegmentBytes = 4096 } };
        await using (var bridge = await StartAsync(options))
        {
            Assert.True(bridge.Runs!.Persistent);
            await using var agent = await ConnectAsync(bridge, "writer");
            using var timeout = new CancellationTokenSource(Deadline);
            for (var i = 0; i < 20; i++)
            {
                await agent.PublishAsync(Event("work.step", "t-kept", $$"""{"i":{{i}}}"""), timeout.Token);
            }

            await ThreadAsync(bridge, "t-kept", 20);
        }

        Assert.True(Directory.EnumerateFiles(Path.Combine(_temp, "runs"), "*.log").Any(), "segments under {data_dir}/runs");
        await using var again = await StartAsync(options);
        var thread = await ThreadAsync(again, "t-kept", 20);
        Assert.Equal(Enumerable.Range(0, 20), Numbers(thread));

        // At most 50 steps are kept (whole segments go): 200 more steps on another thread push t-kept out.
        await using var writer = await ConnectAsync(again, "writer");
        using var more = new CancellationTokenSource(Deadline);
        for (var chunk = 0; chunk < 10; chunk++)
        {
            for (var i = 0; i < 20; i++)
            {
                await writer.PublishAsync(Event("work.step", "t-new", $$"""{"i":{{chunk * 20 + i}}}"""), more.Token);
            }

            await Poll.UntilAsync(() => again.Runs!.Recorded >= (chunk + 1) * 20, Deadline, $"chunk {chunk} written");
        }

        await Poll.UntilAsync(async () => (await GetAsync(again, "/v1/threads/t-kept")).Status == HttpStatusCode.NotFound, Deadline, "t-kept removed by retention");
        var (_, list) = await GetAsync(again, "/v1/threads");
        Assert.Equal(["t-new"], list.GetProperty("threads").EnumerateArray().Select(t => t.GetProperty("id").GetString()));
        var latest = await ThreadAsync(again, "t-new", 1);
        var kept = Numbers(latest);
        Assert.True(kept.Count is >= 50 and < 200, $"{kept.Count} of t-new's 200 steps kept");
        Assert.Equal(199, kept[^1]);
        Assert.True(latest.GetProperty("truncated").GetBoolean(), "a thread that lost steps to retention says so");
    }

    private static List<int> Numbers(JsonElement thread) =>
        thread.GetProperty("steps").EnumerateArray().Select(s => JsonDocument.Parse(s.GetProperty("payload").GetString()!).RootElement.GetProperty("i").GetInt32()).ToList();

    [Fact]
    public async Task A_full_queue_drops_steps_without_blocking_the_publisher_and_counts_them()
    {
        await using var bridge = await StartAsync(new BridgeOptions { Runs = new RunsOptions { QueueCapacity = 1 } });
        const int Published = 20_000;
        for (var i = 0; i < Published; i++)
        {
            await bridge.Bus.PublishAsync(new Envelope { Topic = "flood.x", ThreadId = "t-flood", Payload = ByteString.CopyFromUtf8("{}") }, CancellationToken.None);
        }

        var runs = bridge.Runs!;
        await Poll.UntilAsync(() => runs.Recorded + runs.Dropped + runs.NotKept == Published, Deadline, "every step written or dropped");
        Assert.True(runs.Dropped > 0, "a queue of one drops under a flood");
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        var metrics = await http.GetStringAsync(new Uri(bridge.HttpAddress, "/metrics"));
        Assert.Contains("loom_run_records_dropped_total", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_auth_on_threads_need_a_read_only_or_admin_credential()
    {
        var key = Path.Combine(_temp, "keys", "token.key");
        await using var bridge = await StartAsync(new BridgeOptions { Auth = AuthMode.Required, TokenKeyFile = key });
        await bridge.Bus.PublishAsync(new Envelope { Topic = "x.y", ThreadId = "t-auth", Payload = ByteString.CopyFromUtf8("{}") }, CancellationToken.None);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(bridge, "/v1/threads")).Status);
        var reader = BridgeTokens.Create(key, "viewer", [], [], TimeSpan.FromHours(1), admin: false, readOnly: true);
        await Poll.UntilAsync(async () => (await GetAsync(bridge, "/v1/threads/t-auth", reader)).Status == HttpStatusCode.OK, Deadline, "a read-only credential reads the thread");
        var agent = BridgeTokens.Create(key, "agent", [], [], TimeSpan.FromHours(1));
        Assert.Equal(HttpStatusCode.Forbidden, (await GetAsync(bridge, "/v1/threads", agent)).Status);
    }
}
