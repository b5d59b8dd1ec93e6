using System.Diagnostics;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>W3C trace context for outgoing envelopes and calls, and spans around handlers.</summary>
internal static class Tracing
{
    public static readonly ActivitySource Source = new(LoomSdkTelemetry.SourceName, typeof(Tracing).Assembly.GetName().Version?.ToString(3));

    // The trace context of the delivery or pushed call being handled, for handlers that run without a listener.
    private static readonly AsyncLocal<TraceContext?> s_ambient = new();

    private sealed record TraceContext(string Traceparent, string Tracestate);

    /// <summary>The context to propagate now: the current activity's, else the one being handled; empty when none.</summary>
    public static (string Traceparent, string Tracestate) Current()
    {
        if (Activity.Current is { } activity)
        {
            return (LoomTelemetry.TraceparentOf(activity), activity.TraceStateString ?? string.Empty);
        }

        return s_ambient.Value is { } ambient ? (ambient.Traceparent, ambient.Tracestate) : (string.Empty, string.Empty);
    }

    private static ActivityContext CurrentParent()
    {
        var (traceparent, tracestate) = Current();
        return LoomTelemetry.ParentOf(traceparent, tracestate);
    }

    /// <summary>
    /// Before an envelope goes out: a publish span (when listened to) whose context the envelope
    /// carries, or else the current context when the envelope names none. An explicit traceparent wins as the parent.
    /// </summary>
    public static void OnPublish(Envelope envelope)
    {
        if (!Source.HasListeners())
        {
            if (envelope.Traceparent.Length == 0)
            {
                var (traceparent, tracestate) = Current();
                if (traceparent.Length != 0)
                {
                    envelope.Traceparent = traceparent;
                    envelope.Tracestate = tracestate;
                }
            }

            return;
        }

        var parent = envelope.Traceparent.Length != 0 ? LoomTelemetry.ParentOf(envelope.Traceparent, envelope.Tracestate) : CurrentParent();
        using var activity = Source.StartActivity("publish", ActivityKind.Producer, parent);
        if (activity is null)
        {
            return;
        }

        activity.SetTag("messaging.system", "loom");
        activity.SetTag("messaging.operation.type", "send");
        activity.SetTag("messaging.destination.name", envelope.Topic);
        activity.SetTag("messaging.message.id", envelope.Id);
        if (envelope.ThreadId.Length != 0)
        {
            activity.SetTag("loom.thread_id", envelope.ThreadId);
        }

        envelope.Traceparent = LoomTelemetry.TraceparentOf(activity);
        envelope.Tracestate = activity.TraceStateString ?? string.Empty;
    }

    /// <summary>Before a call goes out: a client span (when listened to) the call carries, else the current context. Dispose the result when the call ends.</summary>
    public static Activity? OnCall(ActionCall call)
    {
        call.Headers.TryGetValue(LoomTelemetry.TracestateHeader, out var explicitState);
        if (!Source.HasListeners())
        {
            if (call.Traceparent.Length == 0)
            {
                var (traceparent, tracestate) = Current();
                if (traceparent.Length != 0)
                {
                    call.Traceparent = traceparent;
                    SetState(call, tracestate);
                }
            }

            return null;
        }

        var parent = call.Traceparent.Length != 0 ? LoomTelemetry.ParentOf(call.Traceparent, explicitState) : CurrentParent();
        var activity = Source.StartActivity("call " + call.Capability, ActivityKind.Client, parent);
        if (activity is null)
        {
            return null;
        }

        activity.SetTag("rpc.system", "loom");
        activity.SetTag("rpc.method", call.Capability);
        activity.SetTag("loom.call_id", call.CallId);
        call.Traceparent = LoomTelemetry.TraceparentOf(activity);
        SetState(call, activity.TraceStateString);
        return activity;
    }

    private static void SetState(ActionCall call, string? tracestate)
    {
        if (!string.IsNullOrEmpty(tracestate))
        {
            call.Headers[LoomTelemetry.TracestateHeader] = tracestate;
        }
    }

    /// <summary>Runs a subscription handler inside the delivery's trace context (and a process span when listened to).</summary>
    public static Task RunHandlerAsync(Envelope envelope, string pattern, Func<Envelope, CancellationToken, Task> handler, CancellationToken token)
    {
        if (envelope.Traceparent.Length == 0)
        {
            return handler(envelope, token);
        }

        return RunTracedHandlerAsync(envelope, pattern, handler, token);
    }

    private static async Task RunTracedHandlerAsync(Envelope envelope, string pattern, Func<Envelope, CancellationToken, Task> handler, CancellationToken token)
    {
        s_ambient.Value = new TraceContext(envelope.Traceparent, envelope.Tracestate);
        using var activity = Source.HasListeners()
            ? Source.StartActivity("process", ActivityKind.Consumer, LoomTelemetry.ParentOf(envelope.Traceparent, envelope.Tracestate))
            : null;
        if (activity is not null)
        {
            activity.SetTag("messaging.system", "loom");
            activity.SetTag("messaging.operation.type", "process");
            activity.SetTag("messaging.destination.name", envelope.Topic);
            activity.SetTag("messaging.destination.subscription.name", pattern);
            activity.SetTag("messaging.message.id", envelope.Id);
        }

        try
        {
            await handler(envelope, token).ConfigureAwait(false);
        }
        catch (Exception ex) when (activity is not null)
        {
            activity.SetStatus(ActivityStatusCode.Error, ex.Message);
            throw;
        }
    }

    /// <summary>Enters the trace context of a pushed call for its handler: a server span when listened to. Call from the handler's own async flow.</summary>
    public static Activity? OnPushedCall(ActionCall call)
    {
        if (call.Traceparent.Length == 0)
        {
            return null;
        }

        call.Headers.TryGetValue(LoomTelemetry.TracestateHeader, out var tracestate);
        s_ambient.Value = new TraceContext(call.Traceparent, tracestate ?? string.Empty);
        if (!Source.HasListeners())
        {
            return null;
        }

        var activity = Source.StartActivity("handle " + call.Capability, ActivityKind.Server, LoomTelemetry.ParentOf(call.Traceparent, tracestate));
        activity?.SetTag("rpc.system", "loom");
        activity?.SetTag("rpc.method", call.Capability);
        activity?.SetTag("loom.call_id", call.CallId);
        activity?.SetTag("loom.caller", call.Caller);
        return activity;
    }
}
