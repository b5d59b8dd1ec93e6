using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Llm.Internal;
using Loom.Protocol.V1;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Llm;

/// <summary>
/// The LLM gateway: serves <c>llm.chat</c>, <c>llm.embed</c> and <c>llm.usage</c> as in-process
/// capabilities of an <see cref="ActionBroker"/>, so every agent in every language calls models
/// through the bridge. Shared by all agents: a response cache keyed by a hash of the normalized
/// request, single-flight coalescing of identical requests in flight, micro-batching of
/// embedding texts, retries with jittered backoff and fallback to the next model, token budgets
/// per agent and per thread (BUDGET_EXCEEDED), cost accounting and a concurrency limit per
/// provider. Streaming: a call that names a <c>stream_topic</c> gets its partial answer as
/// events on that topic (the protocol has no streamed results), then the whole answer as the
/// call's result.
/// </summary>
public sealed class LlmGateway : ICapabilityProvider, IAsyncDisposable
{
    /// <summary>Provider id of the gateway in the broker.</summary>
    public const string GatewayProviderId = "local:llm";

    private const string ChatCapability = "llm.chat";
    private const string EmbedCapability = "llm.embed";
    private const string UsageCapability = "llm.usage";
    private static readonly JsonWriterOptions s_writerOptions = new() { Indented = false };

    private readonly LlmOptions _options;
    private readonly ActionBroker _broker;
    private readonly EventBus? _bus;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Dictionary<string, ProviderClient> _providers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LlmModelOptions> _models = new(StringComparer.Ordinal);
    private readonly Lru<string, CacheEntry> _cache;
    private readonly ConcurrentDictionary<string, Task<ChatAnswer>> _flights = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, EmbedBatcher> _batchers = new(StringComparer.Ordinal);
    private readonly BudgetLedger _budgets;
    private readonly LlmMetrics _metrics;
    private readonly CacheStore? _store;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<CapabilityRegistration> _registrations = [];
    private int _started;
    private int _disposed;

    /// <summary>Checks the settings and builds the clients; nothing is registered until <see cref="Start"/>.</summary>
    /// <param name="options">The gateway's settings (validated here).</param>
    /// <param name="broker">Where llm.* are registered.</param>
    /// <param name="bus">Where stream events are published; null: streaming is refused.</param>
    /// <param name="meter">Meter for the gateway's instruments (the bridge's, for /metrics); null: a private one.</param>
    /// <param name="time">Clock for backoff, batching windows and cache expiry.</param>
    /// <param name="loggerFactory">Logging.</param>
    /// <param name="environment">Reads environment variables (api_key_env); default <see cref="Environment.GetEnvironmentVariable(string)"/>.</param>
    /// <param name="cacheDirectory">
    /// Where the response cache is persisted (the bridge gives <c>&lt;data dir&gt;/llm-cache</c>);
    /// null (default) or <see cref="LlmCacheOptions.Persist"/> false: in memory only.
    /// </param>
    /// <exception cref="ArgumentException">The settings are wrong (the message says what to fix).</exception>
    public LlmGateway(LlmOptions options, ActionBroker broker, EventBus? bus = null, Meter? meter = null, TimeProvider? time = null, ILoggerFactory? loggerFactory = null, Func<string, string?>? environment = null, string? cacheDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(broker);
        options.Validate();
        _options = options;
        _broker = broker;
        _bus = bus;
        _time = time ?? TimeProvider.System;
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<LlmGateway>();
        var env = environment ?? Environment.GetEnvironmentVariable;
        foreach (var p in options.Providers)
        {
            if (p.ApiKeyEnv is { Length: > 0 } variable && string.IsNullOrEmpty(env(variable)))
            {
                Log.KeyMissing(_logger, p.Name, variable);
            }

            _providers[p.Name] = new ProviderClient(p, env);
        }

        foreach (var m in options.Models)
        {
            _models[m.Name] = m;
        }

        _cache = new Lru<string, CacheEntry>(options.Cache.Enabled ? options.Cache.MaxEntries : 0, options.Cache.MaxBytes, StringComparer.Ordinal);
        _budgets = new BudgetLedger(options.Budgets);
        _metrics = new LlmMetrics(meter ?? new Meter("Loom.Llm"), () => _cache.Count, () => _cache.Bytes);
        if (cacheDirectory is not null && options.Cache is { Enabled: true, Persist: true, MaxEntries: > 0 })
        {
            _store = OpenStore(cacheDirectory);
            if (_store is { } store)
            {
                _metrics.ObservePersistence(() => store.Dropped, () => store.Bytes);
            }
        }
    }

