using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http;
using Prometheus;

namespace Loom.Bridge.Internal.Metrics;

/// <summary>
/// Exposes chosen System.Diagnostics.Metrics instruments through prometheus-net: a
/// <see cref="MeterListener"/> feeds every instrument into a prometheus-net collector on this
/// exporter's own <see cref="CollectorRegistry"/> (several bridges can share a process), and the
/// registry writes the exposition. Counters become <c>_total</c> counters, up-down counters and
/// gauges become gauges, histograms histograms with the instrument's advised buckets. Observable
/// instruments are read before each collection: a series a callback no longer reports is not
/// exposed, and a series of an observable counter never goes backwards.
/// </summary>
/// <remarks>
/// prometheus-net's own MeterAdapter is not used: it names families <c>{meter}_{instrument}</c>
/// without unit suffixes, exposes counters as gauges and forgets series that stay unchanged for
/// five minutes, which would rename or drop the documented families.
/// </remarks>
internal sealed class MetricsExporter : IDisposable
{
    /// <summary>The text exposition format 0.0.4, the only one served.</summary>
    public const string ContentType = PrometheusConstants.TextContentTypeWithVersionAndEncoding;

    private static readonly double[] DefaultBuckets = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];
    private static readonly TimeSpan ScrapeTimeout = TimeSpan.FromSeconds(10);

    private readonly MeterListener _listener;
    private readonly MetricFactory _factory;
    private readonly ConcurrentDictionary<Instrument, InstrumentState> _states = new();
    private readonly ConcurrentDictionary<string, Instrument> _familyOwners = new(StringComparer.Ordinal);
    private readonly Lock _collectGate = new();
    private readonly Action? _beforeCollect;

    // What one collection's callbacks reported (summed per series), and the series the last one exposed.
    private readonly Dictionary<ChildBase, double> _observed = [];
    private HashSet<ChildBase> _exposed = [];

    public MetricsExporter(Func<Instrument, bool> include, Action? beforeCollect = null)
    {
        _beforeCollect = beforeCollect;
        Registry = Prometheus.Metrics.NewCustomRegistry();
        _factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        _factory.ExemplarBehavior = ExemplarBehavior.NoExemplars(); // exemplars exist only in OpenMetrics, which is not served
        Registry.AddBeforeCollectCallback(ReadObservableInstruments);
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (include(instrument) && InstrumentState.Create(this, instrument) is { } state && _familyOwners.GetOrAdd(state.Name, instrument) == instrument)
                {
                    _states[instrument] = state;
                    listener.EnableMeasurementEvents(instrument, state);
                }

                // else: not wanted, or a second instrument under a family name already taken (the first keeps it)
            },
            MeasurementsCompleted = (instrument, _) =>
            {
                if (_states.TryRemove(instrument, out var state))
                {
                    state.Unpublish();
                    _familyOwners.TryRemove(new KeyValuePair<string, Instrument>(state.Name, instrument));
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<short>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<byte>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<float>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<decimal>(static (_, value, tags, state) => ((InstrumentState)state!).Record((double)value, tags));
        _listener.Start();
    }

    /// <summary>The registry that holds the collectors and writes the exposition.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Answers a scrape with the exposition in the text format 0.0.4.</summary>
    public async Task ServeAsync(HttpContext context)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        deadline.CancelAfter(ScrapeTimeout);
        context.Response.ContentType = ContentType;
        try
        {
            // PrometheusText only: OpenMetrics would rename counter families and format values otherwise than what promtool checks.
            await Registry.CollectAndExportAsTextAsync(context.Response.Body, ExpositionFormat.PrometheusText, deadline.Token);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The scraper went away: nobody to answer.
        }
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>
    /// The Prometheus name of an instrument: invalid characters become '_', the unit becomes a
    /// suffix (s → _seconds, By → _bytes, ms → _milliseconds; annotations such as {event} add
    /// nothing), monotonic counters end in _total, and gauges that would end in _count, _sum
    /// or _bucket get _current appended.
    /// </summary>
    public static string MetricName(string name, string? unit, bool counter, bool histogram = false)
    {
        var sanitized = SanitizeName(name, label: false);
        var suffix = unit switch
        {
            "s" => "seconds",
            "ms" => "milliseconds",
            "By" => "bytes",
            "1" => "ratio",
            _ => null,
        };
        if (suffix is not null && !sanitized.EndsWith("_" + suffix, StringComparison.Ordinal))
        {
            sanitized += "_" + suffix;
        }

        if (counter && !sanitized.EndsWith("_total", StringComparison.Ordinal))
        {
            sanitized += "_total";
        }
        else if (!counter && !histogram && (sanitized.EndsWith("_count", StringComparison.Ordinal) || sanitized.EndsWith("_sum", StringComparison.Ordinal) || sanitized.EndsWith("_bucket", StringComparison.Ordinal)))
        {
            // Those suffixes belong to histograms and summaries (promtool flags them on gauges).
            sanitized += "_current";
        }

        return sanitized;
    }

    /// <summary>
    /// [a-zA-Z_][a-zA-Z0-9_]*, which prometheus-net requires of metric and label names alike (it
    /// refuses the colon too); a label name must not start with __ either (reserved).
    /// </summary>
    public static string SanitizeName(string name, bool label)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "_";
        }

        var builder = new StringBuilder(name.Length + 1);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (i == 0 && c is >= '0' and <= '9')
            {
                builder.Append('_');
            }

            builder.Append(c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '_' ? c : '_');
        }

        var result = builder.ToString();
        return label && result.StartsWith("__", StringComparison.Ordinal) ? "x" + result : result;
    }

    /// <summary>Called from the registry before every collection (possibly from concurrent scrapes).</summary>
    private void ReadObservableInstruments()
    {
        lock (_collectGate)
        {
            _beforeCollect?.Invoke();
            _observed.Clear();
            _listener.RecordObservableInstruments(); // the callbacks land in Observe, on this thread

            var exposed = new HashSet<ChildBase>(_observed.Count);
            foreach (var (child, value) in _observed)
            {
                switch (child)
                {
                    case Counter.Child counter:
                        counter.IncTo(value); // a lower reading (a reset at the source) keeps the last value
                        break;
                    case Gauge.Child gauge:
                        gauge.Set(value);
                        break;
                }

                exposed.Add(child);
            }

            // Unpublished, not removed: a counter keeps its value, should the series come back.
            foreach (var child in _exposed)
            {
                if (!exposed.Contains(child))
                {
                    child.Unpublish();
                }
            }

            _exposed = exposed;
        }
    }

    /// <summary>An observable instrument's reading; one series reported twice in one collection adds up.</summary>
    private void Observe(ChildBase child, double value) => _observed[child] = _observed.GetValueOrDefault(child) + value;

    private enum Kind
    {
        Counter,
        UpDownCounter,
        Gauge,
        Histogram,
    }

    /// <summary>One instrument: its family, its collectors (one per set of label names) and its series.</summary>
    private sealed class InstrumentState
    {
        private const int MaxCachedLabelSets = 4096;

        private readonly MetricsExporter _owner;
        private readonly Kind _kind;
        private readonly bool _observable;
        private readonly double[]? _buckets;
        private readonly ConcurrentDictionary<string, Collector> _collectors = new(StringComparer.Ordinal);

        // Series by their tags as measured: for up to three string-valued tags (every measurement on a hot path:
        // calls, registrations), whose values are bounded like the series themselves.
        private readonly ConcurrentDictionary<LabelKey, ChildBase> _cache = new();
        private readonly ConcurrentDictionary<ChildBase, byte> _children = new();

        private InstrumentState(MetricsExporter owner, Instrument instrument, Kind kind, double[]? buckets)
        {
            _owner = owner;
            _kind = kind;
            _buckets = buckets;
            _observable = instrument.IsObservable;
            Name = MetricName(instrument.Name, instrument.Unit, counter: kind == Kind.Counter, histogram: kind == Kind.Histogram);
            var help = string.IsNullOrWhiteSpace(instrument.Description) ? instrument.Name : instrument.Description;
            help = string.IsNullOrEmpty(instrument.Unit) ? help : $"{help} (unit {instrument.Unit})";

            // prometheus-net writes HELP text as given, and the format wants backslash and line feed escaped.
            Help = help.Replace("\\", @"\\", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal);
        }

        public string Name { get; }

        public string Help { get; }

        public static InstrumentState? Create(MetricsExporter owner, Instrument instrument)
        {
            var type = instrument.GetType();
            var generic = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
            Kind? kind = generic == typeof(Counter<>) || generic == typeof(ObservableCounter<>) ? Kind.Counter
                : generic == typeof(UpDownCounter<>) || generic == typeof(ObservableUpDownCounter<>) ? Kind.UpDownCounter
                : generic == typeof(Gauge<>) || generic == typeof(ObservableGauge<>) ? Kind.Gauge
                : generic == typeof(Histogram<>) ? Kind.Histogram
                : null;
            if (kind is null)
            {
                return null;
            }

            double[]? buckets = null;
            if (kind == Kind.Histogram)
            {
                buckets = instrument switch
                {
                    Histogram<double> { Advice.HistogramBucketBoundaries: { Count: > 0 } advice } => [.. advice],
                    Histogram<long> { Advice.HistogramBucketBoundaries: { Count: > 0 } advice } => [.. advice.Select(static b => (double)b)],
                    Histogram<int> { Advice.HistogramBucketBoundaries: { Count: > 0 } advice } => [.. advice.Select(static b => (double)b)],
                    _ => DefaultBuckets,
                };
            }

            return new InstrumentState(owner, instrument, kind.Value, buckets);
        }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            ChildBase child;
            try
            {
                child = SeriesOf(tags);
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException)
            {
                // A label set the registry refuses (two tags that sanitize to one name, a histogram tag named le, bad buckets):
                // the measurement is dropped rather than thrown at the code that made it.
                return;
            }

            if (_observable)
            {
                _owner.Observe(child, value);
                return;
            }

            switch (child)
            {
                case Counter.Child counter when value >= 0:
                    counter.Inc(value);
                    break;
                case Gauge.Child gauge when _kind == Kind.Gauge:
                    gauge.Set(value);
                    break;
                case Gauge.Child gauge:
                    gauge.Inc(value);
                    break;
                case Histogram.Child histogram:
                    histogram.Observe(value);
                    break;
            }
        }

        /// <summary>Hides every series of the instrument (it will not report again).</summary>
        public void Unpublish()
        {
            foreach (var child in _children.Keys)
            {
                child.Unpublish();
            }
        }

        private ChildBase SeriesOf(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var key = LabelKey.Of(tags);
            if (key is { } k && _cache.TryGetValue(k, out var cached))
            {
                return cached;
            }

            var child = Resolve(tags);
            _children.TryAdd(child, 0);
            if (key is { } newKey && _cache.Count < MaxCachedLabelSets)
            {
                _cache.TryAdd(newKey, child);
            }

            return child;
        }

        /// <summary>The series of a tag set: labels sorted by name, tags with null values left out.</summary>
        private ChildBase Resolve(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var labels = new List<KeyValuePair<string, string>>(tags.Length);
            foreach (var tag in tags)
            {
                if (tag.Value is { } v)
                {
                    var text = v is IFormattable f ? f.ToString(null, CultureInfo.InvariantCulture) : v.ToString() ?? string.Empty;
                    labels.Add(new KeyValuePair<string, string>(SanitizeName(tag.Key, label: true), text));
                }
            }

            labels.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));
            var names = labels.ConvertAll(static l => l.Key).ToArray();
            var values = labels.ConvertAll(static l => l.Value).ToArray();
            var collector = _collectors.GetOrAdd(string.Join(',', names), static (_, s) => s.State.CreateCollector(s.Names), (State: this, Names: names));
            return collector switch
            {
                Counter counter => counter.WithLabels(values),
                Gauge gauge => gauge.WithLabels(values),
                Histogram histogram => histogram.WithLabels(values),
                _ => throw new InvalidOperationException($"Unexpected collector {collector.GetType()}."),
            };
        }

        private Collector CreateCollector(string[] labelNames) => _kind switch
        {
            Kind.Counter => _owner._factory.CreateCounter(Name, Help, labelNames),
            Kind.Histogram => _owner._factory.CreateHistogram(Name, Help, labelNames, new HistogramConfiguration { Buckets = _buckets }),
            _ => _owner._factory.CreateGauge(Name, Help, labelNames),
        };
    }

    private readonly record struct LabelKey(string? Key0, string? Value0, string? Key1, string? Value1, string? Key2, string? Value2)
    {
        /// <summary>The key of up to three tags with string (or null) values; null for other tag sets, which are not cached.</summary>
        public static LabelKey? Of(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length > 3)
            {
                return null;
            }

            foreach (var tag in tags)
            {
                if (tag.Value is not (string or null))
                {
                    return null;
                }
            }

            return new LabelKey(
                tags.Length > 0 ? tags[0].Key : null,
                tags.Length > 0 ? (string?)tags[0].Value : null,
                tags.Length > 1 ? tags[1].Key : null,
                tags.Length > 1 ? (string?)tags[1].Value : null,
                tags.Length > 2 ? tags[2].Key : null,
                tags.Length > 2 ? (string?)tags[2].Value : null);
        }
    }
}
