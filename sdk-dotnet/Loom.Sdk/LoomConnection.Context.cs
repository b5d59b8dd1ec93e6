using System.Text.Json;
using Loom.Protocol.V1;

namespace Loom.Sdk;

// The agent operations of ILoomContext on a connection used directly: the same code as an agent's
// context (an AgentContext over this connection), with this connection's timeouts as defaults.
public sealed partial class LoomConnection : ILoomContext
{
    private AgentContext? _context;

    private AgentContext Context => LazyInitializer.EnsureInitialized(ref _context, () => new AgentContext(this, new AgentHostOptions
    {
        DefaultInvokeTimeout = Options.DefaultCallTimeout,
        DefaultRequestTimeout = Options.RequestTimeout,
    }, JsonSerializerOptions.Web));

    /// <inheritdoc/>
    public JsonSerializerOptions JsonOptions => Context.JsonOptions;

    /// <inheritdoc/>
    public AgentMemory Memory => Context.Memory;

    /// <inheritdoc/>
    public AgentLlm Llm => Context.Llm;

    /// <inheritdoc/>
    public ValueTask EmitAsync(string topic, ReadOnlyMemory<byte> payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.EmitAsync(topic, payload, options, cancellationToken);

    /// <inheritdoc/>
    public ValueTask EmitAsync<T>(string topic, T payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.EmitAsync(topic, payload, options, cancellationToken);

    /// <inheritdoc/>
    public Task<Envelope> RequestAsync(string topic, ReadOnlyMemory<byte> payload, TimeSpan? timeout = null, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.RequestAsync(topic, payload, timeout, options, cancellationToken);

    /// <inheritdoc/>
    public Task<TReply?> RequestAsync<TReply>(string topic, object? payload, TimeSpan? timeout = null, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.RequestAsync<TReply>(topic, payload, timeout, options, cancellationToken);

    /// <inheritdoc/>
    public ValueTask ReplyAsync(Envelope request, ReadOnlyMemory<byte> payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.ReplyAsync(request, payload, options, cancellationToken);

    /// <inheritdoc/>
    public ValueTask ReplyAsync<T>(Envelope request, T payload, EmitOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.ReplyAsync(request, payload, options, cancellationToken);

    /// <inheritdoc/>
    public Task<TOut?> InvokeAsync<TOut>(string capability, object? input, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.InvokeAsync<TOut>(capability, input, timeout, options, cancellationToken);

    /// <inheritdoc/>
    public Task<ReadOnlyMemory<byte>> InvokeRawAsync(string capability, ReadOnlyMemory<byte> inputJson, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default) =>
        Context.InvokeRawAsync(capability, inputJson, timeout, options, cancellationToken);
}
