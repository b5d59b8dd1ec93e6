using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>
/// What an <see cref="AgentContext"/> needs from wherever the agent runs: a remote bridge
/// (<see cref="LoomConnection"/>) or the core in the same process (<see cref="InProcessTransport"/>).
/// Errors are typed <see cref="Loom.Core.LoomException"/>s on both.
/// </summary>
internal interface IAgentTransport
{
    string AgentId { get; }

    string Namespace { get; }

    TimeProvider Time { get; }

    /// <summary>Publishes one envelope (sender is set from the session).</summary>
    ValueTask PublishAsync(Envelope envelope, CancellationToken cancellationToken);

    /// <summary>Publishes a request with a fresh correlation id and an inbox reply_to; waits for the reply.</summary>
    Task<Envelope> RequestAsync(Envelope request, TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>Subscribes; the handler runs in order per subscription. Dispose the result to unsubscribe.</summary>
    Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options, CancellationToken cancellationToken);

    /// <summary>Calls a capability; returns its UTF-8 JSON output or throws the typed error.</summary>
    Task<ReadOnlyMemory<byte>> CallAsync(ActionCall call, CancellationToken cancellationToken);

    /// <summary>Runs one memory operation; the response's error, if any, is thrown.</summary>
    Task<MemoryResponse> MemoryAsync(MemoryRequest request, CancellationToken cancellationToken);
}
