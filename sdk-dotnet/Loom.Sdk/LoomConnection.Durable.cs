using System.Collections.Concurrent;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk;

// Durable streams (docs/durability.md): acknowledged publishes, durable consumers, stream reads.
public sealed partial class LoomConnection
{
    private readonly ConcurrentDictionary<(string Stream, string Name), LoomConsumer> _consumers = new();

    /// <summary>
    /// Publishes to a topic a durable stream captures and completes once the bridge has persisted
    /// it, with its stream sequence. The envelope id (assigned here when empty) is the message id:
    /// publishing the same envelope again within the stream's dedup window, e.g. after a reconnect,
    /// stores nothing new and answers with the first copy's sequence (<see cref="PublishAck.Duplicate"/>).
    /// </summary>
    /// <exception cref="LoomException">INVALID_PARAMS when no stream captures the topic; UNAVAILABLE when not connected (retry with the same envelope); TIMEOUT.</exception>
    public async Task<PublishAck> PublishDurableAsync(Envelope envelope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (string.IsNullOrEmpty(envelope.Id))
        {
            envelope.Id = Guid.NewGuid().ToString("N");
        }

        var reply = await SendAndWaitAsync(PendingKind.Durable, envelope.Id, new ClientMessage { PublishAcked = new PublishRequest { Envelope = envelope } }, _options.RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not acknowledge envelope '{envelope.Id}' on '{envelope.Topic}' within {_options.RequestTimeout.TotalMilliseconds:0} ms; publish it again (same id: it is not stored twice)."), cancellationToken);
        return reply.KindCase == ServerMessage.KindOneofCase.Error ? throw LoomException.FromError(reply.Error.Error) : reply.PublishAck;
    }

    /// <summary>
    /// Attaches to (creating it when new) the durable consumer <c>config.Name</c> of stream
    /// <c>config.Stream</c> and runs <paramref name="handler"/> for each delivery, one at a time.
    /// A delivery the handler did not settle is acknowledged when it returns and nak'ed when it
    /// throws. The consumer is attached again after every reconnect; its position lives in the
    /// bridge, so it also survives a restart of this process or of the bridge.
    /// </summary>
    public async Task<LoomConsumer> ConsumeAsync(ConsumerConfig config, Func<ConsumerMessage, CancellationToken, Task> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var consumer = new LoomConsumer(this, config.Clone(), handler);
        if (!_consumers.TryAdd((config.Stream, config.Name), consumer))
        {
            throw new InvalidParamsException($"Consumer '{config.Name}' of stream '{config.Stream}' is already consumed on this connection.", "/config/name");
        }

        try
        {
            consumer.Info = await AttachAsync(consumer.Config, cancellationToken);
        }
        catch
        {
            _consumers.TryRemove((config.Stream, config.Name), out _);
            await consumer.StopAsync();
            throw;
        }

        return consumer;
    }

    /// <summary>Reads events of a stream from a sequence or a time (replay); at most 1000 per call.</summary>
    public async Task<StreamReadResponse> ReadStreamAsync(StreamReadRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        request.CorrelationId = _ids.Next();
        var reply = await SendAndWaitAsync(PendingKind.Durable, request.CorrelationId, new ClientMessage { Read = request }, _options.RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not answer the read of stream '{request.Stream}' within {_options.RequestTimeout.TotalMilliseconds:0} ms."), cancellationToken);
        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            throw LoomException.FromError(reply.Error.Error);
        }

        return reply.Read.Error is { } error && error.Code != ErrorCode.Unspecified ? throw LoomException.FromError(error) : reply.Read;
    }

    private async Task<ConsumerInfo> AttachAsync(ConsumerConfig config, CancellationToken cancellationToken)
    {
        var id = _ids.Next();
        var reply = await SendAndWaitAsync(PendingKind.Durable, id, new ClientMessage { Consumer = new ConsumerRequest { CorrelationId = id, Attach = new ConsumerAttach { Config = config } } }, _options.RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not answer the attach of consumer '{config.Name}' within {_options.RequestTimeout.TotalMilliseconds:0} ms."), cancellationToken);
        return reply.KindCase == ServerMessage.KindOneofCase.Error ? throw LoomException.FromError(reply.Error.Error) : reply.Consumer.Info;
    }

    /// <summary>After a (re)connect: attach every consumer again (the replies carry no waiter).</summary>
    private void AttachConsumers()
    {
        foreach (var consumer in _consumers.Values)
        {
            _outbound.Writer.TryWrite(new ClientMessage { Consumer = new ConsumerRequest { Attach = new ConsumerAttach { Config = consumer.Config } } });
        }
    }

    private async ValueTask RouteConsumerDeliveryAsync(Delivery delivery, CancellationToken token)
    {
        if (_consumers.TryGetValue((delivery.Stream, delivery.Consumer), out var consumer))
        {
            await consumer.EnqueueAsync(delivery, token);
        }
        else
        {
            Interlocked.Increment(ref _unrouted); // detached meanwhile: the bridge delivers it again after the ack wait
        }
    }

    internal void SendConsumerAck(string stream, string consumer, ulong sequence, AckKind kind, uint delayMs)
    {
        // Fire and forget: a lost ack means a redelivery, which at-least-once allows.
        var ack = new ConsumerAck { Stream = stream, Consumer = consumer, Kind = kind, DelayMs = delayMs };
        ack.Sequences.Add(sequence);
        _outbound.Writer.TryWrite(new ClientMessage { Consumer = new ConsumerRequest { Ack = ack } });
    }

    internal async Task DetachAsync(LoomConsumer consumer, bool delete)
    {
        if (!_consumers.TryRemove((consumer.Config.Stream, consumer.Config.Name), out _))
        {
            return;
        }

        if (Status == ConnectionStatus.Connected)
        {
            var id = _ids.Next();
            try
            {
                await SendAndWaitAsync(PendingKind.Durable, id, new ClientMessage { Consumer = new ConsumerRequest { CorrelationId = id, Detach = new ConsumerDetach { Stream = consumer.Config.Stream, Consumer = consumer.Config.Name, Delete = delete } } }, _options.RequestTimeout, () =>
                    new LoomTimeoutException($"The bridge did not answer the detach of consumer '{consumer.Config.Name}'."), CancellationToken.None);
            }
            catch (LoomException)
            {
                // The session ends or expires anyway; the bridge detaches it then.
            }
        }
    }
}
