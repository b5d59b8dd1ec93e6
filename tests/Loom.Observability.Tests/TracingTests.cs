using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf;
using Loom.Bridge;
using Loom.Bridge.Internal.Metrics;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Xunit;

namespace Loom.Observability.Tests;

/// <summary>
/// Spans of the bridge (source "Loom") and the .NET SDK (source "Loom.Sdk") across real
/// connections, collected by an in-test ActivityListener; each test looks only at its own trace.
/// </summary>
public sealed class TracingTests : IAsyncLifetime, IDisposable
{
    private static readonly ActivitySource TestSource = new("Loom.Tests");
    private readonly ConcurrentQueue<Activity> _spans = new();
    private readonly ActivityListener _listener;
    private LoomBridge _bridge = null!;

    public TracingTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is LoomTelemetry.SourceName or LoomSdkTelemetry.SourceName or "Loom.Tests",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity => _spans.Enqueue(activity),
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0 }, _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    public void Dispose() => _listener.Dispose();

    private Activity[] SpansOf(ActivityTraceId trace) => _spans.Where(s => s.TraceId == trace).ToArray();

    private static Activity One(Activity[] spans, string source, string name, ActivityKind kind)
    {
        var matching = spans.Where(s => s.Source.Name == source && s.DisplayName == name).ToArray();
        var span = Assert.Single(matching);
        Assert.Equal(kind, span.Kind);
        return span;
    }

    [Fact]
    public async Task Publish_deliver_process_and_a_reply_are_one_trace_with_the_right_parents()
    {
        await using var subscriber = await LoomConnection.ConnectAsync(_bridge.GrpcAddress, new LoomConnectionOptions { Name = "sub" });
        await using var publisher = await LoomConnection.ConnectAsync(_bridge.GrpcAddress, new LoomConnectionOptions { Name = "pub" });
        var handled = new TaskCompletionSource<Envelope>(TaskCreationOptions.RunContinuationsAsynchronously);
        var replies = new TaskCompletionSource<Envelope>(TaskCreationOptions.RunContinuationsAsynchronously);
        await subscriber.SubscribeAsync("orders.>", async (envelope, token) =>
        {
            // A handler that publishes in turn: the reply joins the same trace.
            await subscriber.PublishAsync(new Envelope { Topic = "thread.t1.reply", ThreadId = envelope.ThreadId, Payload = envelope.Payload }, token);
            handled.TrySetResult(envelope);
        });
        await publisher.SubscribeAsync("thread.*.reply", (envelope, _) => { replies.TrySetResult(envelope); return Task.CompletedTask; });

        ActivityTraceId trace;
        using (var root = TestSource.StartActivity("test root"))
        {
            Assert.NotNull(root);
            trace = root.TraceId;
            await publisher.PublishAsync(new Envelope { Topic = "orders.eu.created", ThreadId = "t1", Payload = ByteString.CopyFromUtf8("{}") });
        }

        var delivered = await handled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var reply = await replies.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains(trace.ToHexString(), delivered.Traceparent, StringComparison.Ordinal);
        Assert.Contains(trace.ToHexString(), reply.Traceparent, StringComparison.Ordinal);

        // The second delivery's spans end a moment after the handler saw the envelope.
        await Poll.UntilAsync(() => SpansOf(trace).Count(s => s.Source.Name == LoomSdkTelemetry.SourceName && s.DisplayName == "process") == 2, TimeSpan.FromSeconds(10), "both process spans ended");
        await Poll.UntilAsync(() => SpansOf(trace).Count(s => s.DisplayName.StartsWith("deliver", StringComparison.Ordinal)) == 2, TimeSpan.FromSeconds(10), "both deliver spans ended");
        var spans = SpansOf(trace);
        var root1 = One(spans, "Loom.Tests", "test root", ActivityKind.Internal);
        var sdkPublish = spans.Single(s => s.Source.Name == LoomSdkTelemetry.SourceName && s.DisplayName == "publish" && s.ParentSpanId == root1.SpanId);
        Assert.Equal(ActivityKind.Producer, sdkPublish.Kind);
        var bridgePublish = One(spans, LoomTelemetry.SourceName, "publish orders.>", ActivityKind.Consumer);
        Assert.Equal(sdkPublish.SpanId, bridgePublish.ParentSpanId);
        Assert.Equal("orders.eu.created", bridgePublish.GetTagItem("messaging.destination.name"));
        var deliver = One(spans, LoomTelemetry.SourceName, "deliver orders.>", ActivityKind.Producer);
        Assert.Equal(bridgePublish.SpanId, deliver.ParentSpanId);
        var process = spans.Single(s => s.Source.Name == LoomSdkTelemetry.SourceName && s.DisplayName == "process" && s.ParentSpanId == deliver.SpanId);
        Assert.Equal(ActivityKind.Consumer, process.Kind);

        // The reply: published inside the handler, so a child of the process span, then through the bridge again.
        var replyPublish = spans.Single(s => s.Source.Name == LoomSdkTelemetry.SourceName && s.DisplayName == "publish" && s.ParentSpanId == process.SpanId);
        var replyBridge = One(spans, LoomTelemetry.SourceName, "publish thread.>", ActivityKind.Consumer);
        Assert.Equal(replyPublish.SpanId, replyBridge.ParentSpanId);
        var replyDeliver = One(spans, LoomTelemetry.SourceName, "deliver thread.>", ActivityKind.Producer);
        Assert.Equal(replyBridge.SpanId, replyDeliver.ParentSpanId);
    }

    [Fact]
    public async Task Call_and_result_are_one_trace_with_the_right_parents()
    {
        await using var provider = await LoomAgentHost.StartAsync(new EchoAgent(), _bridge.GrpcAddress);
        await using var caller = await LoomAgentHost.StartAsync(new CallerAgent(), _bridge.GrpcAddress);
        ActivityTraceId trace;
        using (var root = TestSource.StartActivity("test call root"))
        {
            Assert.NotNull(root);
            trace = root.TraceId;
            var output = await caller.Context.InvokeAsync<EchoOutput>("obs.echo", new EchoInput("traced"), TimeSpan.FromSeconds(10));
            Assert.Equal("traced", output!.Text);
            await Assert.ThrowsAsync<InvalidParamsException>(() => caller.Context.InvokeAsync<EchoOutput>("obs.echo", new { Bad = true }, TimeSpan.FromSeconds(10)));
        }

        await Poll.UntilAsync(() => SpansOf(trace).Count(s => s.DisplayName == "call obs.echo") == 4, TimeSpan.FromSeconds(10), "call spans of both calls ended");
        var spans = SpansOf(trace);
        var clientCalls = spans.Where(s => s.Source.Name == LoomSdkTelemetry.SourceName && s.DisplayName == "call obs.echo").OrderBy(s => s.StartTimeUtc).ToArray();
        var bridgeCalls = spans.Where(s => s.Source.Name == LoomTelemetry.SourceName && s.DisplayName == "call obs.echo").OrderBy(s => s.StartTimeUtc).ToArray();
        Assert.Equal(2, clientCalls.Length);
        Assert.Equal(2, bridgeCalls.Length);
        Assert.All(clientCalls, c => Assert.Equal(ActivityKind.Client, c.Kind));
        Assert.All(bridgeCalls, c => Assert.Equal(ActivityKind.Server, c.Kind));
        Assert.Equal(clientCalls[0].SpanId, bridgeCalls[0].ParentSpanId);
        Assert.Equal(clientCalls[1].SpanId, bridgeCalls[1].ParentSpanId);

        // Only the valid call reached the provider; its handler span hangs under the bridge's call span.
        var handle = One(spans, LoomSdkTelemetry.SourceName, "handle obs.echo", ActivityKind.Server);
        Assert.Equal(bridgeCalls[0].SpanId, handle.ParentSpanId);
        Assert.Equal(provider.AgentId, bridgeCalls[0].GetTagItem("loom.provider"));
        Assert.Equal(ActivityStatusCode.Error, bridgeCalls[1].Status);
        Assert.Equal("INVALID_PARAMS", bridgeCalls[1].GetTagItem("error.type"));
        Assert.Equal(ActivityStatusCode.Error, clientCalls[1].Status);
    }

    [Fact]
    public async Task An_explicit_traceparent_on_the_wire_is_the_parent_of_the_bridge_span()
    {
        await using var subscriber = await LoomConnection.ConnectAsync(_bridge.GrpcAddress, new LoomConnectionOptions { Name = "sub2" });
        await using var publisher = await LoomConnection.ConnectAsync(_bridge.GrpcAddress, new LoomConnectionOptions { Name = "pub2" });
        var got = new TaskCompletionSource<Envelope>(TaskCreationOptions.RunContinuationsAsynchronously);
        await subscriber.SubscribeAsync("explicit.>", (e, _) => { got.TrySetResult(e); return Task.CompletedTask; });
        var trace = ActivityTraceId.CreateRandom();
        var parent = ActivitySpanId.CreateRandom();
        await publisher.PublishAsync(new Envelope { Topic = "explicit.x", Traceparent = $"00-{trace.ToHexString()}-{parent.ToHexString()}-01", Tracestate = "vendor=abc" });
        var envelope = await got.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.StartsWith($"00-{trace.ToHexString()}-", envelope.Traceparent, StringComparison.Ordinal);
        Assert.Equal("vendor=abc", envelope.Tracestate);
        await Poll.UntilAsync(() => SpansOf(trace).Any(s => s.DisplayName == "deliver explicit.>"), TimeSpan.FromSeconds(10), "deliver span ended");
        var spans = SpansOf(trace);
        var sdkPublish = One(spans, LoomSdkTelemetry.SourceName, "publish", ActivityKind.Producer);
        Assert.Equal(parent, sdkPublish.ParentSpanId);
        var bridgePublish = One(spans, LoomTelemetry.SourceName, "publish explicit.>", ActivityKind.Consumer);
        Assert.Equal(sdkPublish.SpanId, bridgePublish.ParentSpanId);
        Assert.Equal("vendor=abc", bridgePublish.TraceStateString);
    }

    [Fact]
    public void Otlp_export_follows_the_standard_environment_variables()
    {
        static string? Env(Dictionary<string, string> vars, string name) => vars.TryGetValue(name, out var v) ? v : null;
        Assert.NotNull(BridgeTelemetry.WhyNoExport(name => Env([], name)));
        Assert.Null(BridgeTelemetry.WhyNoExport(name => Env(new() { ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:4317" }, name)));
        Assert.Null(BridgeTelemetry.WhyNoExport(name => Env(new() { ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://127.0.0.1:4318/v1/traces" }, name)));
        Assert.Null(BridgeTelemetry.WhyNoExport(name => Env(new() { ["OTEL_TRACES_EXPORTER"] = "otlp" }, name)));
        Assert.NotNull(BridgeTelemetry.WhyNoExport(name => Env(new() { ["OTEL_TRACES_EXPORTER"] = "none", ["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://x:4317" }, name)));
        Assert.NotNull(BridgeTelemetry.WhyNoExport(name => Env(new() { ["OTEL_SDK_DISABLED"] = "true", ["OTEL_TRACES_EXPORTER"] = "otlp" }, name)));
        Assert.Contains("not supported", BridgeTelemetry.WhyNoExport(name => Env(new() { ["OTEL_TRACES_EXPORTER"] = "zipkin" }, name)), StringComparison.Ordinal);
        if (Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is null && Environment.GetEnvironmentVariable("OTEL_TRACES_EXPORTER") is null)
        {
            Assert.False(_bridge.TracingEnabled);
        }
    }
}
