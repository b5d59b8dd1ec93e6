using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Threading.Channels;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>
/// Language models through the bridge's LLM gateway: thin wrappers over the <c>llm.chat</c>,
/// <c>llm.embed</c> and <c>llm.usage</c> capabilities (docs/llm.md). The same names exist in the
/// Python (<c>ctx.llm.chat</c>) and TypeScript (<c>ctx.llm.chat</c>) SDKs.
/// </summary>
public sealed class AgentLlm
{
    /// <summary>How requests and results are written: snake_case, nulls left out.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(120);
    private static readonly TimeSpan StreamTailTimeout = TimeSpan.FromSeconds(10);
    private readonly AgentContext _context;

    internal AgentLlm(AgentContext context) => _context = context;

    /// <summary>One chat completion.</summary>
    /// <exception cref="LoomException">INVALID_PARAMS (a bad request or unknown model), BUDGET_EXCEEDED, PROVIDER_UNAVAILABLE (every model failed), TIMEOUT.</exception>
    public async Task<LlmChatResult> ChatAsync(LlmChatRequest request, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var output = await _context.InvokeRawAsync("llm.chat", JsonSerializer.SerializeToUtf8Bytes(request, JsonOptions), timeout ?? DefaultTimeout, options, cancellationToken).ConfigureAwait(false);
        return JsonSerializer.Deserialize<LlmChatResult>(output.Span, JsonOptions)!;
    }

    /// <summary>One chat completion of a single user message.</summary>
    public Task<LlmChatResult> ChatAsync(string prompt, string? model = null, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default) =>
        ChatAsync(new LlmChatRequest { Model = model, Messages = [LlmMessage.User(prompt)] }, timeout, options, cancellationToken);

