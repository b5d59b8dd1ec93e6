using System.Collections.Concurrent;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// Durable streams (docs/durability.md): publishes the bridge acknowledges once persisted, durable
/// consumers (attached again after every reconnect, their deliveries routed to their queues),
/// stream reads. Every request waits in <see cref="PendingCalls"/> for its reply.
/// </summary>
internal sealed class DurableStreams(ConnectionState state, Writer writer, PendingCalls pending, SubscriptionRouter router)
{
    private readonly ConcurrentDictionary<(string Stream, string Name), LoomConsumer> _consumers = new();

    private TimeSpan RequestTimeout => state.Options.RequestTimeout;

    public async Task<PublishAck> PublishAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(envelope.Id))
        {
            envelope.Id = Guid.NewGuid().ToString("N");
        }

        var reply = await pending.SendAndWaitAsync(PendingKind.Durable, envelope.Id, new ClientMessage { PublishAcked = new PublishRequest { Envelope = envelope } }, RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not acknowledge envelope '{envelope.Id}' on '{envelope.Topic}' within {RequestTimeout.TotalMilliseconds:0} ms; publish it again (same id: it is not stored twice)."), cancellationToken);
        return reply.KindCase == ServerMessage.KindOneofCase.Error ? throw LoomException.FromError(reply.Error.Error) : reply.PublishAck;
    }

    public async Task<LoomConsumer> ConsumeAsync(ConsumerConfig config, Func<ConsumerMessage, CancellationToken, Task> handler, CancellationToken cancellationToken)
    {
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

    public async Task<StreamReadResponse> ReadAsync(StreamReadRequest request, CancellationToken cancellationToken)
    {
        request.CorrelationId = state.Ids.Next();
        var reply = await pending.SendAndWaitAsync(PendingKind.Durable, request.CorrelationId, new ClientMessage { Read = request }, RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not answer the read of stream '{request.Stream}' within {RequestTimeout.TotalMilliseconds:0} ms."), cancellationToken);
        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            throw LoomException.FromError(reply.Error.Error);
        }

        return reply.Read.Error is { } error && error.Code != ErrorCode.Unspecified ? throw LoomException.FromError(error) : reply.Read;
    }

    /// <summary>One stream-admin request (create, info, list or delete) and its reply.</summary>
    public async Task<StreamAdminReply> AdminAsync(StreamAdminRequest request, string what, CancellationToken cancellationToken)
    {
        request.CorrelationId = state.Ids.Next();
        var reply = await pending.SendAndWaitAsync(PendingKind.Durable, request.CorrelationId, new ClientMessage { StreamAdmin = request }, RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not answer the {what} within {RequestTimeout.TotalMilliseconds:0} ms."), cancellationToken);
        return reply.KindCase == ServerMessage.KindOneofCase.Error ? throw LoomException.FromError(reply.Error.Error) : reply.StreamAdmin;
    }

    private async Task<ConsumerInfo> AttachAsync(ConsumerConfig config, CancellationToken cancellationToken)
    {
        var id = state.Ids.Next();
        var reply = await pending.SendAndWaitAsync(PendingKind.Durable, id, new ClientMessage { Consumer = new ConsumerRequest { CorrelationId = id, Attach = new ConsumerAttach { Config = config } } }, RequestTimeout, () =>
            new LoomTimeoutException($"The bridge did not answer the attach of consumer '{config.Name}' within {RequestTimeout.TotalMilliseconds:0} ms."), cancellationToken);
        return reply.KindCase == ServerMessage.KindOneofCase.Error ? throw LoomException.FromError(reply.Error.Error) : reply.Consumer.Info;
    }

    /// <summary>After a (re)connect: attach every consumer again (the replies carry no waiter).</summary>
    public void AttachAll()
    {
        foreach (var consumer in _consumers.Values)
        {
            writer.TryWrite(new ClientMessage { Consumer = new ConsumerRequest { Attach = new ConsumerAttach { Config = consumer.Config } } });
        }
    }

    /// <summary>A consumer's reply (its waiter, if any, gets it).</summary>
    public void OnConsumerReply(ServerMessage message)
    {
        if (message.Consumer.CorrelationId.Length > 0 && pending.TryRemove(message.Consumer.CorrelationId, out var op))
        {
            op.TrySetResult(message);
        }
    }

    public async ValueTask DeliverAsync(Delivery delivery, CancellationToken token)
    {
        if (_consumers.TryGetValue((delivery.Stream, delivery.Consumer), out var consumer))
        {
            await consumer.EnqueueAsync(delivery, token);
        }
        else
        {
            router.CountUnrouted(); // detached meanwhile: the bridge delivers it again after the ack wait
        }
    }

    public void SendAck(string stream, string consumer, ulong sequence, AckKind kind, uint delayMs)
    {
        // Fire and forget: a lost ack means a redelivery, which at-least-once allows.
        var ack = new ConsumerAck { Stream = stream, Consumer = consumer, Kind = kind, DelayMs = delayMs };
        ack.Sequences.Add(sequence);
        writer.TryWrite(new ClientMessage { Consumer = new ConsumerRequest { Ack = ack } });
    }

    public async Task DetachAsync(LoomConsumer consumer, bool delete)
    {
        if (!_consumers.TryRemove((consumer.Config.Stream, consumer.Config.Name), out _))
        {
            return;
        }

        if (state.IsConnected)
        {
            var id = state.Ids.Next();
            try
            {
                await pending.SendAndWaitAsync(PendingKind.Durable, id, new ClientMessage { Consumer = new ConsumerRequest { CorrelationId = id, Detach = new ConsumerDetach { Stream = consumer.Config.Stream, Consumer = consumer.Config.Name, Delete = delete } } }, RequestTimeout, () =>
                    new LoomTimeoutException($"The bridge did not answer the detach of consumer '{consumer.Config.Name}'."), CancellationToken.None);
            }
            catch (LoomException)
            {
                // The session ends or expires anyway; the bridge detaches it then.
            }
        }
    }
}
