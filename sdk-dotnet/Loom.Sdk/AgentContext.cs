using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk;

/// <summary>
/// What an agent can do: emit events, make requests and reply to them, call capabilities,
/// subscribe, and use memory. The same API whether the agent runs against a remote bridge or
/// in-process against the core. Thread-safe; one per running agent. Errors are typed
/// <see cref="LoomException"/>s.
/// </summary>
public sealed class AgentContext : ILoomContext
{
    private const string JsonContentType = "application/json";
    private const string BytesContentType = "application/octet-stream";

    private readonly IAgentTransport _transport;
    private readonly AgentHostOptions _options;

    internal AgentContext(IAgentTransport transport, AgentHostOptions options, JsonSerializerOptions json)
    {
        _transport = transport;
        _options = options;
        JsonOptions = json;
        Memory = new AgentMemory(transport, json);
        Llm = new AgentLlm(this);
    }

    /// <summary>This agent's id.</summary>
    public string AgentId => _transport.AgentId;

    /// <summary>This agent's namespace.</summary>
    public string Namespace => _transport.Namespace;

    /// <summary>Key-value memory (the agent's namespace by default).</summary>
    public AgentMemory Memory { get; }

    /// <summary>Language models through the bridge's LLM gateway (llm.chat, llm.embed; docs/llm.md).</summary>
    public AgentLlm Llm { get; }

    /// <summary>How payloads, inputs and outputs are (de)serialized. Default web defaults.</summary>
    public JsonSerializerOptions JsonOptions { get; }

    internal IAgentTransport Transport => _transport;

    // ---------------------------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------------------------

