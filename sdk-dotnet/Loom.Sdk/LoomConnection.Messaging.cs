using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk;

// Publish, request, subscribe, call and memory: validated here, sent through the internal parts.
public sealed partial class LoomConnection
{
    private string? _lastValidTopic;

    /// <summary>
    /// Publishes an envelope. Completes once it is queued (waits while the outbound queue is full);
    /// the bridge reports rejections asynchronously (logged and counted in <see cref="Statistics"/>).
    /// Envelopes queued while reconnecting are sent after the connection is back.
    /// </summary>
    /// <exception cref="InvalidParamsException">The topic is not a valid concrete topic.</exception>
    /// <exception cref="ResourceExhaustedException">The payload is larger than the bridge accepts.</exception>
    public ValueTask PublishAsync(Envelope envelope, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        var topic = envelope.Topic;
        if (!ReferenceEquals(topic, _lastValidTopic))
        {
            // Publishers tend to reuse one topic string: validate each new instance once.
            Topics.ValidateTopic(topic);
            _lastValidTopic = topic;
        }

        var maxPayload = _supervisor.Limits.MaxPayloadBytes;
        if (maxPayload > 0 && envelope.Payload.Length > maxPayload)
        {
            throw new ResourceExhaustedException($"Payload of {envelope.Payload.Length} bytes on topic '{envelope.Topic}' exceeds the bridge's limit of {maxPayload} bytes.");
        }

        if (envelope.Id.Length == 0)
        {
            envelope.Id = _state.Ids.Next();
        }

        Tracing.OnPublish(envelope);
        return _writer.EnqueueAsync(new ClientMessage { Publish = envelope }, cancellationToken);
    }

    /// <summary>
    /// Publishes a request with a fresh correlation id and <c>reply_to</c> on this agent's inbox,
    /// and waits for the reply.
    /// </summary>
    /// <exception cref="LoomTimeoutException">No reply within <paramref name="timeout"/> (a reply after that is dropped and counted).</exception>
    public Task<Envelope> RequestAsync(Envelope request, TimeSpan timeout, CancellationToken cancellationToken = default)
        => _replies.RequestAsync(request, PublishAsync, timeout, cancellationToken);

    private void OnInboxDelivery(Envelope reply)
    {
        if (!_replies.Complete(reply))
        {
            Log.LateReply(_state.Logger, AgentId, reply.Topic, reply.CorrelationId);
        }
    }

    /// <summary>
    /// Subscribes to a pattern (<c>*</c> one token, <c>&gt;</c> the rest). The handler runs in order,
    /// off the read loop. Subscriptions survive reconnects. Dispose the result to unsubscribe.
    /// </summary>
    public Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        return _router.SubscribeAsync(pattern, handler, options, cancellationToken);
    }

    /// <summary>
    /// Calls a capability through the bridge and returns its UTF-8 JSON output. The timeout is
    /// <c>call.timeout_ms</c>, or <see cref="LoomConnectionOptions.DefaultCallTimeout"/> when 0.
    /// </summary>
    /// <exception cref="LoomException">The typed failure: INVALID_PARAMS (with the path), CAPABILITY_NOT_FOUND,
    /// PROVIDER_UNAVAILABLE, TOOL_ERROR, TIMEOUT, or UNAVAILABLE when the connection is down or breaks.</exception>
    public async Task<ReadOnlyMemory<byte>> CallAsync(ActionCall call, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(call);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        if (string.IsNullOrEmpty(call.CallId))
        {
            call.CallId = _state.Ids.Next();
        }

        using var activity = Tracing.OnCall(call);
        try
        {
            return await CallCoreAsync(call, cancellationToken);
        }
        catch (Exception ex) when (activity is not null)
        {
            activity.SetStatus(System.Diagnostics.ActivityStatusCode.Error, ex.Message);
            throw;
        }
    }

    private async Task<ReadOnlyMemory<byte>> CallCoreAsync(ActionCall call, CancellationToken cancellationToken)
    {
        var timeout = call.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(call.TimeoutMs) : Options.DefaultCallTimeout;
        call.TimeoutMs = (uint)Math.Clamp(timeout.TotalMilliseconds, 1, uint.MaxValue);
        var reply = await _pending.SendAndWaitAsync(PendingKind.Call, call.CallId, new ClientMessage { Call = call }, timeout + Grace(timeout), () =>
        {
            _writer.TryWrite(new ClientMessage { Cancel = new CancelCall { CallId = call.CallId } });
            return new LoomTimeoutException($"Call to '{call.Capability}' got no result within {timeout.TotalMilliseconds:0} ms.");
        }, cancellationToken);
        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            throw LoomException.FromError(reply.Error.Error);
        }

        var result = reply.Result;
        if (result.OutcomeCase == ActionResult.OutcomeOneofCase.Error)
        {
            throw LoomException.FromError(result.Error);
        }

        return result.OutputJson.Memory;
    }

    /// <summary>Extra local wait past a call's timeout, so the bridge's own TIMEOUT result normally arrives first.</summary>
    private static TimeSpan Grace(TimeSpan timeout) => TimeSpan.FromMilliseconds(Math.Min(1000, 100 + (timeout.TotalMilliseconds * 0.05)));

    /// <summary>Runs one memory operation in the agent's namespace (or the request's).</summary>
    /// <exception cref="LoomException">The typed failure (INVALID_PARAMS, RESOURCE_EXHAUSTED, UNAVAILABLE...).</exception>
    public async Task<MemoryResponse> MemoryAsync(MemoryRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        request.CorrelationId = _state.Ids.Next();
        var timeout = Options.RequestTimeout;
        var reply = await _pending.SendAndWaitAsync(PendingKind.Memory, request.CorrelationId, new ClientMessage { Memory = request }, timeout, () =>
            new LoomTimeoutException($"The bridge did not answer the memory {request.OpCase} within {timeout.TotalMilliseconds:0} ms."), cancellationToken);
        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            throw LoomException.FromError(reply.Error.Error);
        }

        var response = reply.Memory;
        if (response.Error is { } error && error.Code != ErrorCode.Unspecified)
        {
            throw LoomException.FromError(error);
        }

        return response;
    }
}
