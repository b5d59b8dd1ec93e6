using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Loom.Bridge;
using Loom.Bridge.Internal.Metrics;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Xunit;

namespace Loom.Observability.Tests;

public sealed partial class MetricsTests : IAsyncLifetime
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private LoomBridge _bridge = null!;

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(
            new BridgeOptions { GrpcPort = 0, HttpPort = 0, EventBus = new EventBusOptions { MetricTopicGroups = ["orders.*.created"] } },
            _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    private Task<string> ScrapeAsync() => Http.GetStringAsync(new Uri(_bridge.HttpAddress, "/metrics"));

    /// <summary>Traffic through real connections: 10 orders, 10 thread replies with distinct thread ids, 5 calls and 1 bad call.</summary>
    private async Task<(RunningAgent Provider, RunningAgent Caller, LoomConnection Subscriber, LoomConnection Publisher)> GenerateTrafficAsync()
    {
        var provider = await LoomAgentHost.StartAsync(new EchoAgent(), _bridge.GrpcAddress);
        var caller = await LoomAgentHost.StartAsync(new CallerAgent(), _bridge.GrpcAddress);
        var subscriber = await LoomConnection.ConnectAsync(_bridge.GrpcAddress, new LoomConnectionOptions { Name = "sub" });
        var publisher = await LoomConnection.ConnectAsync(_bridge.GrpcAddress, new LoomConnectionOptions { Name = "pub" });
        var received = 0;
        await subscriber.SubscribeAsync("orders.>", (_, _) => { Interlocked.Increment(ref received); return Task.CompletedTask; });
        await subscriber.SubscribeAsync("thread.*.reply", (_, _) => { Interlocked.Increment(ref received); return Task.CompletedTask; });
        for (var i = 0; i < 10; i++)
        {
            await publisher.PublishAsync(new Envelope { Topic = "orders.eu.created", Payload = ByteString.CopyFromUtf8("{}") });
            await publisher.PublishAsync(new Envelope { Topic = $"thread.t{i}x.reply", ThreadId = $"t{i}x", Payload = ByteString.CopyFromUtf8("{}") });
        }

        for (var i = 0; i < 5; i++)
        {
            var output = await caller.Context.InvokeAsync<EchoOutput>("obs.echo", new EchoInput("hi"), TimeSpan.FromSeconds(10));
            Assert.Equal("hi", output!.Text);
        }

        await Assert.ThrowsAsync<InvalidParamsException>(() => caller.Context.InvokeAsync<EchoOutput>("obs.echo", new { Nope = 1 }, TimeSpan.FromSeconds(10)));

        // One collaboration operation through the bridge: a barrier of one that arrives and completes.
        var barrier = await caller.Context.BarrierAsync(new Loom.Protocol.V1.BarrierRequest { BarrierId = "obs-b", Count = 1, TimeoutMs = 10_000 });
        Assert.Equal(Loom.Protocol.V1.CollabOutcome.Completed, barrier.Outcome);

        // And one reply to an operation that does not exist: counted as late.
        await publisher.PublishAsync(new Envelope { Topic = "_loom.reply.no-such-op", Payload = ByteString.CopyFromUtf8("{}") });
        await Poll.UntilAsync(async () => (await ScrapeAsync()).Contains("loom_collab_replies_dropped_total{reason=\"late\"} 1\n", StringComparison.Ordinal), TimeSpan.FromSeconds(10), "the late reply counted");
        await Poll.UntilAsync(() => Volatile.Read(ref received) == 20, TimeSpan.FromSeconds(20), "20 deliveries");
        return (provider, caller, subscriber, publisher);
    }

    [Fact]
    public async Task Exposition_passes_promtool_and_a_real_prometheus_scrapes_every_family()
    {
        var (provider, caller, subscriber, publisher) = await GenerateTrafficAsync();
        await using var p1 = provider;
        await using var p2 = caller;
        await using var p3 = subscriber;
        await using var p4 = publisher;

        using var response = await Http.GetAsync(new Uri(_bridge.HttpAddress, "/metrics"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        var text = await response.Content.ReadAsStringAsync();
        if (Environment.GetEnvironmentVariable("LOOM_TEST_DUMP_METRICS") is { Length: > 0 } dump)
        {
            await File.WriteAllTextAsync(dump, text);
        }

        // Families, HELP and TYPE lines, bounded labels.
        Assert.Contains("# TYPE loom_events_published_total counter\n", text, StringComparison.Ordinal);
        Assert.Matches("# HELP loom_events_published_total .+\n", text);
        Assert.Contains("loom_events_published_total{qos=\"normal\",topic_group=\"orders.*.created\"} 10\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_events_published_total{qos=\"normal\",topic_group=\"thread.>\"} 10\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_events_delivered_total{pattern=\"thread.>\",qos=\"normal\"} 10\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_events_delivered_total{pattern=\"orders.>\",qos=\"normal\"} 10\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("t3x", text, StringComparison.Ordinal); // no raw topic or thread id in any label
        Assert.Contains("# TYPE loom_action_call_duration_seconds histogram\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_action_call_duration_seconds_bucket{capability=\"obs.echo\",outcome=\"ok\",le=\"+Inf\"} 5\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_action_call_duration_seconds_count{capability=\"obs.echo\",outcome=\"ok\"} 5\n", text, StringComparison.Ordinal);
        Assert.Matches(@"loom_action_call_duration_seconds_sum\{capability=""obs.echo"",outcome=""ok""\} [0-9.e-]+\n", text);
        Assert.Contains("loom_action_calls_total{capability=\"obs.echo\",outcome=\"invalid_params\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_agents_connected 4\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_sessions{state=\"connected\"} 4\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_registrations_total{result=\"new\"} 4\n", text, StringComparison.Ordinal);
        Assert.Matches(@"loom_grpc_received_bytes_total\{method=""/loom.v1.Bridge/EventStream""\} [1-9][0-9]*\n", text);
        Assert.Matches(@"loom_grpc_sent_bytes_total\{method=""/loom.v1.Bridge/EventStream""\} [1-9][0-9]*\n", text);
        Assert.Matches(@"process_cpu_seconds_total [0-9.e-]+\n", text);
        Assert.Matches(@"process_resident_memory_bytes [1-9][0-9]*\n", text);
        Assert.Matches(@"dotnet_gc_collections_total\{gc_heap_generation=""gen0""\} [0-9]+\n", text);
        Assert.Matches(@"dotnet_thread_pool_thread_count(_total)? [0-9]+\n", text);
        Assert.Contains("loom_subscription_queue_depth{pattern=\"orders.>\",qos=\"normal\"} 0\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_collab_operations_total 1\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_collab_in_flight 0\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_collab_replies_dropped_total{reason=\"late\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_collab_replies_dropped_total{reason=\"duplicate\"} 0\n", text, StringComparison.Ordinal);

        // Histogram buckets are cumulative and end at _count.
        var buckets = BucketRegex().Matches(text).Select(m => long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
        Assert.True(buckets.Count > 2);
        Assert.Equal(buckets.Order(), buckets);

        var check = await ExternalProcess.RunAsync(ExternalProcess.Promtool, "check metrics", text, TimeSpan.FromSeconds(30));
        Assert.True(check.ExitCode == 0, $"promtool check metrics failed ({check.ExitCode}):\n{check.Output}");

        // A real Prometheus scrapes the bridge; its HTTP API must return the series.
        await using var prometheus = PrometheusServer.Start(_bridge.HttpAddress);
        async Task<JsonElement[]> QueryAsync(string query)
        {
            try
            {
                var json = await Http.GetStringAsync(new Uri(prometheus.Address, "/api/v1/query?query=" + Uri.EscapeDataString(query)));
                using var document = JsonDocument.Parse(json);
                return document.RootElement.GetProperty("data").GetProperty("result").EnumerateArray().Select(e => e.Clone()).ToArray();
            }
            catch (HttpRequestException)
            {
                Assert.False(prometheus.HasExited, "prometheus exited:\n" + prometheus.Log);
                return []; // not listening yet
            }
        }

        static string Value(JsonElement sample) => sample.GetProperty("value")[1].GetString()!;

        await Poll.UntilAsync(async () => (await QueryAsync("up{job=\"loom\"}")) is [var up] && Value(up) == "1", TimeSpan.FromSeconds(60), "prometheus scrapes the bridge (up == 1)");
        var published = await QueryAsync("loom_events_published_total{topic_group=\"orders.*.created\"}");
        Assert.Equal("10", Value(Assert.Single(published)));
        Assert.Equal("normal", published[0].GetProperty("metric").GetProperty("qos").GetString());
        var count = await QueryAsync("loom_action_call_duration_seconds_count{capability=\"obs.echo\",outcome=\"ok\"}");
        Assert.Equal("5", Value(Assert.Single(count)));
        var p50 = await QueryAsync("histogram_quantile(0.5, loom_action_call_duration_seconds_bucket{capability=\"obs.echo\",outcome=\"ok\"})");
        Assert.True(double.Parse(Value(Assert.Single(p50)), CultureInfo.InvariantCulture) > 0);
        Assert.Equal("4", Value(Assert.Single(await QueryAsync("loom_agents_connected"))));
        Assert.NotEmpty(await QueryAsync("dotnet_gc_collections_total"));
        Assert.NotEmpty(await QueryAsync("loom_grpc_sent_bytes_total"));
        Assert.Empty(await QueryAsync("{__name__=~\"loom_.*\",topic_group=~\".*t3x.*\"}"));
    }

    [Fact]
    public async Task Drops_are_counted_by_pattern_qos_and_reason_and_survive_unsubscribe()
    {
        var subscription = _bridge.Bus.Subscribe("drops.>", new SubscriptionOptions(QosClass.Normal, OverflowPolicy.DropNewest, QueueCapacity: 4));
        for (var i = 0; i < 10; i++)
        {
            await _bridge.Bus.PublishAsync(new Envelope { Topic = "drops.x" + i.ToString(CultureInfo.InvariantCulture) });
        }

        const string Dropped = "loom_events_dropped_total{pattern=\"drops.>\",qos=\"normal\",reason=\"queue_full_drop_newest\"} 6\n";
        var text = await ScrapeAsync();
        Assert.Contains(Dropped, text, StringComparison.Ordinal);
        Assert.Contains("loom_subscription_queue_depth{pattern=\"drops.>\",qos=\"normal\"} 4\n", text, StringComparison.Ordinal);
        Assert.Contains("loom_events_published_total{qos=\"normal\",topic_group=\"drops.>\"} 10\n", text, StringComparison.Ordinal);

        Assert.True(subscription.TryRead(out _));
        subscription.Dispose();
        await Poll.UntilAsync(async () => (await ScrapeAsync()).Contains(Dropped, StringComparison.Ordinal), TimeSpan.FromSeconds(5), "drops kept after unsubscribe");
        text = await ScrapeAsync();
        Assert.Contains("loom_events_delivered_total{pattern=\"drops.>\",qos=\"normal\"} 1\n", text, StringComparison.Ordinal);

        // Publish-time refusals (hop limit) are counted apart.
        await _bridge.Bus.PublishAsync(new Envelope { Topic = "drops.loop", HopCount = 100 });
        await Poll.UntilAsync(async () => (await ScrapeAsync()).Contains("loom_events_refused_total{reason=\"hop_limit\",topic_group=\"drops.>\"} 1\n", StringComparison.Ordinal), TimeSpan.FromSeconds(5), "hop-limit refusal counted");
    }

    [Fact]
    public async Task Topic_groups_are_bounded()
    {
        var groups = new TopicGroups(["a.*.b"], maxGroups: 3);
        Assert.Equal("a.*.b", groups.GroupOf("a.x.b"));
        Assert.Equal("a.>", groups.GroupOf("a.x.c"));
        Assert.Equal("_inbox.>", groups.GroupOf("_inbox.agent-1.>"));
        Assert.Equal("single", groups.GroupOf("single"));
        Assert.Equal(TopicGroups.Other, groups.GroupOf("z.y"));
        Assert.Equal("a.>", groups.GroupOf("a.q"));

        // 1,000 first tokens through a bridge: at most 64 groups, the rest in (other).
        for (var i = 0; i < 1000; i++)
        {
            await _bridge.Bus.PublishAsync(new Envelope { Topic = "k" + i.ToString(CultureInfo.InvariantCulture) + ".x" });
        }

        var text = await ScrapeAsync();
        var series = text.Split('\n').Count(l => l.StartsWith("loom_events_no_subscribers_total{", StringComparison.Ordinal));
        Assert.InRange(series, 1, 65);
        Assert.Contains("loom_events_no_subscribers_total{topic_group=\"(other)\"}", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Label_values_and_help_are_escaped_for_promtool()
    {
        using var meter = new Meter("Loom.Test.Escaping");
        using var exporter = new MetricsExporter(i => ReferenceEquals(i.Meter, meter));
        var counter = meter.CreateCounter<long>("test.odd", "{thing}", "Help with a backslash \\ and a\nnew line.");
        counter.Add(3, new KeyValuePair<string, object?>("value", "quote \" backslash \\ newline \n end"), new KeyValuePair<string, object?>("bad-name.x", "ok"));
        var histogram = meter.CreateHistogram<double>("test.latency", "s", "Latency.");
        histogram.Record(0.003);
        histogram.Record(42);
        var text = await ExpositionAsync(exporter);
        Assert.Contains("# HELP test_odd_total Help with a backslash \\\\ and a\\nnew line. (unit {thing})\n", text, StringComparison.Ordinal);
        Assert.Contains("test_odd_total{bad_name_x=\"ok\",value=\"quote \\\" backslash \\\\ newline \\n end\"} 3\n", text, StringComparison.Ordinal);
        Assert.Contains("test_latency_seconds_bucket{le=\"5\"} 1\n", text, StringComparison.Ordinal);
        Assert.Contains("test_latency_seconds_bucket{le=\"+Inf\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("test_latency_seconds_count 2\n", text, StringComparison.Ordinal);
        Assert.Contains("test_latency_seconds_sum 42.003\n", text, StringComparison.Ordinal);
        var check = await ExternalProcess.RunAsync(ExternalProcess.Promtool, "check metrics", text, TimeSpan.FromSeconds(30));
        Assert.True(check.ExitCode == 0, $"promtool check metrics failed ({check.ExitCode}):\n{check.Output}\n{text}");
    }

    [Fact]
    public async Task Names_follow_prometheus_conventions()
    {
        Assert.Equal("loom_events_published_total", MetricsExporter.MetricName("loom.events.published", "{event}", counter: true));
        Assert.Equal("dotnet_process_cpu_time_seconds_total", MetricsExporter.MetricName("dotnet.process.cpu.time", "s", counter: true));
        Assert.Equal("loom_gc_heap_bytes", MetricsExporter.MetricName("loom.gc.heap", "By", counter: false));
        Assert.Equal("_9lives", MetricsExporter.SanitizeName("9lives", label: false));
        Assert.Equal("a_b_c", MetricsExporter.SanitizeName("a-b c", label: true));

        // Values are formatted by prometheus-net: read them from an exposition. +Inf is "+Inf" as a bucket bound; as a
        // sample value prometheus-net writes "Infinity", which Go's ParseFloat (Prometheus, promtool) reads as +Inf.
        using var meter = new Meter("Loom.Test.Values");
        using var exporter = new MetricsExporter(i => ReferenceEquals(i.Meter, meter));
        meter.CreateObservableGauge("test.inf", () => double.PositiveInfinity);
        meter.CreateObservableGauge("test.quarter", () => 0.25);
        meter.CreateHistogram<double>("test.spread").Record(1);
        var text = await ExpositionAsync(exporter);
        Assert.Contains("test_spread_bucket{le=\"+Inf\"} 1\n", text, StringComparison.Ordinal);
        Assert.Matches(@"\ntest_inf (\+Inf|Infinity)\n", text);
        Assert.Contains("\ntest_quarter 0.25\n", text, StringComparison.Ordinal);
        var check = await ExternalProcess.RunAsync(ExternalProcess.Promtool, "check metrics", text, TimeSpan.FromSeconds(30));
        Assert.True(check.ExitCode == 0, $"promtool check metrics failed ({check.ExitCode}):\n{check.Output}\n{text}");
    }

    [Fact]
    public async Task Observable_series_are_what_the_callbacks_report_and_counters_never_go_back()
    {
        using var meter = new Meter("Loom.Test.Observable");
        using var exporter = new MetricsExporter(i => ReferenceEquals(i.Meter, meter));
        using var other = new MetricsExporter(i => i.Meter.Name == "Loom.Test.Other"); // a second exporter: its own registry
        Measurement<long>[] reported = [new(5, new KeyValuePair<string, object?>("k", "a"))];
        meter.CreateObservableCounter("test.seen", () => reported);
        meter.CreateObservableGauge("test.level", () => reported);

        var text = await ExpositionAsync(exporter);
        Assert.Contains("test_seen_total{k=\"a\"} 5\n", text, StringComparison.Ordinal);
        Assert.Contains("test_level{k=\"a\"} 5\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("test_seen", await ExpositionAsync(other), StringComparison.Ordinal);

        reported = [new(3, new KeyValuePair<string, object?>("k", "a")), new(1, new KeyValuePair<string, object?>("k", "b")), new(1, new KeyValuePair<string, object?>("k", "b"))];
        text = await ExpositionAsync(exporter);
        Assert.Contains("test_seen_total{k=\"a\"} 5\n", text, StringComparison.Ordinal); // a counter never goes back
        Assert.Contains("test_seen_total{k=\"b\"} 2\n", text, StringComparison.Ordinal); // one series reported twice adds up
        Assert.Contains("test_level{k=\"a\"} 3\n", text, StringComparison.Ordinal);

        reported = [new(1, new KeyValuePair<string, object?>("k", "b"))];
        text = await ExpositionAsync(exporter);
        Assert.DoesNotContain("k=\"a\"", text, StringComparison.Ordinal); // no longer reported: not exposed
        Assert.Contains("test_level{k=\"b\"} 1\n", text, StringComparison.Ordinal);

        reported = [new(4, new KeyValuePair<string, object?>("k", "a"))];
        text = await ExpositionAsync(exporter);
        Assert.Contains("test_seen_total{k=\"a\"} 5\n", text, StringComparison.Ordinal);
        Assert.Contains("test_level{k=\"a\"} 4\n", text, StringComparison.Ordinal);
    }

    /// <summary>An exporter's exposition as <c>/metrics</c> serves it (text format 0.0.4).</summary>
    private static async Task<string> ExpositionAsync(MetricsExporter exporter)
    {
        using var buffer = new MemoryStream();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await exporter.Registry.CollectAndExportAsTextAsync(buffer, Prometheus.ExpositionFormat.PrometheusText, timeout.Token);
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    [GeneratedRegex(@"loom_action_call_duration_seconds_bucket\{capability=""obs.echo"",outcome=""ok"",le=""[^""]+""\} ([0-9]+)")]
    private static partial Regex BucketRegex();
}