    /// <summary>Publishes an event with a raw payload.</summary>
    /// <exception cref="InvalidParamsException">The topic is not a valid concrete topic.</exception>
    public ValueTask EmitAsync(string topic, ReadOnlyMemory<byte> payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        _transport.PublishAsync(Build(topic, ByteString.CopyFrom(payload.Span), options, BytesContentType), cancellationToken);

    /// <summary>Publishes an event with a raw payload.</summary>
    public ValueTask EmitAsync(string topic, byte[] payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        _transport.PublishAsync(Build(topic, ByteString.CopyFrom(payload), options, BytesContentType), cancellationToken);

    /// <summary>
    /// Publishes an event whose payload is <paramref name="payload"/> serialized as JSON (raw byte
    /// types, such as <see cref="Memory{T}"/> of bytes, go as they are).
    /// </summary>
    public ValueTask EmitAsync<T>(string topic, T payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Payloads.TryGetBytes(payload, out var raw)
            ? EmitAsync(topic, raw, options, cancellationToken)
            : _transport.PublishAsync(Build(topic, Json(payload), options, JsonContentType), cancellationToken);

    // ---------------------------------------------------------------------------------------
    // Request / reply
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Publishes a request on <paramref name="topic"/> and waits for the first reply (a subscriber
    /// answers with <see cref="ReplyAsync(Envelope, ReadOnlyMemory{byte}, EmitOptions?, CancellationToken)"/>).
    /// </summary>
    /// <exception cref="LoomTimeoutException">No reply within the timeout (default <see cref="AgentHostOptions.DefaultRequestTimeout"/>).</exception>
    public Task<Envelope> RequestAsync(string topic, ReadOnlyMemory<byte> payload, TimeSpan? timeout = null, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        _transport.RequestAsync(Build(topic, ByteString.CopyFrom(payload.Span), options, BytesContentType), timeout ?? _options.DefaultRequestTimeout, cancellationToken);

    /// <summary>A request whose payload is JSON; the reply's payload is read as <typeparamref name="TReply"/>.</summary>
    /// <exception cref="LoomTimeoutException">No reply within the timeout.</exception>
    /// <exception cref="InvalidParamsException">The reply is not JSON of that shape.</exception>
    public async Task<TReply?> RequestAsync<TReply>(string topic, object? payload, TimeSpan? timeout = null, EmitOptions? options = null, CancellationToken cancellationToken = default)
    {
        var request = Build(topic, Json(payload), options, JsonContentType);
        var reply = await _transport.RequestAsync(request, timeout ?? _options.DefaultRequestTimeout, cancellationToken);
        return reply.PayloadAs<TReply>(JsonOptions);
    }

    /// <summary>Replies to a request: publishes to its <c>reply_to</c> with its correlation and thread ids.</summary>
    /// <exception cref="InvalidParamsException">The envelope is not a request (no reply_to).</exception>
    public ValueTask ReplyAsync(Envelope request, ReadOnlyMemory<byte> payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        _transport.PublishAsync(BuildReply(request, ByteString.CopyFrom(payload.Span), options, BytesContentType), cancellationToken);

    /// <summary>Replies with a raw payload.</summary>
    public ValueTask ReplyAsync(Envelope request, byte[] payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        _transport.PublishAsync(BuildReply(request, ByteString.CopyFrom(payload), options, BytesContentType), cancellationToken);

    /// <summary>Replies with <paramref name="payload"/> serialized as JSON (raw byte types go as they are).</summary>
    public ValueTask ReplyAsync<T>(Envelope request, T payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Payloads.TryGetBytes(payload, out var raw)
            ? ReplyAsync(request, raw, options, cancellationToken)
            : _transport.PublishAsync(BuildReply(request, Json(payload), options, JsonContentType), cancellationToken);

    // ---------------------------------------------------------------------------------------
    // Capabilities
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Calls a capability with <paramref name="input"/> serialized as JSON and reads the output as
    /// <typeparamref name="TOut"/>.
    /// </summary>
    /// <exception cref="LoomException">INVALID_PARAMS (with the path), CAPABILITY_NOT_FOUND, PROVIDER_UNAVAILABLE,
    /// TOOL_ERROR, TIMEOUT, UNAVAILABLE.</exception>
    public async Task<TOut?> InvokeAsync<TOut>(string capability, object? input, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default)
    {
        var output = await InvokeRawAsync(capability, Json(input).Memory, timeout, options, cancellationToken);
        try
        {
            return JsonSerializer.Deserialize<TOut>(output.Span, JsonOptions);
        }
        catch (JsonException ex)
        {
            throw new InvalidParamsException($"The output of '{capability}' is not a {typeof(TOut).Name}: {ex.Message}", JsonPointer.FromJsonPath(ex.Path));
        }
    }

    /// <summary>Calls a capability with raw UTF-8 JSON input; returns its raw UTF-8 JSON output.</summary>
    public Task<ReadOnlyMemory<byte>> InvokeRawAsync(string capability, ReadOnlyMemory<byte> inputJson, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(capability);
        var effective = timeout ?? _options.DefaultInvokeTimeout;
        if (effective <= TimeSpan.Zero)
        {
            throw new InvalidParamsException($"A call timeout must be positive; got {effective}.", "/timeout_ms");
        }

        var call = new ActionCall
        {
            Capability = capability,
            InputJson = ByteString.CopyFrom(inputJson.Span),
            TimeoutMs = (uint)Math.Clamp(Math.Ceiling(effective.TotalMilliseconds), 1, uint.MaxValue),
        };
        if (options is not null)
        {
            call.Version = options.Version ?? "";
            call.ThreadId = options.ThreadId ?? "";
            call.Routing = options.Routing;
            call.TargetAgent = options.TargetAgent ?? "";
            call.Traceparent = options.Traceparent ?? "";
            call.IdempotencyKey = options.IdempotencyKey ?? "";
            if (options.Headers is not null)
            {
                foreach (var (key, value) in options.Headers)
                {
                    call.Headers[key] = value;
                }
            }
        }

        return _transport.CallAsync(call, cancellationToken);
    }

    // ---------------------------------------------------------------------------------------
    // Subscriptions
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Subscribes to a pattern (<c>*</c> one token, <c>&gt;</c> the rest). The handler gets events in
    /// order, one at a time. Dispose the result to unsubscribe.
    /// </summary>
    /// <exception cref="InvalidParamsException">The pattern is invalid.</exception>
    public Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options = null, CancellationToken cancellationToken = default) =>
        _transport.SubscribeAsync(pattern, handler, options, cancellationToken);

    // ---------------------------------------------------------------------------------------

    private ByteString Json<T>(T value) => UnsafeByteOperations.UnsafeWrap(JsonSerializer.SerializeToUtf8Bytes(value, JsonOptions));

    private static Envelope Build(string topic, ByteString payload, EmitOptions? options, string contentType)
    {
        ArgumentNullException.ThrowIfNull(topic);
        var envelope = new Envelope { Topic = topic, Payload = payload, ContentType = options?.ContentType ?? contentType };
        if (options is not null)
        {
            envelope.ThreadId = options.ThreadId ?? "";
            envelope.Qos = options.Qos;
            envelope.CorrelationId = options.CorrelationId ?? "";
            envelope.Traceparent = options.Traceparent ?? "";
            if (options.Ttl is { } ttl)
            {
                if (ttl <= TimeSpan.Zero)
                {
                    throw new InvalidParamsException($"A time to live must be positive; got {ttl}.", "/ttl_ms");
                }

                envelope.TtlMs = (uint)Math.Clamp(Math.Ceiling(ttl.TotalMilliseconds), 1, uint.MaxValue);
            }

            if (options.Headers is not null)
            {
                foreach (var (key, value) in options.Headers)
                {
                    envelope.Headers[key] = value;
                }
            }
        }

        return envelope;
    }

    private static Envelope BuildReply(Envelope request, ByteString payload, EmitOptions? options, string contentType)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (string.IsNullOrEmpty(request.ReplyTo))
        {
            throw new InvalidParamsException($"Envelope '{request.Id}' on '{request.Topic}' has no reply_to; only requests can be replied to.", "/reply_to");
        }

        var reply = Build(request.ReplyTo, payload, options, contentType);
        reply.CorrelationId = request.CorrelationId;
        if (string.IsNullOrEmpty(reply.ThreadId))
        {
            reply.ThreadId = request.ThreadId;
        }

        return reply;
    }
}
