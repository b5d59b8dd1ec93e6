using System.Diagnostics.Metrics;

namespace Loom.Llm.Internal;

/// <summary>
/// The gateway's instruments, on the meter the host gives (the bridge's, so they appear in
/// <c>/metrics</c>). Labels are bounded: model labels are configured model names only.
/// </summary>
internal sealed class LlmMetrics
{
    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

    public LlmMetrics(Meter meter, Func<int> cacheEntries, Func<long> cacheBytes)
    {
        _meter = meter;
        Tokens = meter.CreateCounter<long>("loom.llm.tokens", "{token}", "Tokens spent upstream, by model and direction (input or output).");
        Cost = meter.CreateCounter<double>("loom.llm.cost", "USD", "Cost of upstream calls in USD (the configured prices), by model.");
        Requests = meter.CreateCounter<long>("loom.llm.requests", "{request}", "Gateway requests by operation (chat, embed) and how they were served (upstream, cache, coalesced, error).");
        Upstream = meter.CreateCounter<long>("loom.llm.upstream.requests", "{request}", "Upstream requests by model and outcome (ok or the failure kind).");
        Fallbacks = meter.CreateCounter<long>("loom.llm.fallbacks", "{fallback}", "Times a request moved on to the next model after one failed, by the model that failed.");
        Retries = meter.CreateCounter<long>("loom.llm.retries", "{retry}", "Upstream retries (same model, after a backoff), by model.");
        BudgetRefusals = meter.CreateCounter<long>("loom.llm.budget.refused", "{request}", "Requests refused with BUDGET_EXCEEDED, by scope (agent or thread).");
        Duration = meter.CreateHistogram<double>("loom.llm.upstream.duration", "s", "Latency of upstream requests, by model.", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        EmbedBatch = meter.CreateHistogram<long>("loom.llm.embed.batch.size", "{input}", "Texts per upstream embedding request (micro-batching).", advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048] });
        meter.CreateObservableGauge("loom.llm.cache.entries", cacheEntries, "{entry}", "Answers held in the response cache.");
        meter.CreateObservableGauge("loom.llm.cache.bytes", cacheBytes, "By", "Bytes held in the response cache.");
    }

    private readonly Meter _meter;

    /// <summary>The persisted cache's instruments (only when the cache is persisted).</summary>
    public void ObservePersistence(Func<long> dropped, Func<long> bytes)
    {
        _meter.CreateObservableCounter("loom.llm.cache.persist.dropped", dropped, "{entry}", "Cache writes not persisted (the write queue was full or the cache log failed); the answers stay in memory.");
        _meter.CreateObservableGauge("loom.llm.cache.log.bytes", bytes, "By", "Bytes of the persisted cache log on disk.");
    }

    public Counter<long> Tokens { get; }
    public Counter<double> Cost { get; }
    public Counter<long> Requests { get; }
    public Counter<long> Upstream { get; }
    public Counter<long> Fallbacks { get; }
    public Counter<long> Retries { get; }
    public Counter<long> BudgetRefusals { get; }
    public Histogram<double> Duration { get; }
    public Histogram<long> EmbedBatch { get; }
}
