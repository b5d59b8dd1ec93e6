using System.Text.Json;
using Loom.Core;
using Loom.LlmFake;
using Loom.Sdk;

namespace Loom.Llm.Tests;

/// <summary>The gateway through a real bridge, called from the .NET SDK, against the fake servers over HTTP.</summary>
public sealed class GatewayTests(GatewayFixture fx) : IClassFixture<GatewayFixture>
{
    private static readonly JsonElement CitySchema = JsonDocument.Parse("""{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}""").RootElement;

    private IEnumerable<RecordedRequest> Upstream(string marker) => fx.Fake.Requests.Where(r => r.Body.Contains(marker, StringComparison.Ordinal));

    [Fact]
    public async Task Completion_through_the_openai_provider_returns_the_answer_usage_and_cost()
    {
        await using var agent = await fx.AgentAsync("writer-1");
        var result = await agent.Context.Llm.ChatAsync("hello completion", "fast");
        Assert.Equal("echo: hello completion", result.Content);
        Assert.Equal("fast", result.Model);
        Assert.Equal("openai-fake", result.Provider);
        Assert.Equal("stop", result.FinishReason);
        Assert.True(result.Usage.InputTokens > 0);
        Assert.Equal(3, result.Usage.OutputTokens); // "echo: hello completion"
        var expected = ((result.Usage.InputTokens * GatewayFixture.InputPrice) + (result.Usage.OutputTokens * GatewayFixture.OutputPrice)) / 1e6;
        Assert.Equal(expected, result.CostUsd, 9);
        Assert.False(result.Cached);
        var sent = Assert.Single(Upstream("hello completion"));
        Assert.Equal("/v1/chat/completions", sent.Path);
        Assert.Equal("fake-fast", sent.Model);
    }

