using System.Diagnostics;
using Google.Protobuf;
using Grpc.Net.Client;
using Loom.Bridge;
using Loom.Protocol.V1;
using Loom.Sdk;
using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace Loom.Dashboard.Tests;

/// <summary>
/// A bounded version of <c>loom bench dashboard</c>: a bridge of its own with 250 agents, each
/// subscribed to one of 250 topics, and a publisher spreading events over them while the page goes
/// through the overview, topology, topics and the live tail. The bridge cuts what it sends (200
/// agent rows and counts, the busiest topology nodes with "(N more …)" nodes, the busiest topics),
/// the page stays responsive (a click on a tab shows its view within a deadline) and no task blocks
/// its main thread for long. Thresholds are generous: the machine is shared.
/// </summary>
[Collection("dashboard")]
public sealed class DashboardScaleTests(DashboardFixture f)
{
    private const int Agents = 250;
    private const int Topics = 250;
    private static readonly TimeSpan ClickDeadline = TimeSpan.FromSeconds(5);
    private const double LongestTaskMs = 1500;

    [Fact]
    public async Task With_250_agents_and_steady_traffic_the_bridge_cuts_the_views_and_the_page_stays_responsive()
    {
        await using var bridge = await DashboardFixture.StartBridgeAsync(new BridgeOptions { GrpcPort = 0, HttpPort = 0, ShutdownTimeout = TimeSpan.FromSeconds(2) });
        // Agents hosted together share one HTTP/2 connection (LoomConnectionOptions.Channel).
        using var channel = GrpcChannel.ForAddress(bridge.GrpcAddress, LoomConnection.CreateChannelOptions());
        var agents = new LoomConnection[Agents];
        using var stop = new CancellationTokenSource();
        Task? publishing = null;
        try
        {
            using (var connecting = new CancellationTokenSource(TimeSpan.FromMinutes(3)))
            {
                var next = -1;
                await Task.WhenAll(Enumerable.Range(0, 16).Select(async _ =>
                {
                    int i;
                    while ((i = Interlocked.Increment(ref next)) < Agents)
                    {
                        var id = $"scale-agent-{i:D4}";
                        agents[i] = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { AgentId = id, Name = id, Channel = channel }, cancellationToken: connecting.Token);
                        await agents[i].SubscribeAsync($"scale.t{i % Topics}", (_, _) => Task.CompletedTask, cancellationToken: connecting.Token);
                    }
                }));
            }

            publishing = Task.Run(() => PublishAsync(agents[0], stop.Token));
            var page = await f.NewPageAsync();
            await page.Context.AddInitScriptAsync("""
                window.__loomLong = [];
                new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__loomLong.push(e.duration); }).observe({ type: 'longtask', buffered: true });
                """);
            await page.GotoAsync(bridge.HttpAddress.ToString());
            await Expect(page.GetByTestId("tile-agents").Locator(".value")).ToHaveTextAsync(Agents.ToString(System.Globalization.CultureInfo.InvariantCulture), new() { Timeout = 60_000 });

            // The overview carries 200 rows and counts the rest; the table renders the rows in its
            // scroll box only; a search runs on the bridge.
            await Expect(page.GetByTestId("agents-more")).ToContainTextAsync("50 more agents not shown");
            await Expect(page.Locator("[data-testid=agent-row][data-agent=scale-agent-0000]")).ToHaveCountAsync(1);
            Assert.InRange(await page.GetByTestId("agent-row").CountAsync(), 10, 60);
            await page.GetByTestId("agent-filter").FillAsync("agent-0249");
            await Expect(page.GetByTestId("agent-row")).ToHaveCountAsync(1);
            await Expect(page.Locator("[data-testid=agent-row][data-agent=scale-agent-0249]")).ToHaveCountAsync(1);
            await DashboardFixture.ScreenshotAsync(page, "scale-overview");

            foreach (var (view, testId) in new[] { ("topology", "view-topology"), ("topics", "view-topics"), ("events", "view-events"), ("overview", "view-overview") })
            {
                var clicked = Stopwatch.StartNew();
                await page.GetByTestId("nav-" + view).ClickAsync();
                await page.GetByTestId(testId).WaitForAsync(new LocatorWaitForOptions { State = WaitForSelectorState.Visible, Timeout = (float)ClickDeadline.TotalMilliseconds });
                Assert.True(clicked.Elapsed < ClickDeadline, $"the {view} tab took {clicked.Elapsed.TotalMilliseconds:0} ms to show its view");
                switch (view)
                {
                    case "topology":
                        // The busiest 20 topics, the other 230 folded into one node.
                        await Expect(page.Locator("[data-testid=flow-events] [data-testid=flow-node][data-node^='(']").First).ToBeAttachedAsync(new() { Timeout = 30_000 });
                        Assert.True(await page.Locator("[data-testid=flow-events] [data-testid=flow-node]").CountAsync() <= (3 * 21) + 2);
                        break;
                    case "topics":
                        await Expect(page.GetByTestId("topics-more")).ToContainTextAsync("The 100 busiest of", new() { Timeout = 30_000 });
                        Assert.Equal(100, await page.GetByTestId("topic-row").CountAsync());
                        break;
                    case "events":
                        await Expect(page.GetByTestId("event-row").First).ToBeAttachedAsync(new() { Timeout = 30_000 });
                        break;
                }

                await Task.Delay(TimeSpan.FromSeconds(2));
                await DashboardFixture.ScreenshotAsync(page, "scale-" + view);
            }

            var longTasks = await page.EvaluateAsync<double[]>("() => window.__loomLong");
            var longest = longTasks.DefaultIfEmpty(0).Max();
            await File.AppendAllTextAsync(Path.Combine(DashboardFixture.Artifacts, "scale.txt"), $"{DateTimeOffset.UtcNow:O} {Agents} agents: {longTasks.Length} long tasks, longest {longest:0} ms\n");
            Assert.True(longest < LongestTaskMs, $"a task blocked the page for {longest:0} ms ({longTasks.Length} long tasks: {string.Join(", ", longTasks.Select(t => t.ToString("0", System.Globalization.CultureInfo.InvariantCulture)))})");
        }
        finally
        {
            await stop.CancelAsync();
            if (publishing is not null)
            {
                await publishing;
            }

            await Task.WhenAll(agents.Where(a => a is not null).Select(a => a.DisposeAsync().AsTask()));
        }
    }

    /// <summary>About 2,000 events a second, round-robin over the topics, until stopped.</summary>
    private static async Task PublishAsync(LoomConnection publisher, CancellationToken stop)
    {
        var payload = ByteString.CopyFromUtf8("{\"n\":1}");
        var n = 0;
        while (!stop.IsCancellationRequested)
        {
            try
            {
                for (var i = 0; i < 20; i++)
                {
                    await publisher.PublishAsync(new Envelope { Topic = $"scale.t{n++ % Topics}", Payload = payload, ContentType = "application/json", Qos = QosClass.Batch }, stop);
                }

                await Task.Delay(10, stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
