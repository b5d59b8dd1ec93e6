using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Bench;

/// <summary>Sequential capability calls between two .NET agents through the bridge.</summary>
internal static class RpcBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(Uri url, BenchOptions options, TextWriter progress)
    {
        await using var provider = await LoomAgentHost.StartAsync(new EchoAgent(), url);
        await using var caller = await LoomAgentHost.StartAsync(new CallerAgent(), url);
        var timeout = TimeSpan.FromSeconds(10);
        var seq = 0;
        async Task<long> CallOnceAsync()
        {
            var n = seq++;
            var start = Stopwatch.GetTimestamp();
            var output = await caller.Context.InvokeAsync<EchoOutput>("bench.echo", new EchoInput(n, "ping"), timeout);
            var elapsed = Stopwatch.GetTimestamp() - start;
            return output!.Seq == n ? elapsed : throw new InvalidOperationException($"Call {n} answered {output.Seq}.");
        }

        for (var i = 0; i < options.Warmup; i++)
        {
            await CallOnceAsync();
        }

        return await LatencyRuns.MeasureAsync("rpc", "capability call round trip", options, progress, CallOnceAsync);
    }
}

/// <summary>Request/reply over topics: RequestAsync to a subscriber that publishes the reply to reply_to.</summary>
internal static class RequestReplyBench
{
    public static async Task<IReadOnlyList<Figure>> RunAsync(Uri url, BenchOptions options, TextWriter progress)
    {
        await using var responder = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-responder" });
        await using var requester = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "bench-requester" });
        await responder.SubscribeAsync("bench.rr.req", (request, token) =>
            responder.PublishAsync(new Envelope { Topic = request.ReplyTo, CorrelationId = request.CorrelationId, Payload = request.Payload }, token).AsTask());
        var payload = ByteString.CopyFrom(new byte[options.PayloadBytes]);
        var timeout = TimeSpan.FromSeconds(10);
        async Task<long> RequestOnceAsync()
        {
            var start = Stopwatch.GetTimestamp();
            var reply = await requester.RequestAsync(new Envelope { Topic = "bench.rr.req", Payload = payload }, timeout);
            return reply.Payload.Length == payload.Length ? Stopwatch.GetTimestamp() - start : throw new InvalidOperationException("Wrong reply.");
        }

        for (var i = 0; i < options.Warmup; i++)
        {
            await RequestOnceAsync();
        }

        return await LatencyRuns.MeasureAsync("reqreply", "request/reply round trip", options, progress, RequestOnceAsync);
    }
}

internal static class LatencyRuns
{
    public static async Task<IReadOnlyList<Figure>> MeasureAsync(string scenario, string what, BenchOptions options, TextWriter progress, Func<Task<long>> once)
    {
        var p50 = new List<double>();
        var p90 = new List<double>();
        var p99 = new List<double>();
        var p999 = new List<double>();
        var rates = new List<double>();
        for (var run = 0; run < options.RunsOr(5); run++)
        {
            var ticks = new long[options.Calls];
            var total = Stopwatch.StartNew();
            for (var i = 0; i < ticks.Length; i++)
            {
                ticks[i] = await once();
            }

            total.Stop();
            Array.Sort(ticks);
            p50.Add(Percentiles.Of(ticks, 0.50));
            p90.Add(Percentiles.Of(ticks, 0.90));
            p99.Add(Percentiles.Of(ticks, 0.99));
            p999.Add(Percentiles.Of(ticks, 0.999));
            rates.Add(ticks.Length / total.Elapsed.TotalSeconds);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{scenario} run {run + 1}: p50 {p50[^1]:N1} µs, p90 {p90[^1]:N1}, p99 {p99[^1]:N1}, p999 {p999[^1]:N1}; {rates[^1]:N0}/s sequential"));
        }

        return
        [
            Figure.Of(scenario, $"{what} p50", "µs", p50, $"{options.Calls:N0} sequential calls per run after {options.Warmup:N0} warm-up"),
            Figure.Of(scenario, $"{what} p90", "µs", p90),
            Figure.Of(scenario, $"{what} p99", "µs", p99),
            Figure.Of(scenario, $"{what} p99.9", "µs", p999),
            Figure.Of(scenario, "sequential rate", "calls/s", rates),
        ];
    }
}
