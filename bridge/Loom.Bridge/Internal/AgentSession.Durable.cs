using Loom.Bridge.Internal.Streams;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>The session's durable-stream requests: consumers, reads and stream administration.</summary>
internal sealed partial class AgentSession
{
    private DurableStream? StreamFor(string name, string correlationId, string path, out LoomException? error)
    {
        error = null;
        if (Streams is null)
        {
            error = new InvalidParamsException("This bridge has no data directory, so it holds no durable streams: start it with --data-dir (loom up) or data_dir: in loom.yaml (docs/durability.md).", path);
            return null;
        }

        if (!Streams.TryGet(name, out var stream))
        {
            error = new InvalidParamsException($"There is no durable stream '{name}'; the bridge has {(Streams.Streams.Count == 0 ? "none" : string.Join(", ", Streams.Streams.Select(s => s.Name)))}.", path);
            return null;
        }

        foreach (var subject in stream.Config.Subjects)
        {
            if (Refused(PermissionAction.Subscribe, subject) is { } refusal)
            {
                error = refusal;
                return null;
            }
        }

        return stream;
    }

    private async ValueTask ConsumerRequestAsync(ConsumerRequest request, CancellationToken token)
    {
        var correlationId = request.CorrelationId;
        switch (request.OpCase)
        {
            case ConsumerRequest.OpOneofCase.Attach:
                {
                    var config = request.Attach.Config ?? new ConsumerConfig();
                    if (DurableConsumer.Check(config) is { } invalid)
                    {
                        await ReplyErrorAsync(correlationId, invalid, token);
                        return;
                    }

                    if (StreamFor(config.Stream, correlationId, "/config/stream", out var error) is not { } stream)
                    {
                        await ReplyErrorAsync(correlationId, error!, token);
                        return;
                    }

                    var consumer = stream.GetOrCreateConsumer(config);
                    lock (_gate)
                    {
                        if (!_consumers.Contains(consumer))
                        {
                            _consumers.Add(consumer);
                        }
                    }

                    consumer.Attach(this, SendDurableAsync);
                    await EnqueueAsync(new ServerMessage { Consumer = new ConsumerReply { CorrelationId = correlationId, Info = consumer.Info() } }, token);
                    break;
                }

            case ConsumerRequest.OpOneofCase.Ack:
                {
                    var ack = request.Ack;
                    if (Streams is not null && Streams.TryGet(ack.Stream, out var stream) && stream.TryGetConsumer(ack.Consumer, out var consumer))
                    {
                        consumer.Acknowledge(ack.Sequences, ack.Kind, ack.DelayMs);
                        if (correlationId.Length > 0)
                        {
                            await EnqueueAsync(new ServerMessage { Consumer = new ConsumerReply { CorrelationId = correlationId, Info = consumer.Info() } }, token);
                        }
                    }
                    else if (correlationId.Length > 0)
                    {
                        await ReplyErrorAsync(correlationId, new InvalidParamsException($"There is no consumer '{ack.Consumer}' on stream '{ack.Stream}'.", "/ack/consumer"), token);
                    }

                    break;
                }

            case ConsumerRequest.OpOneofCase.Detach:
                {
                    var detach = request.Detach;
                    if (StreamFor(detach.Stream, correlationId, "/detach/stream", out var error) is not { } stream || !stream.TryGetConsumer(detach.Consumer, out var consumer))
                    {
                        await ReplyErrorAsync(correlationId, error ?? new InvalidParamsException($"There is no consumer '{detach.Consumer}' on stream '{detach.Stream}'.", "/detach/consumer"), token);
                        return;
                    }

                    consumer.Detach(this);
                    var info = consumer.Info();
                    lock (_gate)
                    {
                        _consumers.Remove(consumer);
                    }

                    if (detach.Delete)
                    {
                        await stream.DeleteConsumerAsync(consumer.Name);
                    }

                    await EnqueueAsync(new ServerMessage { Consumer = new ConsumerReply { CorrelationId = correlationId, Info = info } }, token);
                    break;
                }

            default:
                await ReplyErrorAsync(correlationId, new InvalidParamsException("A consumer request needs attach, ack or detach."), token);
                break;
        }
    }