    /// <summary>Opens the cache log and loads what it holds; null (memory only, logged) when it cannot be opened.</summary>
    private CacheStore? OpenStore(string directory)
    {
        CacheStore? store = null;
        try
        {
            store = CacheStore.Open(directory, _options.Cache, _time, _logger);
            foreach (var entry in store.Load())
            {
                _cache.Set(entry.Key, new CacheEntry(entry.Value, entry.Expires), entry.Size);
            }

            Log.CacheLoaded(_logger, _cache.Count, directory);
            return store;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            Log.CacheOpenFailed(_logger, directory, ex.Message);
            store?.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(5));
            return null;
        }
    }

    /// <summary>Keeps an answer (or vector) in the cache, and in the cache log when there is one.</summary>
    private void Remember(string key, object value, long size)
    {
        var expires = _time.GetUtcNow() + _options.Cache.Ttl;
        if (_cache.Set(key, new CacheEntry(value, expires), size))
        {
            _store?.Append(new StoredEntry(key, value, expires, size));
        }
    }

    /// <inheritdoc />
    public string ProviderId => GatewayProviderId;

    /// <inheritdoc />
    public string AgentId => "llm-gateway";

    /// <inheritdoc />
    public bool IsLocal => true;

    /// <summary>Answers in the response cache now.</summary>
    public int CachedAnswers => _cache.Count;

    /// <summary>Registers llm.chat, llm.embed and llm.usage with the broker.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) == 1)
        {
            throw new InvalidOperationException("The LLM gateway is already started.");
        }

        _registrations.Add(_broker.Register(Descriptor(ChatCapability, "Chat completion through the bridge's LLM gateway (cached, coalesced, budgeted; tools, structured output, streaming to stream_topic).", Schemas.ChatInput), this));
        _registrations.Add(_broker.Register(Descriptor(EmbedCapability, "Embeddings through the bridge's LLM gateway (cached per text, micro-batched).", Schemas.EmbedInput), this));
        _registrations.Add(_broker.Register(Descriptor(UsageCapability, "Tokens and cost the calling agent (and a thread) spent through the LLM gateway, with their budgets.", Schemas.UsageInput), this));
        Log.Started(_logger, _models.Count, _providers.Count);
    }

    private static CapabilityDescriptor Descriptor(string name, string description, string input)
    {
        var d = new CapabilityDescriptor { Name = name, Version = "1.0.0", Description = description, InputSchemaJson = input, OutputSchemaJson = "{}" };
        d.Tags.Add("llm");
        return d;
    }

    /// <inheritdoc />
    public async ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(invocation);
        return invocation.Capability switch
        {
            ChatCapability => await ChatAsync(invocation, cancellationToken).ConfigureAwait(false),
            EmbedCapability => await EmbedAsync(invocation, cancellationToken).ConfigureAwait(false),
            UsageCapability => Usage(invocation),
            _ => throw new CapabilityNotFoundException($"The LLM gateway does not serve '{invocation.Capability}'."),
        };
    }

    // ------------------------------------------------------------------------------------------
    // llm.chat

    private async Task<ReadOnlyMemory<byte>> ChatAsync(ActionInvocation invocation, CancellationToken cancellationToken)
    {
        var call = ChatCall.Parse(invocation.InputJson, _options.MaxMessages);
        var model = ResolveChatModel(call.Model, invocation.Caller);
        if (call.StreamTopic is not null && _bus is null)
        {
            throw new InvalidParamsException("Streaming needs the gateway to run in a bridge (no event bus here).", "/stream_topic");
        }

        CheckBudget(invocation, "chat");
        var key = ChatCall.KeyFor(model.Name, call.Normalized);
        var stream = call.StreamTopic is null ? null : new StreamPublisher(_bus!, call.StreamTopic, invocation, _logger);
        if (call.UseCache && TryCached(key, out var hit))
        {
            _metrics.Requests.Add(1, Tag("operation", "chat"), Tag("served", "cache"));
            if (stream is not null)
            {
                await stream.DeltaAsync(hit.Text, cancellationToken).ConfigureAwait(false);
                await stream.DoneAsync(cancellationToken).ConfigureAwait(false);
            }

            return Output(hit, cached: true, coalesced: false, call.JsonOutput);
        }

        // The upstream work runs under the gateway's stop and the caller's deadline, not the
        // caller's cancellation: identical requests that joined it keep waiting if the first leaves.
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        deadline.CancelAfter(Until(invocation.Deadline));
        if (stream is not null)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, cancellationToken);
            var streamed = await RunChatAsync(model, call, invocation, stream, linked.Token).ConfigureAwait(false);
            Settle(invocation, streamed, key, call.UseCache);
            await stream.DoneAsync(cancellationToken).ConfigureAwait(false);
            _metrics.Requests.Add(1, Tag("operation", "chat"), Tag("served", "upstream"));
            return Output(streamed, cached: false, coalesced: false, call.JsonOutput);
        }

        var mine = new TaskCompletionSource<ChatAnswer>(TaskCreationOptions.RunContinuationsAsynchronously);
        var flight = call.UseCache ? _flights.GetOrAdd(key, mine.Task) : mine.Task;
        if (!ReferenceEquals(flight, mine.Task))
        {
            var joined = await flight.WaitAsync(cancellationToken).ConfigureAwait(false);
            _metrics.Requests.Add(1, Tag("operation", "chat"), Tag("served", "coalesced"));
            return Output(joined, cached: false, coalesced: true, call.JsonOutput);
        }

        try
        {
            var answer = await RunChatAsync(model, call, invocation, null, deadline.Token).WaitAsync(cancellationToken).ConfigureAwait(false);
            Settle(invocation, answer, key, call.UseCache);
            mine.TrySetResult(answer);
            _metrics.Requests.Add(1, Tag("operation", "chat"), Tag("served", "upstream"));
            return Output(answer, cached: false, coalesced: false, call.JsonOutput);
        }
        catch (Exception ex)
        {
            mine.TrySetException(ex);
            _ = mine.Task.Exception; // observed: followers (if any) rethrow it
            _metrics.Requests.Add(1, Tag("operation", "chat"), Tag("served", "error"));
            throw;
        }
        finally
        {
            _flights.TryRemove(new KeyValuePair<string, Task<ChatAnswer>>(key, mine.Task));
        }
    }

    private void Settle(ActionInvocation invocation, ChatAnswer answer, string key, bool cache)
    {
        _budgets.Charge(invocation.Caller, invocation.ThreadId, answer.InputTokens + answer.OutputTokens, answer.Cost);
        if (cache && _options.Cache.Enabled)
        {
            Remember(key, answer, answer.Size);
        }
    }

    private bool TryCached(string key, out ChatAnswer answer)
    {
        if (_options.Cache.Enabled && _cache.TryGet(key, out var entry))
        {
            if (entry.Expires > _time.GetUtcNow() && entry.Value is ChatAnswer a)
            {
                answer = a;
                return true;
            }

            _cache.Remove(key);
        }

        answer = null!;
        return false;
    }

    private async Task<ChatAnswer> RunChatAsync(LlmModelOptions first, ChatCall call, ActionInvocation invocation, StreamPublisher? stream, CancellationToken cancellationToken)
    {
        var chain = Chain(first);
        var failures = new List<string>();
        var tried = 0;
        for (var m = 0; m < chain.Count; m++)
        {
            var model = chain[m];
            var provider = _providers[model.Provider];
            for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
            {
                await provider.Slots.WaitAsync(cancellationToken).ConfigureAwait(false);
                tried++;
                using var activity = StartActivity("chat", model, provider, invocation, attempt);
                var started = _time.GetTimestamp();
                try
                {
                    var options = call.Options.Clone();
                    options.ModelId = model.UpstreamId;
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(provider.Options.Timeout);
                    ChatResponse response;
                    if (stream is not null)
                    {
                        if (stream.Sent > 0)
                        {
                            await stream.RestartAsync(model.Name, cancellationToken).ConfigureAwait(false);
                        }

                        var updates = new List<ChatResponseUpdate>();
                        await foreach (var update in provider.Chat(model.UpstreamId).GetStreamingResponseAsync(call.Messages, options, timeout.Token).ConfigureAwait(false))
                        {
                            updates.Add(update);
                            if (update.Text is { Length: > 0 } text)
                            {
                                await stream.DeltaAsync(text, cancellationToken).ConfigureAwait(false);
                            }
                        }

                        response = updates.ToChatResponse();
                    }
                    else
                    {
                        response = await provider.Chat(model.UpstreamId).GetResponseAsync(call.Messages, options, timeout.Token).ConfigureAwait(false);
                    }

                    var answer = Answer(model, provider, response, tried, m > 0 ? chain[0].Name : null);
                    RecordSuccess(model, started, answer.InputTokens, answer.OutputTokens, answer.Cost, activity);
                    return answer;
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                {
                    var kind = UpstreamErrors.Kind(ex);
                    RecordFailure(model, started, kind, activity);
                    Log.UpstreamFailed(_logger, model.Name, provider.Options.Name, attempt, UpstreamErrors.Describe(ex));
                    failures.Add($"{model.Name} (attempt {attempt}): {UpstreamErrors.Describe(ex)}");
                    if (!UpstreamErrors.Retryable(ex) || attempt == _options.MaxAttempts)
                    {
                        break;
                    }

                    _metrics.Retries.Add(1, Tag("model", model.Name));
                    await Task.Delay(Backoff(attempt), _time, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    provider.Slots.Release();
                }
            }

            if (m + 1 < chain.Count)
            {
                _metrics.Fallbacks.Add(1, Tag("model", model.Name));
                Log.FallingBack(_logger, model.Name, chain[m + 1].Name);
            }
        }

        // TOOL_ERROR, not PROVIDER_UNAVAILABLE: the latter would make the broker take the gateway itself out of service.
        throw new ToolErrorException($"Every model tried failed: {string.Join("; ", failures)}. Check the providers in loom.yaml llm: (base_url, api_key_env) and that they are up.");
    }

    private static ChatAnswer Answer(LlmModelOptions model, ProviderClient provider, ChatResponse response, int attempts, string? fallbackFrom)
    {
        var input = response.Usage?.InputTokenCount ?? 0;
        var output = response.Usage?.OutputTokenCount ?? 0;
        var calls = response.Messages.SelectMany(m => m.Contents).OfType<FunctionCallContent>()
            .Select(c => new ToolCall(c.CallId, c.Name, JsonSerializer.Serialize(c.Arguments ?? new Dictionary<string, object?>(), AIJsonUtilities.DefaultOptions)))
            .ToList();
        return new ChatAnswer(model.Name, provider.Options.Name, response.Text, response.FinishReason?.Value, calls, input, output, Cost(model, input, output), attempts, fallbackFrom);
    }

    private static double Cost(LlmModelOptions model, long input, long output) =>
        ((input * model.InputCostPerMillion) + (output * model.OutputCostPerMillion)) / 1_000_000.0;

    private List<LlmModelOptions> Chain(LlmModelOptions first)
    {
        var chain = new List<LlmModelOptions> { first };
        foreach (var name in first.Fallback.Concat(_options.Fallback))
        {
            if (_models.TryGetValue(name, out var m) && m.Embedding == first.Embedding && !chain.Contains(m))
            {
                chain.Add(m);
            }
        }

        return chain;
    }

    private LlmModelOptions ResolveChatModel(string? requested, string caller)
    {
        var name = requested
            ?? (_options.AgentModels.TryGetValue(caller, out var agentModel) ? agentModel : null)
            ?? _options.DefaultModel
            ?? _options.Models.FirstOrDefault(m => !m.Embedding)?.Name
            ?? throw new InvalidParamsException("No chat model is configured (loom.yaml llm.models).", "/model");
        if (!_models.TryGetValue(name, out var model))
        {
            throw new InvalidParamsException($"Model '{name}' is not configured; known chat models: {string.Join(", ", _options.Models.Where(m => !m.Embedding).Select(m => m.Name))}.", "/model");
        }

        if (model.Embedding)
        {
            throw new InvalidParamsException($"Model '{name}' is an embedding model; call llm.embed with it, or name a chat model.", "/model");
        }

        return model;
    }

    // ------------------------------------------------------------------------------------------
    // llm.embed

    private async Task<ReadOnlyMemory<byte>> EmbedAsync(ActionInvocation invocation, CancellationToken cancellationToken)
    {
        using var doc = ChatCall.ParseObject(invocation.InputJson);
        var root = doc.RootElement;
        var texts = new List<string>();
        if (root.TryGetProperty("input", out var input) && input.ValueKind == JsonValueKind.String)
        {
            texts.Add(input.GetString()!);
        }
        else if (input.ValueKind == JsonValueKind.Array)
        {
            foreach (var t in input.EnumerateArray())
            {
                texts.Add(t.ValueKind == JsonValueKind.String ? t.GetString()! : throw new InvalidParamsException("'input' must be a string or an array of strings.", "/input"));
            }
        }

        if (texts.Count == 0)
        {
            throw new InvalidParamsException("'input' must be a non-empty string or array of strings.", "/input");
        }

        if (texts.Count > _options.MaxEmbedInputs)
        {
            throw new InvalidParamsException($"'input' has {texts.Count} texts; at most {_options.MaxEmbedInputs} are accepted.", "/input");
        }

        var name = ChatCall.OptionalString(root, "model") ?? _options.DefaultEmbeddingModel ?? _options.Models.FirstOrDefault(m => m.Embedding)?.Name
            ?? throw new InvalidParamsException("No embedding model is configured (loom.yaml llm.models with embedding: true).", "/model");
        if (!_models.TryGetValue(name, out var model) || !model.Embedding)
        {
            throw new InvalidParamsException($"'{name}' is not a configured embedding model; known: {string.Join(", ", _options.Models.Where(m => m.Embedding).Select(m => m.Name))}.", "/model");
        }

        CheckBudget(invocation, "embed");
        var useCache = !(root.TryGetProperty("cache", out var c) && c.ValueKind == JsonValueKind.False);
        var results = new float[texts.Count][];
        var pending = new List<(int Index, Task<EmbedResult> Task)>();
        var cached = 0;
        var batcher = _batchers.GetOrAdd(model.Name, _ => new EmbedBatcher(model, _providers[model.Provider], _options, _metrics, _time, _logger, _stop.Token));
        for (var i = 0; i < texts.Count; i++)
        {
            var key = ChatCall.Hash("embed\n" + model.Name + "\n" + texts[i]);
            if (useCache && _options.Cache.Enabled && _cache.TryGet(key, out var entry) && entry.Expires > _time.GetUtcNow() && entry.Value is float[] vector)
            {
                results[i] = vector;
                cached++;
            }
            else
            {
                pending.Add((i, batcher.Enqueue(texts[i])));
            }
        }

        long tokens = 0;
        if (pending.Count > 0)
        {
            await Task.WhenAll(pending.Select(p => p.Task)).WaitAsync(Until(invocation.Deadline), _time, cancellationToken).ConfigureAwait(false);
            foreach (var (index, task) in pending)
            {
                var result = task.Result;
                results[index] = result.Vector;
                tokens += result.Tokens;
                if (useCache && _options.Cache.Enabled)
                {
                    Remember(ChatCall.Hash("embed\n" + model.Name + "\n" + texts[index]), result.Vector, (result.Vector.Length * 4) + 64);
                }
            }
        }

        var cost = Cost(model, tokens, 0);
        _budgets.Charge(invocation.Caller, invocation.ThreadId, tokens, cost);
        _metrics.Requests.Add(1, Tag("operation", "embed"), Tag("served", pending.Count == 0 ? "cache" : "upstream"));
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, s_writerOptions))
        {
            w.WriteStartObject();
            w.WriteString("model", model.Name);
            w.WriteStartArray("embeddings");
            foreach (var v in results)
            {
                w.WriteStartArray();
                foreach (var f in v)
                {
                    w.WriteNumberValue(f);
                }

                w.WriteEndArray();
            }

            w.WriteEndArray();
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", tokens);
            w.WriteEndObject();
            w.WriteNumber("cost_usd", cost);
            w.WriteNumber("cached", cached);
            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    // ------------------------------------------------------------------------------------------
    // llm.usage

    private ReadOnlyMemory<byte> Usage(ActionInvocation invocation)
    {
        using var doc = ChatCall.ParseObject(invocation.InputJson);
        var thread = ChatCall.OptionalString(doc.RootElement, "thread_id") ?? invocation.ThreadId;
        var agent = _budgets.Agent(invocation.Caller);
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, s_writerOptions))
        {
            w.WriteStartObject();
            w.WriteString("agent", invocation.Caller);
            w.WriteNumber("tokens", agent.Tokens);
            w.WriteNumber("cost_usd", agent.Cost);
            w.WriteNumber("budget_tokens", _budgets.AgentLimit(invocation.Caller));
            if (thread.Length > 0)
            {
                var t = _budgets.Thread(thread);
                w.WriteStartObject("thread");
                w.WriteString("id", thread);
                w.WriteNumber("tokens", t.Tokens);
                w.WriteNumber("cost_usd", t.Cost);
                w.WriteNumber("budget_tokens", _budgets.ThreadLimit);
                w.WriteEndObject();
            }

            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    // ------------------------------------------------------------------------------------------

    private void CheckBudget(ActionInvocation invocation, string operation)
    {
        if (_budgets.Check(invocation.Caller, invocation.ThreadId) is { } refusal)
        {
            _metrics.BudgetRefusals.Add(1, Tag("scope", refusal.Scope));
            _metrics.Requests.Add(1, Tag("operation", operation), Tag("served", "budget_exceeded"));
            throw new BudgetExceededException(refusal.Message);
        }
    }

    private static Activity? StartActivity(string operation, LlmModelOptions model, ProviderClient provider, ActionInvocation invocation, int attempt)
    {
        var activity = LoomTelemetry.Source.StartActivity($"{operation} {model.UpstreamId}", ActivityKind.Client, Activity.Current?.Context ?? LoomTelemetry.ParentOf(invocation.Traceparent, invocation.Tracestate));
        if (activity is not null)
        {
            activity.SetTag("gen_ai.operation.name", operation);
            activity.SetTag("gen_ai.system", provider.Options.Kind == LlmProviderKind.Anthropic ? "anthropic" : "openai");
            activity.SetTag("gen_ai.request.model", model.UpstreamId);
            activity.SetTag("loom.llm.model", model.Name);
            activity.SetTag("loom.llm.provider", provider.Options.Name);
            activity.SetTag("loom.llm.attempt", attempt);
            activity.SetTag("loom.caller", invocation.Caller);
        }

        return activity;
    }

    private void RecordSuccess(LlmModelOptions model, long started, long input, long output, double cost, Activity? activity)
    {
        var tag = Tag("model", model.Name);
        _metrics.Duration.Record(_time.GetElapsedTime(started).TotalSeconds, tag);
        _metrics.Upstream.Add(1, tag, Tag("outcome", "ok"));
        _metrics.Tokens.Add(input, tag, Tag("direction", "input"));
        _metrics.Tokens.Add(output, tag, Tag("direction", "output"));
        _metrics.Cost.Add(cost, tag);
        activity?.SetTag("gen_ai.usage.input_tokens", input);
        activity?.SetTag("gen_ai.usage.output_tokens", output);
    }

    private void RecordFailure(LlmModelOptions model, long started, string kind, Activity? activity)
    {
        var tag = Tag("model", model.Name);
        _metrics.Duration.Record(_time.GetElapsedTime(started).TotalSeconds, tag);
        _metrics.Upstream.Add(1, tag, Tag("outcome", kind));
        activity?.SetStatus(ActivityStatusCode.Error, kind);
        activity?.SetTag("error.type", kind);
    }

    private TimeSpan Backoff(int attempt)
    {
        var cap = Math.Min(5000, _options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 1));
        return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * cap);
    }

    private TimeSpan Until(DateTimeOffset deadline)
    {
        if (deadline == default)
        {
            return TimeSpan.FromMinutes(10);
        }

        var left = deadline - _time.GetUtcNow();
        return left <= TimeSpan.Zero ? TimeSpan.FromMilliseconds(1) : left;
    }

    private static KeyValuePair<string, object?> Tag(string key, object? value) => new(key, value);

    private static ReadOnlyMemory<byte> Output(ChatAnswer a, bool cached, bool coalesced, bool json)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, s_writerOptions))
        {
            w.WriteStartObject();
            w.WriteString("model", a.Model);
            w.WriteString("provider", a.Provider);
            w.WriteString("content", a.Text);
            if (json)
            {
                w.WritePropertyName("json");
                try
                {
                    using var parsed = JsonDocument.Parse(a.Text);
                    parsed.RootElement.WriteTo(w);
                }
                catch (JsonException)
                {
                    w.WriteNullValue();
                }
            }

            w.WriteStartArray("tool_calls");
            foreach (var call in a.ToolCalls)
            {
                w.WriteStartObject();
                w.WriteString("id", call.Id);
                w.WriteString("name", call.Name);
                w.WritePropertyName("arguments");
                w.WriteRawValue(call.ArgumentsJson);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteString("finish_reason", a.FinishReason);
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", cached || coalesced ? 0 : a.InputTokens);
            w.WriteNumber("output_tokens", cached || coalesced ? 0 : a.OutputTokens);
            w.WriteEndObject();
            w.WriteNumber("cost_usd", cached || coalesced ? 0 : a.Cost);
            w.WriteBoolean("cached", cached);
            w.WriteBoolean("coalesced", coalesced);
            w.WriteNumber("attempts", a.Attempts);
            if (a.FallbackFrom is not null)
            {
                w.WriteString("fallback_from", a.FallbackFrom);
            }

            w.WriteEndObject();
        }

        return buffer.ToArray();
    }

    /// <summary>Unregisters the capabilities, stops batching and closes the clients.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _broker.UnregisterAll(_registrations);
        await _stop.CancelAsync().ConfigureAwait(false);
        foreach (var b in _batchers.Values)
        {
            await b.DisposeAsync().ConfigureAwait(false);
        }

        foreach (var p in _providers.Values)
        {
            p.Dispose();
        }

        if (_store is not null)
        {
            await _store.DisposeAsync().ConfigureAwait(false);
        }

        _stop.Dispose();
    }

    private sealed record CacheEntry(object Value, DateTimeOffset Expires);
}