    [Fact]
    public async Task Completion_through_the_anthropic_provider_and_the_agents_default_model()
    {
        await using var agent = await fx.AgentAsync("claude-fan");
        var result = await agent.Context.Llm.ChatAsync(new LlmChatRequest { Messages = [LlmMessage.System("be brief"), LlmMessage.User("hello anthropic")] });
        Assert.Equal("echo: hello anthropic", result.Content);
        Assert.Equal("claude", result.Model);
        Assert.Equal("anthropic-fake", result.Provider);
        Assert.True(result.Usage.InputTokens > 0);
        var sent = Assert.Single(Upstream("hello anthropic"));
        Assert.Equal("/v1/messages", sent.Path);
        Assert.Equal("claude-fake", sent.Model);
        Assert.Contains("be brief", sent.Body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("fast", "/v1/chat/completions")]
    [InlineData("claude", "/v1/messages")]
    public async Task Streaming_yields_the_pieces_then_the_whole_answer(string model, string path)
    {
        await using var agent = await fx.AgentAsync("streamer-" + model);
        var prompt = $"stream me four words {model}";
        var pieces = new List<string>();
        LlmChatResult? result = null;
        await foreach (var e in agent.Context.Llm.StreamChatAsync(new LlmChatRequest { Model = model, Messages = [LlmMessage.User(prompt)] }))
        {
            if (e.Type == LlmStreamEventType.Delta)
            {
                pieces.Add(e.Text!);
            }
            else if (e.Type == LlmStreamEventType.Result)
            {
                result = e.Result;
            }
        }

        Assert.NotNull(result);
        Assert.Equal("echo: " + prompt, result.Content);
        Assert.True(pieces.Count >= 5, $"expected a piece per word, got {pieces.Count}");
        Assert.Equal(result.Content, string.Concat(pieces));
        Assert.True(result.Usage.OutputTokens > 0);
        var sent = Assert.Single(Upstream(prompt));
        Assert.Equal(path, sent.Path);
        Assert.True(sent.Stream);
    }

    [Theory]
    [InlineData("fast")]
    [InlineData("claude")]
    public async Task Tools_are_offered_and_the_model_calls_them_then_reads_the_result(string model)
    {
        await using var agent = await fx.AgentAsync("tooler-" + model);
        var tools = new[] { new LlmTool("get_weather", "Weather of a city", CitySchema) };
        var question = LlmMessage.User($"weather in Oslo? {model}");
        var first = await agent.Context.Llm.ChatAsync(new LlmChatRequest { Model = model, Messages = [question], Tools = tools });
        var call = Assert.Single(first.ToolCalls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Oslo", call.Arguments.GetProperty("city").GetString());
        Assert.Contains("get_weather", Assert.Single(Upstream($"weather in Oslo? {model}")).Body, StringComparison.Ordinal);

        var second = await agent.Context.Llm.ChatAsync(new LlmChatRequest
        {
            Model = model,
            Tools = tools,
            Messages = [question, new LlmMessage { Role = "assistant", ToolCalls = [call] }, LlmMessage.ToolResult(call.Id, "3 degrees, snow")],
        });
        Assert.Empty(second.ToolCalls);
        Assert.Equal($"echo: weather in Oslo? {model}", second.Content);
        Assert.Contains(Upstream($"weather in Oslo? {model}"), r => r.Body.Contains("3 degrees, snow", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Structured_output_sends_the_schema_and_returns_parsed_json()
    {
        await using var agent = await fx.AgentAsync("structured");
        var schema = JsonDocument.Parse("""{"type":"object","properties":{"answer":{"type":"string"}},"required":["answer"]}""").RootElement;
        var result = await agent.Context.Llm.ChatAsync(new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User("structured please")], ResponseFormat = LlmResponseFormat.JsonSchema(schema, "reply") });
        Assert.Equal("structured please", result.Json!.Value.GetProperty("answer").GetString());
        var body = Assert.Single(Upstream("structured please")).Body;
        Assert.Contains("json_schema", body, StringComparison.Ordinal);
        Assert.Contains("\"reply\"", body, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("broken", "fast", "fail-model", 2)]
    [InlineData("claude-broken", "claude", "fail-claude", 2)]
    public async Task A_failing_model_is_retried_then_the_next_model_answers(string model, string fallback, string failingId, int attempts)
    {
        await using var agent = await fx.AgentAsync("fallback-" + model);
        var prompt = $"fallback please {model}";
        var result = await agent.Context.Llm.ChatAsync(prompt, model);
        Assert.Equal("echo: " + prompt, result.Content);
        Assert.Equal(fallback, result.Model);
        Assert.Equal(model, result.FallbackFrom);
        Assert.Equal(attempts + 1, result.Attempts);
        var sent = Upstream(prompt).ToList();
        Assert.Equal(attempts, sent.Count(r => r.Model == failingId));
        Assert.Single(sent, r => r.Model != failingId);
        var metrics = await fx.MetricsAsync();
        Assert.True(GatewayFixture.Series(metrics, "loom_llm_fallbacks_total", $"model=\"{model}\"") >= 1);
        Assert.True(GatewayFixture.Series(metrics, "loom_llm_upstream_requests_total", $"model=\"{model}\"", "outcome=\"http_5xx\"") >= attempts);
    }

    [Fact]
    public async Task A_client_error_is_not_retried_and_every_failure_is_reported()
    {
        await using var agent = await fx.AgentAsync("rejected");
        var error = await Assert.ThrowsAsync<ToolErrorException>(() => agent.Context.Llm.ChatAsync("rejected please", "rejecting"));
        Assert.Contains("HTTP 400", error.Message, StringComparison.Ordinal);
        Assert.Single(Upstream("rejected please"));
    }

    [Fact]
    public async Task An_identical_request_is_served_from_the_cache()
    {
        await using var agent = await fx.AgentAsync("cacher");
        var request = new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User("cache me")], Temperature = 0 };
        var first = await agent.Context.Llm.ChatAsync(request);
        var second = await agent.Context.Llm.ChatAsync(request);
        Assert.False(first.Cached);
        Assert.True(second.Cached);
        Assert.Equal(first.Content, second.Content);
        Assert.Equal(0, second.CostUsd);
        Assert.Single(Upstream("cache me"));

        var fresh = await agent.Context.Llm.ChatAsync(request with { Cache = false });
        Assert.False(fresh.Cached);
        Assert.Equal(2, Upstream("cache me").Count());
        Assert.True(GatewayFixture.Series(await fx.MetricsAsync(), "loom_llm_requests_total", "operation=\"chat\"", "served=\"cache\"") >= 1);
    }

    [Fact]
    public async Task Fifty_identical_concurrent_requests_make_one_upstream_request()
    {
        await using var agent = await fx.AgentAsync("coalescer");
        var metricsBefore = GatewayFixture.Series(await fx.MetricsAsync(), "loom_llm_requests_total", "served=\"coalesced\"");
        fx.Fake.Hold();
        var request = new LlmChatRequest { Model = "gated", Messages = [LlmMessage.User("coalesce me")] };
        var calls = Enumerable.Range(0, 50).Select(_ => agent.Context.Llm.ChatAsync(request)).ToList();
        try
        {
            await Poll.UntilAsync(async ct => GatewayFixture.Series(await fx.MetricsAsync(), "loom_action_calls_in_flight", "capability=\"llm.chat\"") >= 50, TimeSpan.FromSeconds(30), "50 calls in flight");
            Assert.Single(Upstream("coalesce me"));
        }
        finally
        {
            fx.Fake.Release();
        }

        var results = await Task.WhenAll(calls);
        Assert.All(results, r => Assert.Equal("echo: coalesce me", r.Content));
        Assert.Equal(49, results.Count(r => r.Coalesced));
        Assert.Single(Upstream("coalesce me"));
        var metrics = await fx.MetricsAsync();
        Assert.Equal(metricsBefore + 49, GatewayFixture.Series(metrics, "loom_llm_requests_total", "served=\"coalesced\""));
    }

    [Fact]
    public async Task An_agent_over_its_token_budget_is_refused_with_BUDGET_EXCEEDED()
    {
        await using var agent = await fx.AgentAsync("stingy");
        var first = await agent.Context.Llm.ChatAsync("spend my budget", "fast"); // goes over the 5-token budget
        Assert.True(first.Usage.InputTokens + first.Usage.OutputTokens > 5);
        var refused = await Assert.ThrowsAsync<BudgetExceededException>(() => agent.Context.Llm.ChatAsync("one more please", "fast"));
        Assert.Equal(Loom.Protocol.V1.ErrorCode.BudgetExceeded, refused.Code);
        Assert.Contains("stingy", refused.Message, StringComparison.Ordinal);
        Assert.Empty(Upstream("one more please"));
        var usage = await agent.Context.Llm.UsageAsync();
        Assert.Equal(5, usage.BudgetTokens);
        Assert.Equal(first.Usage.InputTokens + first.Usage.OutputTokens, usage.Tokens);
        Assert.Equal(first.CostUsd, usage.CostUsd, 9);
        Assert.True(GatewayFixture.Series(await fx.MetricsAsync(), "loom_llm_budget_refused_total", "scope=\"agent\"") >= 1);
    }

    [Fact]
    public async Task A_thread_over_its_token_budget_is_refused_but_other_threads_go_on()
    {
        await using var agent = await fx.AgentAsync("threader");
        var thread = new InvokeOptions { ThreadId = "thread-budget" };
        var spent = 0L;
        for (var i = 0; spent < 60; i++)
        {
            var r = await agent.Context.Llm.ChatAsync(new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User($"thread spend {i} " + new string('x', 80))] }, options: thread);
            spent += r.Usage.InputTokens + r.Usage.OutputTokens;
        }

        await Assert.ThrowsAsync<BudgetExceededException>(() => agent.Context.Llm.ChatAsync(new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User("thread over")] }, options: thread));
        var other = await agent.Context.Llm.ChatAsync(new LlmChatRequest { Model = "fast", Messages = [LlmMessage.User("thread other")] }, options: new InvokeOptions { ThreadId = "thread-other" });
        Assert.Equal("echo: thread other", other.Content);
    }

    [Fact]
    public async Task Tokens_and_cost_by_model_are_in_the_metrics()
    {
        await using var agent = await fx.AgentAsync("metered");
        var before = await fx.MetricsAsync();
        var result = await agent.Context.Llm.ChatAsync("meter me please", "fast");
        var after = await fx.MetricsAsync();
        double Delta(string name, params string[] labels) => GatewayFixture.Series(after, name, labels) - GatewayFixture.Series(before, name, labels);
        Assert.Equal(result.Usage.InputTokens, Delta("loom_llm_tokens_total", "model=\"fast\"", "direction=\"input\""));
        Assert.Equal(result.Usage.OutputTokens, Delta("loom_llm_tokens_total", "model=\"fast\"", "direction=\"output\""));
        Assert.Equal(result.CostUsd, Delta("loom_llm_cost_total", "model=\"fast\""), 6);
        Assert.True(Delta("loom_llm_upstream_duration_seconds_count", "model=\"fast\"") >= 1);
        Assert.Contains("loom_llm_cache_entries", after, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Embeddings_are_batched_across_calls_and_cached_per_text()
    {
        await using var agent = await fx.AgentAsync("embedder");
        var texts = Enumerable.Range(0, 20).Select(i => $"embed text {i}").ToList();
        var results = await Task.WhenAll(texts.Select(t => agent.Context.Llm.EmbedAsync([t])));
        for (var i = 0; i < texts.Count; i++)
        {
            Assert.Equal(FakeLlmServer.Vector(texts[i]), Assert.Single(results[i].Embeddings));
            Assert.Equal("embed", results[i].Model);
        }

        var upstream = fx.Fake.Requests.Where(r => r.Path == "/v1/embeddings" && r.Body.Contains("embed text", StringComparison.Ordinal)).ToList();
        Assert.True(upstream.Count < texts.Count, $"expected batching, got {upstream.Count} upstream requests for {texts.Count} texts");
        Assert.Equal(texts.Count, texts.Count(t => upstream.Any(r => r.Body.Contains($"\"{t}\"", StringComparison.Ordinal))));

        var again = await agent.Context.Llm.EmbedAsync([texts[0], "embed text new"]);
        Assert.Equal(1, again.Cached);
        Assert.Equal(FakeLlmServer.Vector("embed text new"), again.Embeddings[1]);
    }

    [Fact]
    public async Task Bad_requests_are_refused_with_INVALID_PARAMS_saying_what_to_fix()
    {
        await using var agent = await fx.AgentAsync("careless");
        var unknown = await Assert.ThrowsAsync<InvalidParamsException>(() => agent.Context.Llm.ChatAsync("hi", "no-such-model"));
        Assert.Contains("no-such-model", unknown.Message, StringComparison.Ordinal);
        Assert.Contains("fast", unknown.Message, StringComparison.Ordinal);
        var embedAsChat = await Assert.ThrowsAsync<InvalidParamsException>(() => agent.Context.Llm.ChatAsync("hi", "embed"));
        Assert.Contains("llm.embed", embedAsChat.Message, StringComparison.Ordinal);
        var empty = await Assert.ThrowsAsync<InvalidParamsException>(() => agent.Context.InvokeRawAsync("llm.chat", """{"messages":[]}"""u8.ToArray()));
        Assert.Contains("messages", empty.Message, StringComparison.Ordinal);
        var role = await Assert.ThrowsAsync<InvalidParamsException>(() => agent.Context.InvokeRawAsync("llm.chat", """{"messages":[{"role":"wizard","content":"x"}]}"""u8.ToArray()));
        Assert.Equal("/messages/0/role", role.Path);
        var topic = await Assert.ThrowsAsync<InvalidParamsException>(() => agent.Context.InvokeRawAsync("llm.chat", """{"messages":[{"role":"user","content":"x"}],"stream_topic":"orders.new"}"""u8.ToArray()));
        Assert.Contains("llm.stream.", topic.Message, StringComparison.Ordinal);
    }
}
