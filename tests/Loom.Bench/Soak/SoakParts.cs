using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>The soak's settings, from the bench options.</summary>
internal sealed record SoakSettings(int Minutes, int Rate, int PayloadBytes, int Callers, int CallRate, TimeSpan Interval, int Silent, int FloodBurst, int FillRate, TimeSpan SlowPerEvent, TimeSpan OversizeEvery, IReadOnlySet<string> Offenders)
{
    public const int SinkProviders = 3;

    /// <summary>The kinds of offender, as --offenders names them.</summary>
    public static readonly IReadOnlyList<string> AllOffenders = ["stalled", "slow", "silent", "flood", "oversize", "fill"];

    public static SoakSettings From(BenchOptions o) =>
        new(o.Minutes, o.Rate, o.PayloadBytes, o.Callers, o.CallRate, TimeSpan.FromSeconds(o.IntervalSeconds), o.Silent, o.FloodBurst, o.FillRate, TimeSpan.FromMilliseconds(o.SlowMs), TimeSpan.FromSeconds(o.OversizeEverySeconds), o.Offenders);

    public bool Has(string offender) => Offenders.Contains(offender);

    public string Describe()
    {
        var offenders = new List<string>();
        void If(string kind, string what)
        {
            if (Has(kind))
            {
                offenders.Add(what);
            }
        }

        If("stalled", "a stalled BLOCK subscriber (queue 4)");
        If("slow", $"a BATCH subscriber taking {SlowPerEvent.TotalMilliseconds:N0} ms per event");
        If("silent", $"{Silent} silent TCP connections");
        If("flood", $"{FloodBurst} registrations every {Interval.TotalSeconds:N0} s");
        If("oversize", $"oversized forward/headers/list every {OversizeEvery.TotalSeconds:N0} s");
        If("fill", $"1 MiB memory writes at {FillRate}/s");
        return $"{Minutes} min; healthy: {Rate:N0} events/s of {Math.Max(16, PayloadBytes)} B to 2 subscribers (normal, batch), {Callers} callers at {CallRate:N0} calls/s in total, {SinkProviders} providers of {Soak.SinkProviders.Capability}; " +
            $"offenders: {(offenders.Count == 0 ? "none" : string.Join(", ", offenders))}; sample every {Interval.TotalSeconds:N0} s";
    }
}

/// <summary>Every healthy client and offender of a soak: made together, started together, disposed together (each disposal bounded).</summary>
internal sealed class SoakParts : IAsyncDisposable
{
    private static readonly TimeSpan DisposeBound = TimeSpan.FromSeconds(15);
    private readonly List<(string Name, Func<ValueTask> Dispose)> _owned = [];

    public Tally Healthy { get; } = new();

    public Tally Offenders { get; } = new();

    public LatencyRecorder OneWay { get; } = new();

    public List<HealthySubscriber> Subscribers { get; } = [];

    public HealthyPublisher Publisher { get; private set; } = null!;

    public HealthyCallers Callers { get; private set; } = null!;

    public SinkProviders Sinks { get; private set; } = null!;

    /// <summary>Null when --offenders leaves it out (it connects when made; the other offenders connect when started).</summary>
    public SlowSubscriber? Slow { get; private set; }

    public StalledSubscriber Stalled { get; private set; } = null!;

    public SilentConnections Silent { get; private set; } = null!;

    public RegistrationFlood Flood { get; private set; } = null!;

    public OversizedForward Forward { get; private set; } = null!;

    public OversizedHeaders Headers { get; private set; } = null!;

    public OversizedList List { get; private set; } = null!;

    public MemoryFiller Filler { get; private set; } = null!;

