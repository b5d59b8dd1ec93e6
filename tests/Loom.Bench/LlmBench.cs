using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Loom.Bridge;
using Loom.Llm;
using Loom.LlmFake;
using Loom.Sdk;

namespace Loom.Bench;

/// <summary>
/// The LLM gateway's cost and effect, against the fake OpenAI-compatible server (tests/Loom.LlmFake)
/// on 127.0.0.1 started here, and a bridge in this process whose llm: section points at it:
/// <list type="bullet">
/// <item>direct: an HTTP POST /v1/chat/completions to the fake (what an agent with its own client does);</item>
/// <item>gateway: the same request as llm.chat from a .NET agent (ctx.Llm.ChatAsync), cache off, so
/// every call goes upstream: the difference to direct is the gateway's overhead per call;</item>
/// <item>cache hit: the same llm.chat with the cache on, after the first call filled it;</item>
/// </list>
/// interleaved in every run (direct, gateway, cache hit, then the next run), sequential calls;
/// then coalescing: rounds of 50 identical concurrent llm.chat calls to a model that answers in
/// 50 ms, with and without the cache (coalescing needs it), counting the upstream requests the
/// fake received and each round's latency.
/// </summary>
internal static class LlmBench
{
    private const int Concurrent = 50;

    public static async Task<IReadOnlyList<Figure>> RunAsync(BenchOptions options, TextWriter progress)
    {
        await using var fake = new FakeLlmServer();
        await fake.StartAsync();
        var llm = new LlmOptions
        {
            Providers = [new LlmProviderOptions { Name = "fake", BaseUrl = new Uri(fake.BaseUrl, "v1"), MaxConcurrency = 16 }],
            Models =
            [
                new LlmModelOptions { Name = "fast", Provider = "fake", Id = "bench-fast" },
                new LlmModelOptions { Name = "slow", Provider = "fake", Id = "bench-slow" },
            ],
            Cache = new LlmCacheOptions { MaxEntries = 100_000 },
        };
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, Llm = llm }, static _ => { });
        await bridge.StartAsync();
        await using var agent = await LoomAgentHost.StartAsync(new CallerAgent(), bridge.GrpcAddress);
        var ctx = agent.Context;
        using var http = new HttpClient { BaseAddress = fake.BaseUrl, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "bench");
        var timeout = TimeSpan.FromSeconds(30);
        const string Prompt = "What is the weather like in Lisbon in December? Answer in one sentence.";

        async Task<long> DirectAsync()
        {
            var body = JsonSerializer.Serialize(new { model = "bench-fast", messages = new[] { new { role = "user", content = Prompt } } });
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            var start = Stopwatch.GetTimestamp();
            using var response = await http.PostAsync(new Uri("v1/chat/completions", UriKind.Relative), content);
            using var json = JsonDocument.Parse(await response.Content.ReadAsStreamAsync());
            var text = json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
            var elapsed = Stopwatch.GetTimestamp() - start;
            return response.IsSuccessStatusCode && text is { Length: > 0 } ? elapsed : throw new InvalidOperationException("The fake answered badly.");
        }

        async Task<long> GatewayAsync(bool cache)
        {
            var request = new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User(Prompt)], Cache = cache };
            var start = Stopwatch.GetTimestamp();
            var answer = await ctx.Llm.ChatAsync(request, timeout);
            var elapsed = Stopwatch.GetTimestamp() - start;
            return answer.Content.Length > 0 && answer.Cached == cache ? elapsed : throw new InvalidOperationException($"Expected cached={cache}, got {answer.Cached}.");
        }

        for (var i = 0; i < Math.Min(options.Warmup, 500); i++)
        {
            await DirectAsync();
            await GatewayAsync(cache: false);
        }

        await ctx.Llm.ChatAsync(new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User(Prompt)] }, timeout); // fills the cache
        var modes = new (string Name, Func<Task<long>> Once)[]
        {
            ("direct HTTP call to the fake", DirectAsync),
            ("llm.chat through the gateway, upstream (cache off)", () => GatewayAsync(cache: false)),
            ("llm.chat cache hit", () => GatewayAsync(cache: true)),
        };
        var p50 = modes.Select(_ => new List<double>()).ToArray();
        var p99 = modes.Select(_ => new List<double>()).ToArray();
        var overhead = new List<double>();
        for (var run = 0; run < options.RunsOr(5); run++)
        {
            for (var m = 0; m < modes.Length; m++)
            {
                var ticks = new long[options.Calls];
                for (var i = 0; i < ticks.Length; i++)
                {
                    ticks[i] = await modes[m].Once();
                }

                Array.Sort(ticks);
                p50[m].Add(Percentiles.Of(ticks, 0.50));
                p99[m].Add(Percentiles.Of(ticks, 0.99));
            }

            overhead.Add(p50[1][^1] - p50[0][^1]);
            progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"llm run {run + 1}: direct p50 {p50[0][^1]:N0} µs p99 {p99[0][^1]:N0}; gateway p50 {p50[1][^1]:N0} p99 {p99[1][^1]:N0}; cache hit p50 {p50[2][^1]:N0} p99 {p99[2][^1]:N0}; overhead p50 {overhead[^1]:N0} µs"));
        }

        var figures = new List<Figure>();
        var note = $"{options.Calls:N0} sequential calls per mode per run, modes interleaved";
        for (var m = 0; m < modes.Length; m++)
        {
            figures.Add(Figure.Of("llm", $"{modes[m].Name} p50", "µs", p50[m], m == 0 ? note : ""));
            figures.Add(Figure.Of("llm", $"{modes[m].Name} p99", "µs", p99[m]));
        }

        figures.Add(Figure.Of("llm", "gateway overhead per call (p50 gateway - p50 direct, same run)", "µs", overhead));

        // Coalescing: rounds of 50 identical concurrent calls (a new question each round) to a 50 ms model.
        foreach (var coalesce in new[] { true, false })
        {
            var upstream = new List<double>();
            var roundMs = new List<double>();
            for (var run = 0; run < options.RunsOr(5); run++)
            {
                fake.Clear();
                var prompt = $"Coalescing round {run} {coalesce} {Guid.NewGuid():N}";
                var request = new LlmChatRequest { Model = "slow", Messages = [LlmMessage.User(prompt)], Cache = coalesce };
                var start = Stopwatch.GetTimestamp();
                var answers = await Task.WhenAll(Enumerable.Range(0, Concurrent).Select(_ => ctx.Llm.ChatAsync(request, timeout)));
                roundMs.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                upstream.Add(fake.Requests.Count);
                if (answers.Any(a => a.Content.Length == 0))
                {
                    throw new InvalidOperationException("An empty answer.");
                }

                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"llm coalescing={coalesce} round {run + 1}: {Concurrent} calls -> {upstream[^1]} upstream requests, {roundMs[^1]:N0} ms, {answers.Count(a => a.Coalesced)} coalesced"));
            }

            var what = coalesce ? "50 identical concurrent calls, coalesced" : "50 identical concurrent calls, cache: false (no coalescing)";
            figures.Add(Figure.Of("llm", $"{what}: upstream requests", "requests", upstream, "model answers in 50 ms; max_concurrency 16"));
            figures.Add(Figure.Of("llm", $"{what}: time for all 50", "ms", roundMs));
        }

        return figures;
    }
}