    /// <summary>A durable consumer's delivery: waits for room in the control queue (max_ack_pending bounds how many).</summary>
    private async ValueTask SendDurableAsync(ServerMessage message, CancellationToken token)
    {
        await _control.Writer.WriteAsync(message, token);
        Wake();
    }

    private async ValueTask ReadStreamAsync(StreamReadRequest request, CancellationToken token)
    {
        if (StreamFor(request.Stream, request.CorrelationId, "/stream", out var error) is not { } stream)
        {
            await EnqueueAsync(new ServerMessage { Read = new StreamReadResponse { CorrelationId = request.CorrelationId, Error = error!.ToError() } }, token);
            return;
        }

        await EnqueueAsync(new ServerMessage { Read = StreamReads.Read(stream, request, _options.MaxForwardedBytes) }, token);
    }

    /// <summary>
    /// Create, describe, list or delete streams. With auth on, creating or deleting a stream needs
    /// publish and subscribe permission on each of its subjects; describing one needs subscribe,
    /// and a list shows only the streams the identity may subscribe to.
    /// </summary>
    private async ValueTask StreamAdminAsync(StreamAdminRequest request, CancellationToken token)
    {
        var correlationId = request.CorrelationId;
        if (Streams is null)
        {
            await ReplyErrorAsync(correlationId, new InvalidParamsException("This bridge has no data directory, so it holds no durable streams: start it with --data-dir (loom up) or data_dir: in loom.yaml."), token);
            return;
        }

        try
        {
            var reply = new StreamAdminReply { CorrelationId = correlationId };
            switch (request.OpCase)
            {
                case StreamAdminRequest.OpOneofCase.Create:
                    var config = StreamHost.ConfigFrom(request.Create);
                    foreach (var subject in config.Subjects)
                    {
                        if ((Refused(PermissionAction.Publish, subject) ?? Refused(PermissionAction.Subscribe, subject)) is { } refusal)
                        {
                            throw refusal;
                        }
                    }

                    reply.Streams.Add(StreamHost.State(await Streams.CreateAsync(config, token)));
                    break;

                case StreamAdminRequest.OpOneofCase.Info:
                    if (StreamFor(request.Info, correlationId, "/info", out var error) is not { } stream)
                    {
                        throw error!;
                    }

                    reply.Streams.Add(StreamHost.State(stream));
                    break;

                case StreamAdminRequest.OpOneofCase.List:
                    foreach (var each in Streams.Streams)
                    {
                        if (each.Config.Subjects.All(subject => Policy.Check(PermissionAction.Subscribe, subject) is null))
                        {
                            reply.Streams.Add(StreamHost.State(each));
                        }
                    }

                    break;

                case StreamAdminRequest.OpOneofCase.Delete:
                    if (StreamFor(request.Delete, correlationId, "/delete", out var missing) is not { } doomed)
                    {
                        throw missing!;
                    }

                    foreach (var subject in doomed.Config.Subjects)
                    {
                        if (Refused(PermissionAction.Publish, subject) is { } refusal)
                        {
                            throw refusal;
                        }
                    }

                    lock (_gate)
                    {
                        _consumers.RemoveAll(c => doomed.Consumers.Contains(c));
                    }

                    await Streams.DeleteAsync(doomed.Name, token);
                    break;

                default:
                    throw new InvalidParamsException("A stream admin request needs create, info, list or delete.");
            }

            await EnqueueAsync(new ServerMessage { StreamAdmin = reply }, token);
        }
        catch (LoomException ex)
        {
            await ReplyErrorAsync(correlationId, ex, token);
        }
    }
}
