using System.Collections.Concurrent;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// Calls the bridge pushes to this agent's capabilities: each runs off the read loop with its
/// deadline as cancellation, and its result (or typed error) is queued as the reply. A cancel from
/// the bridge or a broken stream cancels it; a result nobody waits for is not sent.
/// </summary>
internal sealed class CallRunner
{
    private readonly ConnectionState _state;
    private readonly Writer _writer;
    private readonly Dictionary<string, LoomCapability> _capabilities = new(StringComparer.Ordinal);
    private readonly List<CapabilityDescriptor> _descriptors = [];
    private readonly ConcurrentDictionary<string, InflightCall> _inflight = new(StringComparer.Ordinal);

    public CallRunner(ConnectionState state, Writer writer, IEnumerable<LoomCapability>? capabilities)
    {
        _state = state;
        _writer = writer;
        foreach (var capability in capabilities ?? [])
        {
            ArgumentNullException.ThrowIfNull(capability);
            if (!_capabilities.TryAdd(capability.Descriptor.Name, capability))
            {
                throw new InvalidParamsException($"Capability '{capability.Descriptor.Name}' is given twice; one agent provides each capability once.", "/capabilities");
            }

            _descriptors.Add(capability.Descriptor);
        }
    }

    /// <summary>The capabilities registered with every registration.</summary>
    public IReadOnlyList<CapabilityDescriptor> Descriptors => _descriptors;

    /// <summary>True when no pushed call is running.</summary>
    public bool IsIdle => _inflight.IsEmpty;

    /// <summary>Starts a pushed call (from the read loop; never blocks it).</summary>
    public void Start(ActionCall call, StreamSession session)
    {
        if (!_capabilities.TryGetValue(call.Capability, out var capability))
        {
            var missing = new ActionResult
            {
                CallId = call.CallId,
                Provider = _state.AgentId,
                Error = new CapabilityNotFoundException($"Agent '{_state.AgentId}' does not provide '{call.Capability}'.").ToError(),
            };
            _writer.TryWrite(new ClientMessage { Result = missing });
            return;
        }

        CancellationTokenSource cancellation;
        if (call.DeadlineUnixMs > 0)
        {
            var remaining = DateTimeOffset.FromUnixTimeMilliseconds(call.DeadlineUnixMs) - _state.Time.GetUtcNow();
            cancellation = new CancellationTokenSource(remaining > TimeSpan.FromMilliseconds(1) ? remaining : TimeSpan.FromMilliseconds(1), _state.Time);
        }
        else
        {
            cancellation = new CancellationTokenSource(_state.Options.DefaultCallTimeout, _state.Time);
        }

        var inflight = new InflightCall(cancellation, session.Generation);
        if (!_inflight.TryAdd(call.CallId, inflight))
        {
            cancellation.Dispose();
            Log.DuplicatePushedCall(_state.Logger, _state.AgentId, call.CallId);
            return;
        }

        // Off the read loop (a handler must never block it), but queued locally: the read loop's
        // thread picks it up as soon as it waits for the next frame, without waking another thread.
        ThreadPool.UnsafeQueueUserWorkItem(
            static state => _ = state.Runner.RunAsync(state.Call, state.Capability, state.Inflight),
            (Runner: this, Call: call, Capability: capability, Inflight: inflight),
            preferLocal: true);
    }

    /// <summary>The bridge cancelled a call (its caller gave up or went away).</summary>
    public void Cancel(string callId)
    {
        if (_inflight.TryRemove(callId, out var cancelled))
        {
            cancelled.Cancel();
        }
    }

    /// <summary>The stream of <paramref name="generation"/> (or an earlier one) broke: its calls stop; nobody waits for their results.</summary>
    public void CancelUpTo(int generation)
    {
        foreach (var (id, call) in _inflight)
        {
            if (call.Generation <= generation && _inflight.TryRemove(new KeyValuePair<string, InflightCall>(id, call)))
            {
                call.Cancel();
            }
        }
    }

    private async Task RunAsync(ActionCall call, LoomCapability capability, InflightCall inflight)
    {
        var time = _state.Time;
        var agentId = _state.AgentId;
        var started = time.GetTimestamp();
        var token = inflight.Cancellation.Token;
        var result = new ActionResult { CallId = call.CallId, Provider = agentId };
        using var activity = Tracing.OnPushedCall(call);
        try
        {
            var invocation = new ActionInvocation
            {
                CallId = call.CallId,
                Capability = call.Capability,
                InputJson = call.InputJson.Memory,
                Deadline = call.DeadlineUnixMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(call.DeadlineUnixMs) : time.GetUtcNow() + _state.Options.DefaultCallTimeout,
                Caller = call.Caller,
                ThreadId = call.ThreadId,
                Traceparent = call.Traceparent,
                Headers = call.Headers,
            };
            var output = await capability.Handler(invocation, token);
            result.OutputJson = UnsafeByteOperations.UnsafeWrap(output);
        }
        catch (LoomException ex)
        {
            result.Error = ex.ToError();
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            result.Error = new LoomTimeoutException($"'{call.Capability}' on agent '{agentId}' did not finish before the call's deadline.").ToError();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.CapabilityFailed(_state.Logger, agentId, call.Capability, ex);
            result.Error = new ToolErrorException(ex.Message).ToError();
        }

        result.DurationUs = (ulong)(time.GetElapsedTime(started).Ticks / 10);
        if (activity is not null && result.Error is { } failed)
        {
            activity.SetTag("error.type", ErrorCodes.Name(failed.Code));
            activity.SetStatus(System.Diagnostics.ActivityStatusCode.Error, failed.Message);
        }

        try
        {
            // Not in the map any more: the bridge cancelled it or its stream broke; nobody waits.
            if (_inflight.TryRemove(new KeyValuePair<string, InflightCall>(call.CallId, inflight)))
            {
                await _writer.EnqueueAsync(new ClientMessage { Result = result }, _state.Lifetime.Token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException)
        {
            Log.ResultDropped(_state.Logger, agentId, call.CallId, "the connection is closing");
        }
        finally
        {
            inflight.Cancellation.Dispose();
        }
    }
}
