using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Google.Protobuf;
using Loom.Bench.Soak;
using Loom.Protocol.V1;
using Microsoft.Playwright;

namespace Loom.Bench;

/// <summary>
/// The dashboard at scale: a bridge in a child process, <c>--agents</c> raw gRPC agents (default
/// 1,000; each its own HTTP/2 connection, stream and heartbeats, each subscribed to one of
/// <c>--topics</c> topics), <c>--publishers</c> of them publishing as close to <c>--rate</c>
/// events/s (default 100,000) as the machine allows, round-robin over the topics; then the
/// dashboard in Debian's chromium (Playwright, /usr/bin/chromium or LOOM_CHROMIUM). Each run has a
/// closed phase (no page: the bridge's CPU) and an open phase (the page on each of
/// <c>--views</c> in turn) with, per view: the page's main-thread busy time (CDP
/// Performance.getMetrics TaskDuration and ScriptDuration deltas), long tasks (PerformanceObserver),
/// the longest wait for the page to answer (an evaluate round trip every 250 ms), the time from a
/// click on the view's tab to the view shown, the SSE bytes/s the bridge sent, and the bridge's
/// CPU. On the overview, update latency: a marker agent registers and the time until its row is
/// on the page is measured, <c>--markers</c> times per run.
/// </summary>
internal static class DashboardBench
{
    private const string LongTaskScript = """
        window.__loomLong = [];
        new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__loomLong.push(e.duration); }).observe({ type: 'longtask', buffered: true });
        """;

    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    private static readonly Dictionary<string, string> ViewTestIds = new(StringComparer.Ordinal)
    {
        ["overview"] = "view-overview",
        ["topology"] = "view-topology",
        ["topics"] = "view-topics",
        ["capabilities"] = "view-capabilities",
        ["events"] = "view-events",
        ["threads"] = "view-threads",
    };

