using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// The read loop of a session: reads frames, decodes their server messages and dispatches each by
/// kind: deliveries to the <see cref="SubscriptionRouter"/> or <see cref="DurableStreams"/>,
/// replies to <see cref="PendingCalls"/>, pushed calls and cancels to the <see cref="CallRunner"/>.
/// </summary>
internal sealed class Reader(ConnectionState state, PendingCalls pending, SubscriptionRouter router, CallRunner calls, DurableStreams durable, TestGate gate)
{
    private long _framesReceived;
    private long _messagesReceived;
    private long _publishErrors;

    public long FramesReceived => Interlocked.Read(ref _framesReceived);

    public long MessagesReceived => Interlocked.Read(ref _messagesReceived);

    public long PublishErrors => Interlocked.Read(ref _publishErrors);

    public async Task RunAsync(StreamSession session)
    {
        var call = session.Call!;
        var token = session.Token;
        try
        {
            while (await call.ResponseStream.MoveNext(token))
            {
                if (gate.Frozen is { } frozen)
                {
                    await frozen.WaitAsync(token);
                }

                session.Touch(state.Time.GetTimestamp());
                var frame = call.ResponseStream.Current;
                Interlocked.Increment(ref _framesReceived);
                Interlocked.Add(ref _messagesReceived, frame.Messages.Count);
                foreach (var message in frame.Messages)
                {
                    await DispatchAsync(message, session, token);
                }
            }

            session.End(state.Closing ? null : new LoomException(ErrorCode.Unavailable, "The bridge ended the stream."));
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            session.End(null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            session.End(ex);
        }
    }

    private async ValueTask DispatchAsync(ServerMessage message, StreamSession session, CancellationToken token)
    {
        switch (message.KindCase)
        {
            case ServerMessage.KindOneofCase.Deliver when message.Deliver.Consumer.Length > 0:
                await durable.DeliverAsync(message.Deliver, token);
                break;
            case ServerMessage.KindOneofCase.Deliver:
                await router.DeliverAsync(message.Deliver, token);
                break;
            case ServerMessage.KindOneofCase.PublishAck:
                pending.Complete(message.PublishAck.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.Consumer:
                durable.OnConsumerReply(message);
                break;
            case ServerMessage.KindOneofCase.Read:
                pending.Complete(message.Read.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.StreamAdmin:
                pending.Complete(message.StreamAdmin.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.Call:
                calls.Start(message.Call, session);
                break;
            case ServerMessage.KindOneofCase.Result:
                pending.Complete(message.Result.CallId, message);
                break;
            case ServerMessage.KindOneofCase.Ack:
                router.OnAck(message);
                break;
            case ServerMessage.KindOneofCase.Heartbeat:
                break;
            case ServerMessage.KindOneofCase.Error:
                OnErrorReply(message);
                break;
            case ServerMessage.KindOneofCase.Memory:
                pending.Complete(message.Memory.CorrelationId, message);
                break;
            case ServerMessage.KindOneofCase.Cancel:
                calls.Cancel(message.Cancel.CallId);
                break;
            default:
                Log.UnknownServerMessage(state.Logger, state.AgentId, (int)message.KindCase);
                break;
        }
    }

    private void OnErrorReply(ServerMessage message)
    {
        var reply = message.Error;
        if (!string.IsNullOrEmpty(reply.CorrelationId) && pending.TryRemove(reply.CorrelationId, out var op))
        {
            op.TrySetResult(message);
            return;
        }

        var error = reply.Error ?? new Error { Code = ErrorCode.Internal, Message = "(no error)" };
        if (string.IsNullOrEmpty(reply.CorrelationId))
        {
            Log.SessionError(state.Logger, state.AgentId, ErrorCodes.Name(error.Code), error.Message);
        }
        else
        {
            // Publishes are fire and forget; their errors name the envelope id.
            Interlocked.Increment(ref _publishErrors);
            Log.PublishRejected(state.Logger, state.AgentId, reply.CorrelationId, ErrorCodes.Name(error.Code), error.Message);
        }
    }
}
