using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Loom.Bridge.Internal.Metrics;

/// <summary>
/// Collects the measurements of chosen System.Diagnostics.Metrics instruments with a
/// <see cref="MeterListener"/> and writes them in the Prometheus text exposition format:
/// counters as <c>_total</c> counters, up-down counters and gauges as gauges, histograms as
/// cumulative <c>_bucket{le=...}</c> series with <c>_sum</c> and <c>_count</c>. Observable
/// instruments are read at scrape time. Series of observable counters never go backwards (a
/// value lower than the last one written is written as the last one).
/// </summary>
internal sealed class MetricsExporter : IDisposable
{
    private static readonly double[] DefaultBuckets = [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];

    private readonly MeterListener _listener;
    private readonly ConcurrentDictionary<Instrument, InstrumentState> _states = new();
    private readonly Lock _scrapeGate = new();
    private readonly Action? _beforeCollect;

    public MetricsExporter(Func<Instrument, bool> include, Action? beforeCollect = null)
    {
        _beforeCollect = beforeCollect;
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (include(instrument))
                {
                    var state = new InstrumentState(instrument);
                    _states[instrument] = state;
                    listener.EnableMeasurementEvents(instrument, state);
                }
            },
            MeasurementsCompleted = (instrument, _1) => _states.TryRemove(instrument, out var _2),
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

    /// <summary>Reads the observable instruments and renders every series.</summary>
    public string Scrape()
    {
        lock (_scrapeGate)
        {
            foreach (var state in _states.Values)
            {
                state.BeginObservation();
            }

            _beforeCollect?.Invoke();
            _listener.RecordObservableInstruments();

            var families = new SortedDictionary<string, Family>(StringComparer.Ordinal);
            foreach (var state in _states.Values)
            {
                if (!families.TryGetValue(state.Name, out var family))
                {
                    family = new Family(state.Name, state.Type, state.Help);
                    families[state.Name] = family;
                }
                else if (family.Type != state.Type)
                {
                    continue; // two instruments claim one name with different types: the first wins
                }

                family.States.Add(state);
            }

            var output = new StringBuilder(16 * 1024);
            foreach (var family in families.Values)
            {
                family.WriteTo(output);
            }

            return output.ToString();
        }
    }

    public void Dispose() => _listener.Dispose();

    private sealed class Family(string name, string type, string help)
    {
        public string Name { get; } = name;

        public string Type { get; } = type;

        public List<InstrumentState> States { get; } = [];

        public void WriteTo(StringBuilder output)
        {
            var series = new SortedDictionary<string, Series>(StringComparer.Ordinal);
            foreach (var state in States)
            {
                foreach (var (labels, s) in state.Snapshot())
                {
                    if (series.TryGetValue(labels, out var existing))
                    {
                        existing.Merge(s);
                    }
                    else
                    {
                        series[labels] = s;
                    }
                }
            }

            output.Append("# HELP ").Append(Name).Append(' ').Append(PrometheusText.EscapeHelp(help)).Append('\n');
            output.Append("# TYPE ").Append(Name).Append(' ').Append(Type).Append('\n');
            foreach (var (labels, s) in series)
            {
                if (Type == "histogram")
                {
                    WriteHistogram(output, labels, s);
                }
                else
                {
                    output.Append(Name);
                    if (labels.Length > 0)
                    {
                        output.Append('{').Append(labels).Append('}');
                    }

                    output.Append(' ').Append(PrometheusText.FormatValue(s.Value)).Append('\n');
                }
            }
        }