    public static async Task<IReadOnlyList<Figure>> RunAsync(BenchOptions options, TextWriter progress)
    {
        var agentCount = options.AgentsOr(1000);
        var rate = options.RateOr(100_000);
        var seconds = options.SecondsOr(10);
        var topics = options.Topics;
        var publishers = Math.Min(options.Publishers, agentCount);
        var views = options.Views;
        foreach (var view in views)
        {
            if (!ViewTestIds.ContainsKey(view))
            {
                throw new ArgumentException($"--views: '{view}' is not a view; use some of {string.Join(",", ViewTestIds.Keys)}.");
            }
        }

        var chromium = Environment.GetEnvironmentVariable("LOOM_CHROMIUM") is { Length: > 0 } c ? c : "/usr/bin/chromium";
        if (!File.Exists(chromium))
        {
            throw new ArgumentException($"dashboard needs chromium at {chromium}: apt-get install chromium, or set LOOM_CHROMIUM.");
        }

        var figures = new Dictionary<(string Measure, string Unit), List<double>>();
        void Add(string measure, string unit, double value) => (figures.TryGetValue((measure, unit), out var list) ? list : figures[(measure, unit)] = []).Add(value);

        await using var bridge = options.Url is null ? await BridgeProcess.StartAsync() : null;
        var grpc = bridge?.GrpcUrl ?? options.Url!;
        var http = bridge?.HttpUrl ?? options.HttpUrl ?? throw new ArgumentException("dashboard with --url needs --http-url for the page.");
        var tally = new Tally();
        var sessions = new RawSession[agentCount];
        using var stop = new CancellationTokenSource();
        var load = new List<Task>();
        try
        {
            var watch = Stopwatch.StartNew();
            var next = -1;
            await Task.WhenAll(Enumerable.Range(0, 32).Select(async _ =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < agentCount)
                {
                    var index = i;
                    var id = string.Create(CultureInfo.InvariantCulture, $"dash-agent-{index:D5}");
                    var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "loom-bench/raw", HeartbeatIntervalMs = 5000 };
                    request.Subscriptions.Add(new Subscription { Pattern = string.Create(CultureInfo.InvariantCulture, $"load.t{index % topics}"), Qos = QosClass.Batch });
                    request.Metadata["language"] = "dotnet";
                    sessions[index] = new RawSession(grpc, id, () => request, read: true, tally);
                    for (var attempt = 1; ; attempt++)
                    {
                        try
                        {
                            await sessions[index].EnsureOpenAsync(stop.Token);
                            break;
                        }
                        catch (Grpc.Core.RpcException ex) when (attempt < 5 && ex.StatusCode is Grpc.Core.StatusCode.DeadlineExceeded or Grpc.Core.StatusCode.Unavailable)
                        {
                            tally.Add("connect/retried");
                        }
                    }
                }
            }));
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"dashboard: {agentCount:N0} agents connected in {watch.Elapsed.TotalSeconds:N1} s; publishing at up to {rate:N0} events/s from {publishers} of them over {topics:N0} topics"));

            var perPublisher = Math.Max(1, rate / publishers);
            for (var p = 0; p < publishers; p++)
            {
                var session = sessions[p];
                var first = p;
                load.Add(Task.Run(() => PublishAsync(session, first, perPublisher, topics, options.PayloadBytes, publishers, stop.Token)));
            }

            await Task.Delay(TimeSpan.FromSeconds(3));
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = chromium,
                Headless = true,
                Args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
                Timeout = 120_000,
            });
            var markers = 0;
            for (var run = 0; run < options.RunsOr(3); run++)
            {
                // Closed: the bridge's CPU and the achieved rate with no page.
                var closed = await SampleBridgeAsync(bridge, http, seconds);
                Add("bridge CPU, page closed", "% of a core", closed.CpuPercent);
                Add("events published, page closed", "events/s", closed.EventsPerSecond);
                Add("deliveries, page closed", "deliveries/s", closed.DeliveriesPerSecond);
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run + 1} closed: {closed.EventsPerSecond:N0} events/s, {closed.DeliveriesPerSecond:N0} deliveries/s, bridge {closed.CpuPercent:N0}% of a core"));

                var context = await browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1400, Height = 900 } });
                await context.AddInitScriptAsync(LongTaskScript);
                var page = await context.NewPageAsync();
                page.SetDefaultTimeout(60_000);
                var cdp = await context.NewCDPSessionAsync(page);
                await cdp.SendAsync("Performance.enable");
                var opened = Stopwatch.StartNew();
                await page.GotoAsync(http + "#/overview");
                await page.WaitForFunctionAsync(
                    "n => Number((document.querySelector('[data-testid=tile-agents] .value')?.textContent ?? '0').replace(/[^0-9]/g, '')) >= n",
                    // 90 %: on a loaded machine some raw agents miss heartbeats and are expired (and re-register).
                    (int)(agentCount * 0.9),
                    new PageWaitForFunctionOptions { Timeout = 120_000, PollingInterval = 100 });
                Add("page open to all agents shown", "ms", opened.Elapsed.TotalMilliseconds);
                await Task.Delay(TimeSpan.FromSeconds(3));

                foreach (var view in views)
                {
                    var clicked = Stopwatch.StartNew();
                    await page.GetByTestId("nav-" + view).ClickAsync();
                    await page.GetByTestId(ViewTestIds[view]).WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Visible });
                    await page.WaitForFunctionAsync("() => !document.body.innerText.includes('Loading…')", null, new PageWaitForFunctionOptions { Timeout = 60_000, PollingInterval = 50 });
                    var clickMs = clicked.Elapsed.TotalMilliseconds;
                    await Task.Delay(TimeSpan.FromSeconds(2));
                    await page.EvaluateAsync<double[]>("() => { const a = window.__loomLong; window.__loomLong = []; return a; }");
                    var before = await MetricsAsync(cdp);
                    var bridgeTask = SampleBridgeAsync(bridge, http, seconds);
                    var wall = Stopwatch.StartNew();
                    var worstAnswer = 0.0;
                    var latencies = new List<double>();
                    while (wall.Elapsed < TimeSpan.FromSeconds(seconds))
                    {
                        if (view == "overview" && latencies.Count < options.Markers && wall.Elapsed > TimeSpan.FromSeconds(latencies.Count * seconds / (double)options.Markers))
                        {
                            latencies.Add(await MarkerLatencyAsync(page, grpc, markers++, tally));
                            continue;
                        }

                        var answer = Stopwatch.StartNew();
                        await page.EvaluateAsync<int>("() => 1");
                        worstAnswer = Math.Max(worstAnswer, answer.Elapsed.TotalMilliseconds);
                        await Task.Delay(250);
                    }

                    var elapsed = wall.Elapsed.TotalSeconds;
                    var after = await MetricsAsync(cdp);
                    var longTasks = await page.EvaluateAsync<double[]>("() => { const a = window.__loomLong; window.__loomLong = []; return a; }");
                    var open = await bridgeTask;
                    var cpu = (after.Task - before.Task) / elapsed * 100;
                    var script = (after.Script - before.Script) / elapsed * 1000;
                    Add($"{view}: page main thread busy", "% of a core", cpu);
                    Add($"{view}: page script", "ms/s", script);
                    Add($"{view}: page style and layout", "ms/s", (after.Layout - before.Layout) / elapsed * 1000);
                    Add($"{view}: long tasks > 50 ms", "per min", longTasks.Length / elapsed * 60);
                    Add($"{view}: longest task", "ms", longTasks.DefaultIfEmpty(0).Max());
                    Add($"{view}: slowest answer to an evaluate", "ms", worstAnswer);
                    Add($"{view}: click on its tab to the view shown", "ms", clickMs);
                    Add($"{view}: JS heap used", "MB", after.Heap / 1048576);
                    Add($"{view}: SSE sent by the bridge", "KB/s", open.StreamBytesPerSecond / 1024);
                    Add($"{view}: bridge CPU, page open", "% of a core", open.CpuPercent);
                    Add($"{view}: events published, page open", "events/s", open.EventsPerSecond);
                    foreach (var l in latencies)
                    {
                        Add("overview: update latency (agent registered to its row on the page)", "ms", l);
                    }

                    var latencyText = latencies.Count > 0 ? ", update latency " + string.Join(" ", latencies.Select(l => l.ToString("N0", CultureInfo.InvariantCulture))) + " ms" : "";
                    progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"run {run + 1} {view}: page {cpu:N1}% busy ({script:N0} ms/s script), {longTasks.Length} long tasks (longest {longTasks.DefaultIfEmpty(0).Max():N0} ms), answer <= {worstAnswer:N0} ms, click {clickMs:N0} ms, heap {after.Heap / 1048576:N1} MB, SSE {open.StreamBytesPerSecond / 1024:N1} KB/s, bridge {open.CpuPercent:N0}%, {open.EventsPerSecond:N0} events/s{latencyText}"));
                }

                await context.CloseAsync();
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load.Select(t => t.ContinueWith(static _ => { }, TaskScheduler.Default)));
            await Task.WhenAll(sessions.Where(s => s is not null).Select(s => s.DisposeAsync().AsTask()));
        }

        var problems = tally.Snapshot().Where(kv => !kv.Key.EndsWith("/stream_opened", StringComparison.Ordinal)).ToList();
        if (problems.Count > 0)
        {
            progress.WriteLine("dashboard: stream ends and errors during the run: " + string.Join(", ", problems.Select(kv => $"{kv.Key}={kv.Value}")));
        }

        var setting = string.Create(CultureInfo.InvariantCulture, $"{agentCount:N0} agents, target {rate:N0} events/s over {topics:N0} topics");
        return figures.Select(kv => Figure.Of("dashboard", kv.Key.Measure, kv.Key.Unit, kv.Value, setting)).ToList();
    }

    /// <summary>Publishes frames of 100 envelopes at <paramref name="rate"/> a second on topics first, first+step, ... (mod topics).</summary>
    private static async Task PublishAsync(RawSession session, int first, int rate, int topics, int payloadBytes, int step, CancellationToken stop)
    {
        const int Batch = 100;
        var payload = ByteString.CopyFrom(new byte[payloadBytes]);
        var topicNames = Enumerable.Range(0, topics).Select(t => string.Create(CultureInfo.InvariantCulture, $"load.t{t}")).ToArray();
        var topic = first % topics;
        var origin = Stopwatch.GetTimestamp();
        long sent = 0;
        while (!stop.IsCancellationRequested)
        {
            var due = (long)(Stopwatch.GetElapsedTime(origin).TotalSeconds * rate);
            if (due - sent > rate)
            {
                // More than a second behind (the bridge held it): a fresh schedule, not a burst.
                origin = Stopwatch.GetTimestamp();
                sent = 0;
                due = 0;
            }

            if (sent >= due)
            {
                await Task.Delay(1, CancellationToken.None);
                continue;
            }

            var messages = new ClientMessage[Batch];
            for (var i = 0; i < Batch; i++)
            {
                messages[i] = new ClientMessage { Publish = new Envelope { Topic = topicNames[topic], Payload = payload, Qos = QosClass.Batch } };
                topic = (topic + step) % topics;
            }

            try
            {
                await session.SendAsync(stop, messages);
            }
            catch (Exception) when (!stop.IsCancellationRequested)
            {
                await Task.Delay(100, CancellationToken.None);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            sent += Batch;
        }
    }

    /// <summary>Registers a marker agent (its id sorts first) and waits for its row on the page: ms.</summary>
    private static async Task<double> MarkerLatencyAsync(IPage page, Uri grpc, int n, Tally tally)
    {
        var id = string.Create(CultureInfo.InvariantCulture, $"0-marker-{n:D3}");
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "loom-bench/raw", HeartbeatIntervalMs = 5000 };
        await using var marker = new RawSession(grpc, id, () => request, read: true, tally);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await marker.EnsureOpenAsync(timeout.Token);
        var registered = Stopwatch.StartNew();
        await page.Locator($"[data-testid=agent-row][data-agent='{id}']").WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Attached, Timeout = 60_000 });
        return registered.Elapsed.TotalMilliseconds;
    }

    private readonly record struct PageMetrics(double Task, double Script, double Heap, double Layout);

    private static async Task<PageMetrics> MetricsAsync(ICDPSession cdp)
    {
        var result = await cdp.SendAsync("Performance.getMetrics");
        double task = 0, script = 0, heap = 0, layout = 0;
        foreach (var metric in result!.Value.GetProperty("metrics").EnumerateArray())
        {
            var value = metric.GetProperty("value").GetDouble();
            switch (metric.GetProperty("name").GetString())
            {
                case "TaskDuration":
                    task = value;
                    break;
                case "ScriptDuration":
                    script = value;
                    break;
                case "LayoutDuration" or "RecalcStyleDuration":
                    layout += value;
                    break;
                case "JSHeapUsedSize":
                    heap = value;
                    break;
            }
        }

        return new PageMetrics(task, script, heap, layout);
    }

    private readonly record struct BridgeSample(double CpuPercent, double EventsPerSecond, double DeliveriesPerSecond, double StreamBytesPerSecond);

    /// <summary>The bridge's CPU (from /proc, when it is the bench's child), events and deliveries, and SSE bytes over <paramref name="seconds"/>.</summary>
    private static async Task<BridgeSample> SampleBridgeAsync(BridgeProcess? bridge, Uri http, int seconds)
    {
        var cpu0 = bridge is null ? 0 : CpuSeconds(bridge.ProcessId);
        var o0 = await OverviewAsync(http);
        var wall = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        var cpu1 = bridge is null ? 0 : CpuSeconds(bridge.ProcessId);
        var o1 = await OverviewAsync(http);
        var elapsed = wall.Elapsed.TotalSeconds;
        return new BridgeSample(
            bridge is null ? double.NaN : (cpu1 - cpu0) / elapsed * 100,
            (o1.Events - o0.Events) / elapsed,
            (o1.Delivered - o0.Delivered) / elapsed,
            (o1.StreamBytes - o0.StreamBytes) / elapsed);
    }

    private readonly record struct OverviewTotals(double Events, double Delivered, double StreamBytes);

    private static async Task<OverviewTotals> OverviewAsync(Uri http)
    {
        using var doc = JsonDocument.Parse(await Http.GetStringAsync(new Uri(http, "/v1/overview")));
        var root = doc.RootElement;
        var feed = root.GetProperty("feed");
        return new OverviewTotals(root.GetProperty("events_total").GetDouble(), root.GetProperty("delivered_total").GetDouble(),
            feed.TryGetProperty("stream_bytes", out var b) ? b.GetDouble() : double.NaN);
    }

    /// <summary>User + system CPU seconds of a process, from /proc/PID/stat.</summary>
    private static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // After "pid (comm) ": state is field 0, utime field 11, stime field 12 (clock ticks, 100 a second on Linux).
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }
}
