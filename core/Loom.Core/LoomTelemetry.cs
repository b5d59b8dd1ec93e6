using System.Diagnostics;

namespace Loom.Core;

/// <summary>
/// Tracing of the core: one <see cref="ActivitySource"/> named <see cref="SourceName"/> for the
/// publish, deliver and call spans (OpenTelemetry messaging and RPC conventions). Spans exist
/// only while a listener (an OpenTelemetry tracer provider, or an <see cref="ActivityListener"/>)
/// subscribes to the source; otherwise every check below is a single flag read.
/// </summary>
public static class LoomTelemetry
{
    /// <summary>Name of the activity source of the core and the bridge.</summary>
    public const string SourceName = "Loom";

    /// <summary>Header of <c>ActionCall.headers</c> that carries the W3C tracestate (ActionCall has no field for it).</summary>
    public const string TracestateHeader = "tracestate";

    /// <summary>The source.</summary>
    public static ActivitySource Source { get; } = new(SourceName, typeof(LoomTelemetry).Assembly.GetName().Version?.ToString(3));

    /// <summary>
    /// Parses a W3C traceparent (and tracestate) into a remote parent context; default when the
    /// traceparent is empty or malformed (the span then starts a new trace).
    /// </summary>
    public static ActivityContext ParentOf(string? traceparent, string? tracestate)
    {
        if (string.IsNullOrEmpty(traceparent))
        {
            return default;
        }

        return ActivityContext.TryParse(traceparent, string.IsNullOrEmpty(tracestate) ? null : tracestate, isRemote: true, out var context) ? context : default;
    }

    /// <summary>The W3C traceparent of an activity (its Id when the W3C format is in use).</summary>
    public static string TraceparentOf(Activity activity)
    {
        ArgumentNullException.ThrowIfNull(activity);
        if (activity.IdFormat == ActivityIdFormat.W3C && activity.Id is { } id)
        {
            return id;
        }

        var flags = (activity.ActivityTraceFlags & ActivityTraceFlags.Recorded) != 0 ? "01" : "00";
        return $"00-{activity.TraceId.ToHexString()}-{activity.SpanId.ToHexString()}-{flags}";
    }
}
