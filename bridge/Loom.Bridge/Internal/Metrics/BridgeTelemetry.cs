using System.Diagnostics.Metrics;
using Loom.Core;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Loom.Bridge.Internal.Metrics;

/// <summary>
/// Everything a bridge measures: its meter (core and bridge instruments), the Prometheus
/// exporter behind <c>/metrics</c>, and, when the standard OTEL_* environment variables ask for
/// it, an OpenTelemetry tracer provider that exports the Loom spans over OTLP.
/// </summary>
internal sealed class BridgeTelemetry : IDisposable
{
    /// <summary>The activity source of .NET agents (Loom.Sdk), exported too when agents run inside the bridge process.</summary>
    public const string SdkSourceName = "Loom.Sdk";

    private const string RuntimeMeterName = "System.Runtime";

    private readonly Meter _meter;
    private readonly CoreMetrics _core;
    private TracerProvider? _tracing;

    public BridgeTelemetry(EventBus bus, ActionBroker broker, MemoryStore memory, Func<SessionRegistry?> sessions, Func<Loom.Core.Collaboration.CoordinatorStats?> collaboration)
    {
        _meter = new Meter(CoreMetrics.MeterName, typeof(BridgeTelemetry).Assembly.GetName().Version?.ToString(3));
        _core = new CoreMetrics(_meter, bus, broker);
        Bridge = new BridgeMetrics(_meter, memory, sessions, collaboration);
        var meter = _meter;
        var core = _core;
        Exporter = new MetricsExporter(instrument => ReferenceEquals(instrument.Meter, meter) || instrument.Meter.Name == RuntimeMeterName, core.BeginCollection);
    }

    public BridgeMetrics Bridge { get; }

    /// <summary>The dashboard's own counters (its live-stream clients, those dropped as too slow, events not recorded or not sent under load).</summary>
    public void ObserveDashboard(Dashboard.DashboardFeed feed)
    {
        _meter.CreateObservableGauge("loom.dashboard.clients", () => feed.ClientCount, "{client}", "Dashboard live-stream (SSE) clients connected.");
        _meter.CreateObservableCounter("loom.dashboard.clients.dropped", () => feed.ClientsDropped, "{client}", "Dashboard live-stream clients dropped because their queue was full (they did not read fast enough).");
        _meter.CreateObservableCounter("loom.dashboard.events.unrecorded", () => feed.SampledOut, "{event}", "Events and calls the dashboard did not record in its recent-event and thread buffers (over its per-second budget).");
        _meter.CreateObservableCounter("loom.dashboard.events.skipped", () => feed.ClientEventsSkipped, "{event}", "Recorded events a live-tail client did not get because of its rate cap.");
    }
    public void ObserveRuns(Runs.RunRecorder runs)
    {
        _meter.CreateObservableCounter("loom.run_records.dropped", () => runs.Dropped, "{step}", "Run-record steps dropped because the recorder's queue was full or a write failed (runs.queue_capacity).");
        _meter.CreateObservableCounter("loom.run_records.written", () => runs.Recorded, "{step}", "Run-record steps written to the run log.");
        _meter.CreateObservableCounter("loom.run_records.not_kept", () => runs.NotKept, "{step}", "Run-record steps not kept because their thread had runs.max_steps_per_thread already.");
        _meter.CreateObservableGauge("loom.run_records.queue.depth", () => runs.QueueDepth, "{step}", "Run-record steps waiting to be written.");
        _meter.CreateObservableGauge("loom.run_records.bytes", () => runs.Bytes, "By", "Bytes the run log holds.");
    }

    /// <summary>The idempotency store's counters (replays, stores, evictions) and its size.</summary>
    public void ObserveIdempotency(Idempotency.IdempotencyStore store)
    {
        _meter.CreateObservableCounter("loom.idempotency.replays", () => store.Replays, "{call}", "Calls with an idempotency key answered with the stored result of an earlier call instead of invoking a provider.");
        _meter.CreateObservableCounter("loom.idempotency.stores", () => store.Stores, "{call}", "Results of calls with an idempotency key stored (successes and non-transient failures).");
        _meter.CreateObservableCounter("loom.idempotency.evictions", () => store.Evictions, "{key}", "Idempotency keys forgotten before their window ended (over idempotency.max_keys or max_memory_bytes).");
        _meter.CreateObservableCounter("loom.idempotency.waits", () => store.Waits, "{call}", "Calls that waited for a call in flight with the same idempotency key.");
        _meter.CreateObservableGauge("loom.idempotency.keys", () => store.Count, "{key}", "Idempotency keys held (within the window).");
    }

    /// <summary>The bridge's meter: instruments on it are served at /metrics.</summary>
    public Meter Meter => _meter;

    public MetricsExporter Exporter { get; }

    public bool TracingEnabled => _tracing is not null;

    /// <summary>
    /// Whether the environment asks for an OTLP trace exporter: OTEL_TRACES_EXPORTER=otlp, or an
    /// OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) without
    /// OTEL_TRACES_EXPORTER=none; never with OTEL_SDK_DISABLED=true. A reason when not (null when yes).
    /// </summary>
    public static string? WhyNoExport(Func<string, string?> env)
    {
        if (string.Equals(env("OTEL_SDK_DISABLED")?.Trim(), "true", StringComparison.OrdinalIgnoreCase))
        {
            return "OTEL_SDK_DISABLED=true";
        }

        var exporter = env("OTEL_TRACES_EXPORTER")?.Trim();
        if (!string.IsNullOrEmpty(exporter))
        {
            var names = exporter.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (names.Contains("otlp", StringComparer.OrdinalIgnoreCase))
            {
                return null;
            }

            return names.All(n => string.Equals(n, "none", StringComparison.OrdinalIgnoreCase))
                ? "OTEL_TRACES_EXPORTER=none"
                : $"OTEL_TRACES_EXPORTER={exporter} is not supported by the bridge (only otlp)";
        }

        return string.IsNullOrWhiteSpace(env("OTEL_EXPORTER_OTLP_ENDPOINT")) && string.IsNullOrWhiteSpace(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            ? "no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER"
            : null;
    }

    /// <summary>Starts the OTLP trace exporter when the environment asks for it; otherwise nothing listens and spans cost nothing.</summary>
    public void StartTracing(ILogger logger)
    {
        var why = WhyNoExport(Environment.GetEnvironmentVariable);
        if (why is not null)
        {
            if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_TRACES_EXPORTER")))
            {
                Log.TracingOff(logger, why);
            }

            return;
        }

        var resource = ResourceBuilder.CreateDefault();
        if (string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("OTEL_SERVICE_NAME")))
        {
            resource.AddService("loom-bridge", serviceVersion: SessionRegistry.BridgeVersion);
        }

        _tracing = OpenTelemetry.Sdk.CreateTracerProviderBuilder()
            .SetResourceBuilder(resource)
            .AddSource(LoomTelemetry.SourceName, SdkSourceName)
            .AddOtlpExporter()
            .Build();
        Log.TracingOn(logger, Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") ?? "(the OTLP default)");
    }

    public void Dispose()
    {
        _tracing?.Dispose();
        _core.Dispose();
        Exporter.Dispose();
        _meter.Dispose();
    }
}