        private void WriteHistogram(StringBuilder output, string labels, Series s)
        {
            var prefix = labels.Length > 0 ? labels + "," : string.Empty;
            long cumulative = 0;
            for (var i = 0; i < s.Bounds!.Length; i++)
            {
                cumulative += s.Buckets![i];
                output.Append(Name).Append("_bucket{").Append(prefix).Append("le=\"").Append(PrometheusText.FormatValue(s.Bounds[i])).Append("\"} ")
                    .Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
            }

            cumulative += s.Buckets![^1];
            output.Append(Name).Append("_bucket{").Append(prefix).Append("le=\"+Inf\"} ").Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
            var braces = labels.Length > 0 ? "{" + labels + "}" : string.Empty;
            output.Append(Name).Append("_sum").Append(braces).Append(' ').Append(PrometheusText.FormatValue(s.Sum)).Append('\n');
            output.Append(Name).Append("_count").Append(braces).Append(' ').Append(cumulative.ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
    }

    /// <summary>One series' value (or histogram), copied at scrape time.</summary>
    private sealed class Series
    {
        public double Value;
        public double[]? Bounds;
        public long[]? Buckets;
        public double Sum;

        public void Merge(Series other)
        {
            Value += other.Value;
            Sum += other.Sum;
            if (Buckets is not null && other.Buckets is not null && Buckets.Length == other.Buckets.Length)
            {
                for (var i = 0; i < Buckets.Length; i++)
                {
                    Buckets[i] += other.Buckets[i];
                }
            }
        }
    }

    private sealed class InstrumentState
    {
        private const int MaxCachedLabelSets = 4096;
        private readonly ConcurrentDictionary<LabelKey, string> _labelCache = new();

        private readonly bool _observable;
        private readonly bool _monotonic;
        private readonly bool _histogram;
        private readonly double[] _bounds = DefaultBuckets;
        private readonly ConcurrentDictionary<string, Cell> _cells = new(StringComparer.Ordinal);

        // Observable counters: the last value written per series, so a series never goes backwards.
        private readonly Dictionary<string, double> _lastWritten = new(StringComparer.Ordinal);

        public InstrumentState(Instrument instrument)
        {
            var type = instrument.GetType();
            var generic = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
            _observable = instrument.IsObservable;
            _histogram = generic == typeof(Histogram<>);
            _monotonic = generic == typeof(Counter<>) || generic == typeof(ObservableCounter<>);
            if (_histogram && instrument is Histogram<double> { Advice.HistogramBucketBoundaries: { Count: > 0 } adviceD })
            {
                _bounds = [.. adviceD];
            }
            else if (_histogram && instrument is Histogram<long> { Advice.HistogramBucketBoundaries: { Count: > 0 } adviceL })
            {
                _bounds = [.. adviceL.Select(static b => (double)b)];
            }

            Type = _histogram ? "histogram" : _monotonic ? "counter" : "gauge";
            Name = PrometheusText.MetricName(instrument.Name, instrument.Unit, _monotonic, _histogram);
            var help = string.IsNullOrWhiteSpace(instrument.Description) ? instrument.Name : instrument.Description;
            Help = string.IsNullOrEmpty(instrument.Unit) ? help : $"{help} (unit {instrument.Unit})";
        }

        public string Name { get; }

        public string Type { get; }

        public string Help { get; }

        public void BeginObservation()
        {
            if (_observable)
            {
                _cells.Clear(); // observable series are whatever the callbacks report now
            }
        }

        public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var labels = LabelsOf(tags);
            var cell = _cells.GetOrAdd(labels, _ => new Cell(_histogram ? _bounds.Length + 1 : 0));
            if (_histogram)
            {
                var index = Array.BinarySearch(_bounds, value);
                index = index >= 0 ? index : ~index; // first bound >= value ("le")
                lock (cell)
                {
                    cell.Buckets![index]++;
                    cell.Sum += value;
                }
            }
            else
            {
                lock (cell)
                {
                    cell.Value += value; // counters add; an observable series reported twice in one callback adds up
                }
            }
        }

        /// <summary>
        /// The rendered label set; cached for up to three string-valued tags (every measurement on a hot path:
        /// calls, registrations), whose values are bounded like the series themselves.
        /// </summary>
        private string LabelsOf(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length > 3)
            {
                return PrometheusText.RenderLabels(tags);
            }

            foreach (var tag in tags)
            {
                if (tag.Value is not (string or null))
                {
                    return PrometheusText.RenderLabels(tags);
                }
            }

            var key = new LabelKey(
                tags.Length > 0 ? tags[0].Key : null,
                tags.Length > 0 ? (string?)tags[0].Value : null,
                tags.Length > 1 ? tags[1].Key : null,
                tags.Length > 1 ? (string?)tags[1].Value : null,
                tags.Length > 2 ? tags[2].Key : null,
                tags.Length > 2 ? (string?)tags[2].Value : null);
            if (_labelCache.TryGetValue(key, out var labels))
            {
                return labels;
            }

            labels = PrometheusText.RenderLabels(tags);
            return _labelCache.Count < MaxCachedLabelSets ? _labelCache.GetOrAdd(key, labels) : labels;
        }

        public IEnumerable<KeyValuePair<string, Series>> Snapshot()
        {
            foreach (var (labels, cell) in _cells)
            {
                var series = new Series();
                lock (cell)
                {
                    series.Value = cell.Value;
                    series.Sum = cell.Sum;
                    if (cell.Buckets is not null)
                    {
                        series.Buckets = (long[])cell.Buckets.Clone();
                        series.Bounds = _bounds;
                    }
                }

                if (_observable && _monotonic)
                {
                    if (_lastWritten.TryGetValue(labels, out var last) && series.Value < last)
                    {
                        series.Value = last;
                    }

                    _lastWritten[labels] = series.Value;
                }

                yield return new KeyValuePair<string, Series>(labels, series);
            }
        }
    }

    private readonly record struct LabelKey(string? Key0, string? Value0, string? Key1, string? Value1, string? Key2, string? Value2);

    private sealed class Cell(int buckets)
    {
        public double Value;
        public double Sum;
        public readonly long[]? Buckets = buckets > 0 ? new long[buckets] : null;
    }
}