    /// <summary>
    /// A chat completion streamed: <see cref="LlmStreamEventType.Delta"/> events with pieces of the
    /// answer as the model writes them (a <see cref="LlmStreamEventType.Restart"/> means what came so
    /// far is void: the gateway retried or fell back to another model), then one
    /// <see cref="LlmStreamEventType.Result"/> with the whole answer. The pieces travel as events on a
    /// topic under <c>llm.stream.</c> this agent subscribes to for the call.
    /// </summary>
    public async IAsyncEnumerable<LlmStreamEvent> StreamChatAsync(LlmChatRequest request, TimeSpan? timeout = null, InvokeOptions? options = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        var topic = "llm.stream." + Guid.NewGuid().ToString("N");
        var events = Channel.CreateBounded<LlmStreamEvent>(new BoundedChannelOptions(4096) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        await using var subscription = await _context.SubscribeAsync(topic, async (envelope, ct) =>
        {
            var e = JsonSerializer.Deserialize<LlmStreamEvent>(envelope.Payload.Span, JsonOptions);
            if (e is not null)
            {
                await events.Writer.WriteAsync(e, ct).ConfigureAwait(false);
            }
        }, new SubscribeOptions { QueueCapacity = 4096, Overflow = OverflowPolicy.Block }, cancellationToken).ConfigureAwait(false);
        var streamed = request with { StreamTopic = topic };
        var call = ChatAsync(streamed, timeout, options, cancellationToken);
        var done = false;
        while (!done)
        {
            var read = events.Reader.WaitToReadAsync(cancellationToken).AsTask();
            var first = await Task.WhenAny(read, call).ConfigureAwait(false);
            if (first == call && !read.IsCompleted)
            {
                // The answer is back: the events published before it are on their way; wait for "done".
                await call.ConfigureAwait(false); // throws the call's error
                using var tail = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                tail.CancelAfter(StreamTailTimeout);
                try
                {
                    await read.WaitAsync(tail.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    break; // the stream events were lost (a full queue, say): the result still stands
                }
            }

            while (events.Reader.TryRead(out var e))
            {
                if (e.Type == LlmStreamEventType.Done)
                {
                    done = true;
                    break;
                }

                yield return e;
            }
        }

        var result = await call.ConfigureAwait(false);
        yield return new LlmStreamEvent { Type = LlmStreamEventType.Result, Result = result };
    }

    /// <summary>Embeddings of <paramref name="input"/>, one vector per text, in order.</summary>
    public async Task<LlmEmbedResult> EmbedAsync(IReadOnlyList<string> input, string? model = null, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        var output = await _context.InvokeRawAsync("llm.embed", JsonSerializer.SerializeToUtf8Bytes(new { model, input }, JsonOptions), timeout ?? DefaultTimeout, options, cancellationToken).ConfigureAwait(false);
        return JsonSerializer.Deserialize<LlmEmbedResult>(output.Span, JsonOptions)!;
    }

    /// <summary>Tokens and cost this agent (and the thread of <paramref name="options"/>) spent, with the budgets.</summary>
    public async Task<LlmUsage> UsageAsync(InvokeOptions? options = null, CancellationToken cancellationToken = default)
    {
        var output = await _context.InvokeRawAsync("llm.usage", "{}"u8.ToArray(), DefaultTimeout, options, cancellationToken).ConfigureAwait(false);
        return JsonSerializer.Deserialize<LlmUsage>(output.Span, JsonOptions)!;
    }
}

/// <summary>A message of a conversation.</summary>
public sealed record LlmMessage
{
    /// <summary>system, user, assistant or tool.</summary>
    public required string Role { get; init; }

    public string? Content { get; init; }

    /// <summary>For a tool message: the id of the call it answers.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>For an assistant message: the tool calls it made.</summary>
    public IReadOnlyList<LlmToolCall>? ToolCalls { get; init; }

    public static LlmMessage System(string content) => new() { Role = "system", Content = content };

    public static LlmMessage User(string content) => new() { Role = "user", Content = content };

    public static LlmMessage Assistant(string content) => new() { Role = "assistant", Content = content };

    public static LlmMessage ToolResult(string toolCallId, string content) => new() { Role = "tool", ToolCallId = toolCallId, Content = content };
}

/// <summary>A tool the model may call: a name, what it does, and a JSON Schema of its arguments.</summary>
public sealed record LlmTool(string Name, string? Description = null, JsonElement? Parameters = null);

/// <summary>A tool call the model made.</summary>
public sealed record LlmToolCall(string Id, string Name, JsonElement Arguments);

/// <summary>What to ask for: structured output when <see cref="Type"/> is json_schema.</summary>
public sealed record LlmResponseFormat
{
    /// <summary>text, json or json_schema.</summary>
    public string Type { get; init; } = "json_schema";

    public JsonElement? Schema { get; init; }

    public string? Name { get; init; }

    /// <summary>Structured output matching <paramref name="schema"/>.</summary>
    public static LlmResponseFormat JsonSchema(JsonElement schema, string name = "answer") => new() { Schema = schema, Name = name };
}

/// <summary>An llm.chat request (docs/llm.md).</summary>
public sealed record LlmChatRequest
{
    /// <summary>A model name from loom.yaml llm.models; null: the agent's default, else the gateway's.</summary>
    public string? Model { get; init; }

    public required IReadOnlyList<LlmMessage> Messages { get; init; }

    public IReadOnlyList<LlmTool>? Tools { get; init; }

    /// <summary>auto, none or required.</summary>
    public string? ToolChoice { get; init; }

    public LlmResponseFormat? ResponseFormat { get; init; }

    public double? Temperature { get; init; }

    public int? MaxTokens { get; init; }

    public IReadOnlyList<string>? Stop { get; init; }

    /// <summary>False: neither served from nor stored in the cache, and not coalesced.</summary>
    public bool? Cache { get; init; }

    /// <summary>Set by <see cref="AgentLlm.StreamChatAsync"/>.</summary>
    public string? StreamTopic { get; init; }
}

/// <summary>Tokens of one answer.</summary>
public sealed record LlmTokenUsage(long InputTokens, long OutputTokens);

/// <summary>An llm.chat answer.</summary>
public sealed record LlmChatResult
{
    /// <summary>The model that answered (after any fallback).</summary>
    public string Model { get; init; } = "";

    public string Provider { get; init; } = "";

    public string Content { get; init; } = "";

    /// <summary>The content parsed, when a JSON response format was asked for.</summary>
    public JsonElement? Json { get; init; }

    public IReadOnlyList<LlmToolCall> ToolCalls { get; init; } = [];

    public string? FinishReason { get; init; }

    /// <summary>Tokens this call spent upstream (0 for cache hits and coalesced calls).</summary>
    public LlmTokenUsage Usage { get; init; } = new(0, 0);

    public double CostUsd { get; init; }

    public bool Cached { get; init; }

    /// <summary>True when an identical request in flight answered this one.</summary>
    public bool Coalesced { get; init; }

    public int Attempts { get; init; }

    /// <summary>The model asked for, when another one answered.</summary>
    public string? FallbackFrom { get; init; }
}

/// <summary>Kinds of <see cref="LlmStreamEvent"/>.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LlmStreamEventType>))]
public enum LlmStreamEventType
{
    /// <summary>A piece of the answer.</summary>
    [JsonStringEnumMemberName("delta")]
    Delta,

    /// <summary>The pieces so far are void (a retry or fallback starts over).</summary>
    [JsonStringEnumMemberName("restart")]
    Restart,

    /// <summary>The gateway sent everything (not yielded).</summary>
    [JsonStringEnumMemberName("done")]
    Done,

    /// <summary>The whole answer (last).</summary>
    [JsonStringEnumMemberName("result")]
    Result,
}

/// <summary>One event of a streamed chat.</summary>
public sealed record LlmStreamEvent
{
    public LlmStreamEventType Type { get; init; }

    /// <summary>The piece, for <see cref="LlmStreamEventType.Delta"/>.</summary>
    public string? Text { get; init; }

    /// <summary>The model starting over, for <see cref="LlmStreamEventType.Restart"/>.</summary>
    public string? Model { get; init; }

    /// <summary>The answer, for <see cref="LlmStreamEventType.Result"/>.</summary>
    public LlmChatResult? Result { get; init; }
}

/// <summary>An llm.embed answer.</summary>
public sealed record LlmEmbedResult
{
    public string Model { get; init; } = "";

    public IReadOnlyList<float[]> Embeddings { get; init; } = [];

    public LlmTokenUsage Usage { get; init; } = new(0, 0);

    public double CostUsd { get; init; }

    /// <summary>Texts served from the cache.</summary>
    public int Cached { get; init; }
}

/// <summary>Spending of one thread.</summary>
public sealed record LlmThreadUsage(string Id, long Tokens, double CostUsd, long BudgetTokens);

/// <summary>What an agent spent through the gateway (llm.usage); budgets of 0 are unlimited.</summary>
public sealed record LlmUsage(string Agent, long Tokens, double CostUsd, long BudgetTokens, LlmThreadUsage? Thread);
