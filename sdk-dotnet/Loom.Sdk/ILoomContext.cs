using System.Text.Json;
using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>
/// What an agent can do, wherever it runs: emit events, make requests and reply to them, call
/// capabilities, subscribe, use memory and language models, and (as extension methods,
/// <see cref="CollaborationExtensions"/>) collaborate. Implemented by <see cref="AgentContext"/>
/// (an agent run by <see cref="LoomAgentHost"/>, remote or in-process) and by
/// <see cref="LoomConnection"/> (a connection used directly), so code written against it runs on
/// both. Not meant to be implemented outside the SDK.
/// </summary>
public interface ILoomContext
{
    /// <summary>This agent's id.</summary>
    string AgentId { get; }

    /// <summary>This agent's namespace (its default memory namespace).</summary>
    string Namespace { get; }

    /// <summary>How payloads, inputs and outputs are (de)serialized.</summary>
    JsonSerializerOptions JsonOptions { get; }

    /// <summary>Key-value memory (the agent's namespace by default).</summary>
    AgentMemory Memory { get; }

    /// <summary>Language models through the bridge's LLM gateway (docs/llm.md).</summary>
    AgentLlm Llm { get; }

    /// <summary>Publishes an event with a raw payload.</summary>
    ValueTask EmitAsync(string topic, ReadOnlyMemory<byte> payload, EmitOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Publishes an event whose payload is <paramref name="payload"/> as JSON (raw byte types go as they are).</summary>
    ValueTask EmitAsync<T>(string topic, T payload, EmitOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Publishes a request and waits for the first reply.</summary>
    Task<Envelope> RequestAsync(string topic, ReadOnlyMemory<byte> payload, TimeSpan? timeout = null, EmitOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>A request whose payload is JSON; the reply's payload is read as <typeparamref name="TReply"/>.</summary>
    Task<TReply?> RequestAsync<TReply>(string topic, object? payload, TimeSpan? timeout = null, EmitOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Replies to a request (to its <c>reply_to</c>, with its correlation and thread ids).</summary>
    ValueTask ReplyAsync(Envelope request, ReadOnlyMemory<byte> payload, EmitOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Replies with <paramref name="payload"/> as JSON (raw byte types go as they are).</summary>
    ValueTask ReplyAsync<T>(Envelope request, T payload, EmitOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Calls a capability with <paramref name="input"/> as JSON; reads the output as <typeparamref name="TOut"/>.</summary>
    Task<TOut?> InvokeAsync<TOut>(string capability, object? input, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Calls a capability with raw UTF-8 JSON input; returns its raw UTF-8 JSON output.</summary>
    Task<ReadOnlyMemory<byte>> InvokeRawAsync(string capability, ReadOnlyMemory<byte> inputJson, TimeSpan? timeout = null, InvokeOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Subscribes to a pattern; the handler gets events in order, one at a time. Dispose the result to unsubscribe.</summary>
    Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options = null, CancellationToken cancellationToken = default);
}
