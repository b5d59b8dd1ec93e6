using Loom.Protocol.V1;

namespace Loom.Sdk;

// Durable streams (docs/durability.md): acknowledged publishes, durable consumers, stream reads.
public sealed partial class LoomConnection
{
    /// <summary>
    /// Publishes to a topic a durable stream captures and completes once the bridge has persisted
    /// it, with its stream sequence. The envelope id (assigned here when empty) is the message id:
    /// publishing the same envelope again within the stream's dedup window, e.g. after a reconnect,
    /// stores nothing new and answers with the first copy's sequence (<see cref="PublishAck.Duplicate"/>).
    /// </summary>
    /// <exception cref="Loom.Core.LoomException">INVALID_PARAMS when no stream captures the topic; UNAVAILABLE when not connected (retry with the same envelope); TIMEOUT.</exception>
    public Task<PublishAck> PublishDurableAsync(Envelope envelope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        return _durable.PublishAsync(envelope, cancellationToken);
    }

    /// <summary>
    /// Attaches to (creating it when new) the durable consumer <c>config.Name</c> of stream
    /// <c>config.Stream</c> and runs <paramref name="handler"/> for each delivery, one at a time.
    /// A delivery the handler did not settle is acknowledged when it returns and nak'ed when it
    /// throws. The consumer is attached again after every reconnect; its position lives in the
    /// bridge, so it also survives a restart of this process or of the bridge.
    /// </summary>
    public Task<LoomConsumer> ConsumeAsync(ConsumerConfig config, Func<ConsumerMessage, CancellationToken, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        return _durable.ConsumeAsync(config, handler, cancellationToken);
    }

    /// <summary>Reads events of a stream from a sequence or a time (replay); at most 1000 per call.</summary>
    public Task<StreamReadResponse> ReadStreamAsync(StreamReadRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        return _durable.ReadAsync(request, cancellationToken);
    }
}
