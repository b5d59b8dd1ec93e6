using System.Text.Json;
using Google.Protobuf;
using Loom.Protocol.V1;
using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace Loom.Dashboard.Tests;

/// <summary>The dashboard's views in chromium, against the fixture's bridge and real agents; a screenshot of each view under .loom/test-logs/dashboard/.</summary>
[Collection("dashboard")]
public sealed class DashboardTests(DashboardFixture f)
{
    [Fact]
    public async Task The_trio_shows_its_three_agents_and_its_thread_as_swimlanes_with_the_plan_the_research_calls_and_the_report()
    {
        var page = await f.NewPageAsync();
        await page.GotoAsync(f.Url);
        await Expect(page.GetByTestId("stream-state")).ToHaveTextAsync("live");

        var reports = Directory.CreateTempSubdirectory("loom-dash-trio-").FullName;
        var env = new Dictionary<string, string> { ["TRIO_REPORT_DIR"] = reports, ["OPENAI_API_KEY"] = "", ["ANTHROPIC_API_KEY"] = "", ["LOOM_LLM_PROVIDER"] = "" };
        var trio = DashboardFixture.RunLoomAsync(TimeSpan.FromMinutes(10), env, "run", "examples/trio", "--url", f.Bridge.GrpcAddress.ToString().TrimEnd('/'), "--http-url", f.Url.TrimEnd('/'));

        // The trio's run ends first (its output is the failure message if it did not work); its
        // three agents stay listed, as gone, for minutes after they left.
        var (code, output) = await trio;
        Assert.True(code == 0, output);
        foreach (var name in new[] { "planner", "researcher", "writer" })
        {
            await Expect(page.Locator($"[data-testid=agent-row][data-agent={name}]")).ToHaveCountAsync(1, new() { Timeout = 60_000 });
        }

        await DashboardFixture.ScreenshotAsync(page, "overview");
        Directory.Delete(reports, recursive: true);

        await page.GotoAsync(f.Url + "#/threads");
        var row = page.Locator("[data-testid=thread-row]", new() { HasText = "planner" }).First;
        await Expect(row).ToBeVisibleAsync();
        await row.Locator("a").ClickAsync();
        var lanes = page.GetByTestId("swimlanes");
        await Expect(lanes).ToBeVisibleAsync();
        foreach (var name in new[] { "planner", "researcher", "writer" })
        {
            await Expect(lanes.Locator($"[data-testid=lane][data-agent*={name}]")).ToHaveCountAsync(1);
        }

        await Expect(lanes.Locator("[data-testid=mark][data-kind=plan]").First).ToBeAttachedAsync();
        await Expect(lanes.Locator("[data-testid=mark][data-kind=finding]").First).ToBeAttachedAsync();
        await Expect(lanes.Locator("[data-testid=mark][data-kind=report]").First).ToBeAttachedAsync();
        await Expect(lanes.Locator("[data-testid=mark][data-kind=call][data-capability='web.search']").First).ToBeAttachedAsync();
        await DashboardFixture.ScreenshotAsync(page, "threads");

        await page.GotoAsync(f.Url + "#/topology");
        await Expect(page.Locator("[data-testid=flow-calls] [data-node='web.search']")).ToHaveCountAsync(1);
        await Expect(page.Locator("[data-testid=flow-events] [data-testid=flow-node]").First).ToBeAttachedAsync();
        await DashboardFixture.ScreenshotAsync(page, "topology");

        await page.GotoAsync(f.Url + "#/topics");
        await Expect(page.Locator("[data-testid=topic-row]").First).ToBeVisibleAsync();
        await DashboardFixture.ScreenshotAsync(page, "topics");
    }

    [Fact]
    public async Task A_capability_called_from_its_schema_form_returns_its_result()
    {
        var page = await f.NewPageAsync();
        await page.GotoAsync(f.Url + "#/capabilities/math.add");
        var form = page.GetByTestId("call-form");
        await Expect(form).ToBeVisibleAsync();

        await page.GetByTestId("field-a").FillAsync("2");
        await page.GetByTestId("call-submit").ClickAsync();
        await Expect(page.GetByTestId("call-error")).ToContainTextAsync("b is required");

        await page.GetByTestId("field-b").FillAsync("3.5");
        await page.GetByTestId("call-submit").ClickAsync();
        await Expect(page.GetByTestId("call-result")).ToContainTextAsync("\"sum\": 5.5");
        await Expect(page.GetByTestId("call-result")).ToContainTextAsync("from calc");
        await Expect(page.Locator("[data-testid=capability-row][data-capability='math.add']")).ToContainTextAsync("calc");
        await DashboardFixture.ScreenshotAsync(page, "capabilities");
    }