    /// <summary>Connects everything (healthy clients first, so they are in place before any offender).</summary>
    public static async Task<SoakParts> CreateAsync(Uri grpc, SoakSettings settings, CancellationToken cancellationToken)
    {
        var parts = new SoakParts();
        try
        {
            foreach (var (name, qos) in new[] { ("soak-sub-normal", QosClass.Normal), ("soak-sub-batch", QosClass.Batch) })
            {
                var subscriber = await HealthySubscriber.StartAsync(grpc, name, qos, parts.OneWay, cancellationToken);
                parts.Subscribers.Add(subscriber);
                parts.Own(name, subscriber.DisposeAsync);
            }

            parts.Callers = await HealthyCallers.StartAsync(grpc, parts.Healthy, cancellationToken);
            parts.Own("callers", parts.Callers.DisposeAsync);
            parts.Sinks = await SinkProviders.StartAsync(grpc, SoakSettings.SinkProviders, cancellationToken);
            parts.Own("sinks", parts.Sinks.DisposeAsync);
            parts.Publisher = await HealthyPublisher.StartAsync(grpc, settings.Rate, settings.PayloadBytes, parts.Healthy, cancellationToken);
            parts.Own("publisher", parts.Publisher.DisposeAsync);

            if (settings.Has("slow"))
            {
                var slow = await SlowSubscriber.StartAsync(grpc, settings.SlowPerEvent, cancellationToken);
                parts.Slow = slow;
                parts.Own(SlowSubscriber.Name, slow.DisposeAsync);
            }

            parts.Stalled = new StalledSubscriber(grpc, parts.Offenders);
            parts.Own(StalledSubscriber.Name, parts.Stalled.DisposeAsync);
            parts.Silent = new SilentConnections(grpc, settings.Silent, parts.Offenders);
            parts.Flood = new RegistrationFlood(grpc, settings.FloodBurst, settings.Interval, parts.Offenders);
            parts.Own(RegistrationFlood.Name, Sync(parts.Flood.Dispose));
            var maxMessage = (int)parts.Publisher.Connection.Limits.MaxMessageBytes;
            parts.Forward = new OversizedForward(grpc, maxMessage > 0 ? maxMessage : 4 * 1024 * 1024, settings.OversizeEvery, parts.Offenders);
            parts.Own(OversizedForward.Name, Sync(parts.Forward.Dispose));
            parts.Headers = new OversizedHeaders(grpc, maxMessage > 0 ? maxMessage : 4 * 1024 * 1024, settings.OversizeEvery, parts.Offenders);
            parts.Own(OversizedHeaders.Name, parts.Headers.DisposeAsync);
            parts.List = new OversizedList(grpc, settings.OversizeEvery, parts.Offenders);
            parts.Own(OversizedList.Name, parts.List.DisposeAsync);
            parts.Filler = new MemoryFiller(grpc, settings.FillRate, parts.Offenders);
            parts.Own(MemoryFiller.Name, parts.Filler.DisposeAsync);
            return parts;
        }
        catch
        {
            await parts.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts every loop (the offenders --offenders names); each runs until <paramref name="stop"/> and never ends on its own failures.</summary>
    public List<Task> Start(SoakSettings settings, CancellationToken stop)
    {
        List<Task> loops = [Publisher.RunAsync(stop), Callers.RunAsync(settings.Callers, settings.CallRate, stop)];
        void If(string kind, params Func<CancellationToken, Task>[] runs)
        {
            if (settings.Has(kind))
            {
                loops.AddRange(runs.Select(run => run(stop)));
            }
        }

        If("stalled", Stalled.RunAsync);
        If("silent", Silent.RunAsync);
        If("flood", Flood.RunAsync);
        If("oversize", Forward.RunAsync, Headers.RunAsync, List.RunAsync);
        If("fill", Filler.RunAsync);
        return loops;
    }

    /// <summary>Healthy envelopes the subscribers have received so far, in total.</summary>
    public long Received => Subscribers.Sum(s => s.Received);

    /// <summary>Reconnects of healthy SDK connections (their streams ended under them).</summary>
    public long HealthyReconnects => ReconnectsByPart.Sum(p => p.Value);

    public IReadOnlyList<KeyValuePair<string, long>> ReconnectsByPart =>
    [
        KeyValuePair.Create("subscribers", Subscribers.Sum(s => s.Reconnects)),
        KeyValuePair.Create("publisher", Publisher.Connection.Statistics.Reconnects),
        KeyValuePair.Create("echo provider and caller", Callers.Reconnects),
        KeyValuePair.Create("sink providers", Sinks.Reconnects),
    ];

    private void Own(string name, Func<ValueTask> dispose) => _owned.Add((name, dispose));

    private static Func<ValueTask> Sync(Action dispose) => () =>
    {
        dispose();
        return ValueTask.CompletedTask;
    };

    public async ValueTask DisposeAsync()
    {
        for (var i = _owned.Count - 1; i >= 0; i--)
        {
            var (name, dispose) = _owned[i];
            try
            {
                await dispose().AsTask().WaitAsync(DisposeBound);
            }
            catch (Exception ex)
            {
                await Console.Error.WriteLineAsync($"soak: closing {name} failed: {ex.GetType().Name}: {ex.Message}");
            }
        }

        _owned.Clear();
    }
}
