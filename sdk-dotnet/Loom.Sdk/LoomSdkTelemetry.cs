namespace Loom.Sdk;

/// <summary>
/// Tracing of the .NET SDK. Spans come from the <see cref="System.Diagnostics.ActivitySource"/>
/// named <see cref="SourceName"/> (publish, process, call, handle) when something listens to it
/// (an OpenTelemetry tracer provider with <c>AddSource("Loom.Sdk")</c>). Without a listener no
/// span is made, but the W3C trace context still travels: an envelope or call without a
/// <c>traceparent</c> gets the current <see cref="System.Diagnostics.Activity"/>'s, or else that of
/// the delivery or pushed call being handled, so every message of a thread stays in one trace.
/// </summary>
public static class LoomSdkTelemetry
{
    /// <summary>Name of the SDK's activity source.</summary>
    public const string SourceName = "Loom.Sdk";
}