    [Fact]
    public async Task The_live_tail_shows_only_what_its_filters_match_pauses_and_shows_the_envelope()
    {
        var page = await f.NewPageAsync();
        await page.GotoAsync(f.Url + "#/events");
        await page.GetByTestId("filter-topic").FillAsync("demo.keep.>");
        await page.GetByTestId("filter-apply").ClickAsync();
        await Expect(page.GetByTestId("stream-state")).ToHaveTextAsync("live");

        var rows = page.GetByTestId("event-row");
        await PublishUntilAsync(async () =>
        {
            await PublishAsync("demo.drop.one", "t-other");
            await PublishAsync("demo.keep.one", "t-keep");
        }, () => rows.CountAsync(), n => n > 0);
        Assert.Equal(0, await page.Locator("[data-testid=event-row][data-topic^='demo.drop']").CountAsync());
        Assert.Equal(await rows.CountAsync(), await page.Locator("[data-testid=event-row][data-topic='demo.keep.one']").CountAsync());

        // By thread (and agent), whatever the topic.
        await page.GetByTestId("filter-topic").FillAsync("");
        await page.GetByTestId("filter-agent").FillAsync("calc");
        await page.GetByTestId("filter-thread").FillAsync("t-other");
        await page.GetByTestId("filter-apply").ClickAsync();
        await PublishUntilAsync(() => PublishAsync("demo.drop.two", "t-other"), () => page.Locator("[data-testid=event-row][data-topic='demo.drop.two']").CountAsync(), n => n > 0);
        Assert.Equal(0, await page.Locator("[data-testid=event-row][data-topic^='demo.keep']").CountAsync());

        // The envelope's JSON, payload parsed.
        await page.Locator("[data-testid=event-row][data-topic='demo.drop.two']").First.ClickAsync();
        await Expect(page.GetByTestId("envelope-json")).ToContainTextAsync("\"thread_id\": \"t-other\"");
        await Expect(page.GetByTestId("envelope-json")).ToContainTextAsync("\"n\":");

        // Paused: new events are counted, not shown.
        await page.GetByTestId("pause").ClickAsync();
        var shown = await rows.CountAsync();
        await PublishUntilAsync(() => PublishAsync("demo.drop.three", "t-other"), () => page.GetByTestId("pause").InnerTextAsync(), t => !t.Contains("(0 new)", StringComparison.Ordinal));
        Assert.Equal(shown, await rows.CountAsync());
        await DashboardFixture.ScreenshotAsync(page, "events");
        await page.GetByTestId("pause").ClickAsync();
        await PublishUntilAsync(() => PublishAsync("demo.drop.four", "t-other"), () => page.Locator("[data-testid=event-row][data-topic='demo.drop.four']").CountAsync(), n => n > 0);
    }

    [Fact]
    public async Task The_overview_paints_and_is_interactive_quickly()
    {
        var page = await f.NewPageAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        await page.GotoAsync(f.Url);
        await Expect(page.Locator("[data-testid=agent-row][data-agent=calc]")).ToHaveCountAsync(1);
        var dataShown = clock.Elapsed.TotalMilliseconds;
        var timings = await page.EvaluateAsync<JsonElement>("""
            () => {
              const nav = performance.getEntriesByType('navigation')[0];
              const paint = Object.fromEntries(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]));
              return { first_paint_ms: paint['first-paint'] ?? -1, first_contentful_paint_ms: paint['first-contentful-paint'] ?? -1,
                       dom_interactive_ms: nav.domInteractive, dom_content_loaded_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,
                       transfer_bytes: performance.getEntriesByType('resource').reduce((s, r) => s + (r.transferSize || 0), nav.transferSize || 0) };
            }
            """);
        var record = $"{{\"at\":\"{DateTimeOffset.UtcNow:O}\",\"agents_shown_ms\":{dataShown:0},\"page\":{timings.GetRawText()}}}";
        await File.AppendAllTextAsync(Path.Combine(DashboardFixture.Artifacts, "timings.jsonl"), record + "\n");
        var fcp = timings.GetProperty("first_contentful_paint_ms").GetDouble();
        Assert.True(fcp > 0, record);
        // The goal is 2 s; the bound here is loose because the machine is shared (the figure is in docs/performance.md).
        Assert.True(fcp < 10_000, record);
    }

    [Fact]
    public async Task A_gather_on_a_thread_is_drawn_from_the_run_records_with_its_operations_as_marks()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await using var gatherer = await Loom.Sdk.LoomConnection.ConnectAsync(f.Bridge.GrpcAddress, new Loom.Sdk.LoomConnectionOptions { Name = "gatherer" }, cancellationToken: timeout.Token);
        var result = await Loom.Sdk.CollaborationExtensions.GatherAsync(gatherer, new GatherRequest
        {
            ThreadId = "t-dash-gather",
            Capability = "math.add",
            Payload = ByteString.CopyFromUtf8("{\"a\":1,\"b\":2}"),
            Strategy = JoinStrategy.All,
            TimeoutMs = 20_000,
        }, timeout.Token);
        Assert.Equal(["calc"], result.Answered);

        var page = await f.NewPageAsync();
        await page.GotoAsync(f.Url + "#/threads/t-dash-gather");
        await Expect(page.Locator("[data-testid=thread-row][data-thread=t-dash-gather]")).ToBeVisibleAsync();
        var lanes = page.GetByTestId("swimlanes");
        await Expect(lanes.Locator("[data-testid=mark][data-operation=gather][data-kind=started]")).ToHaveCountAsync(1);
        await Expect(lanes.Locator("[data-testid=mark][data-operation=gather][data-kind=completed]")).ToHaveCountAsync(1);
        await Expect(lanes.Locator("[data-testid=mark][data-kind=call][data-capability='math.add']")).ToHaveCountAsync(1);
        await Expect(lanes.Locator("[data-testid=lane][data-agent=calc]")).ToHaveCountAsync(1);
        await DashboardFixture.ScreenshotAsync(page, "threads-gather");
    }

    private async Task PublishAsync(string topic, string thread)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await f.Calc.PublishAsync(new Envelope { Topic = topic, ThreadId = thread, ContentType = "application/json", Payload = ByteString.CopyFromUtf8($"{{\"n\":{Environment.TickCount64}}}") }, timeout.Token);
    }

    /// <summary>Publishes until the page shows what is expected (a live stream may connect after the first publish).</summary>
    private static async Task PublishUntilAsync<T>(Func<Task> publish, Func<Task<T>> read, Func<T, bool> done)
    {
        await Poll.UntilAsync(async token =>
        {
            await publish();
            for (var i = 0; i < 10; i++)
            {
                if (done(await read()))
                {
                    return true;
                }

                await Task.Delay(100, token);
            }

            return false;
        }, TimeSpan.FromSeconds(30), "the page to show the published events");
    }
}
