using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Dashboard;

/// <summary>
/// What the dashboard shows, gathered on the bridge and bounded everywhere: the bus's and the
/// broker's observers count events and calls and record a sample of them (at most
/// <see cref="RecordBudgetPerSecond"/> a second) into a ring of recent events and a buffer of
/// recent threads; a 1-second sampler turns counters into rates and keeps
/// <see cref="HistoryPoints"/> points of history. Clients of the live streams get what the sampler
/// and the recorder produce through bounded queues; a client whose queue is full is dropped
/// (counted), never buffered.
/// </summary>
internal sealed class DashboardFeed : IDisposable
{
    public const int RecordBudgetPerSecond = 2000;
    public const int RecentEvents = 1000;
    public const int MaxThreads = 200;
    public const int MaxMarksPerThread = 1000;
    public const int HistoryPoints = 300;
    public const int MaxEdges = 5000;
    public const int MaxGoneAgents = 1000;
    public const int PayloadPreviewBytes = 4096;

    /// <summary>Agent rows in each overview the pages get (the rest are counted, and searched through /v1/overview/agents).</summary>
    public const int OverviewAgents = 200;

    /// <summary>Nodes per topology column by default (the busiest; the rest folded into one node).</summary>
    public const int TopologyNodes = 20;

    /// <summary>Topics in the topics view by default (the busiest), and subscriptions listed per topic.</summary>
    public const int TopicsShown = 100;
    public const int SubscriptionsPerTopic = 20;
    public static readonly TimeSpan GoneAgentsKept = TimeSpan.FromMinutes(10);

    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly AgentDirectory _agents;
    private readonly Func<SessionRegistry?> _sessions;
    private readonly TimeProvider _time;
    private readonly ILogger? _logger;
    private readonly Lock _recordGate = new();
    private readonly RecordedEvent?[] _ring = new RecordedEvent?[RecentEvents];
    private long _ringNext;
    private readonly Dictionary<string, ThreadBuffer> _threads = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string From, string To), EdgeCounter> _publishEdges = new();
    private readonly ConcurrentDictionary<(string From, string To), EdgeCounter> _callEdges = new();
    private readonly ConcurrentDictionary<string, CapabilityCalls> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<long, DashboardClient> _clients = new();
    private readonly Dictionary<string, GoneAgent> _gone = new(StringComparer.Ordinal);
    private readonly Queue<OverviewPoint> _history = new();
    private readonly ITimer? _timer;
    private long _callsTotal;
    private long _callErrors;
    private long _sampledOut;
    private long _sampledOutReported;
    private long _budgetSecond;
    private int _budgetUsed;

    /// <summary>The publish edge this thread counted last, for <see cref="OnEnvelope"/>.</summary>
    [ThreadStatic]
    private static LastEdge? t_lastEdge;
    private long _clientIds;
    private long _clientsDropped;
    private long _eventsToClientsSkipped;
    private long _streamBytes;
    private Totals _lastTotals;
    private long _lastTick;
    private string _overviewJson = "{}";
    private int _disposed;

    public DashboardFeed(EventBus bus, ActionBroker broker, AgentDirectory agents, Func<SessionRegistry?> sessions, TimeProvider time, ILogger? logger = null, bool startSampler = true)
    {
        _bus = bus;
        _broker = broker;
        _agents = agents;
        _sessions = sessions;
        _time = time;
        _logger = logger;
        _lastTick = time.GetTimestamp();
        _lastTotals = ReadTotals();
        bus.Observer = OnEnvelope;
        broker.CallObserver = OnCall;
        agents.Removed = OnAgentRemoved;
        if (startSampler)
        {
            _timer = time.CreateTimer(_ => Tick(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        }
    }

    /// <summary>Live-stream clients dropped because they did not read fast enough.</summary>
    public long ClientsDropped => Volatile.Read(ref _clientsDropped);

    /// <summary>Events not recorded (over the per-second budget).</summary>
    public long SampledOut
    {
        get
        {
            // Past seconds' excess, then this second's (read in the order TakeBudget writes them, so
            // never over); a read between a second's reset and its addition could undercount, so
            // the figure never goes below one already reported.
            var now = Volatile.Read(ref _sampledOut) + Math.Max(0, Volatile.Read(ref _budgetUsed) - RecordBudgetPerSecond);
            var reported = Volatile.Read(ref _sampledOutReported);
            while (now > reported)
            {
                var seen = Interlocked.CompareExchange(ref _sampledOutReported, now, reported);
                if (seen == reported)
                {
                    return now;
                }

                reported = seen;
            }

            return reported;
        }
    }

    /// <summary>Events a live-tail client did not get because of its rate cap.</summary>
    public long ClientEventsSkipped => Volatile.Read(ref _eventsToClientsSkipped);

    public int ClientCount => _clients.Count;

    /// <summary>Bytes written to live-stream (SSE) clients since the bridge started.</summary>
    public long StreamBytes => Volatile.Read(ref _streamBytes);

    internal void Sent(int bytes) => Interlocked.Add(ref _streamBytes, bytes);

    /// <summary>The latest overview (JSON), as the sampler made it.</summary>
    public string OverviewJson => Volatile.Read(ref _overviewJson);

    // ---------------------------------------------------------------------------------------
    // Recording (on the publishing and calling threads: quick, bounded, never throws)
    // ---------------------------------------------------------------------------------------

    /// <summary>An agent left (unregistered, expired or replaced by a restart): listed as gone for <see cref="GoneAgentsKept"/>.</summary>
    private void OnAgentRemoved(AgentInfo agent)
    {
        lock (_gone)
        {
            _gone[agent.AgentId] = new GoneAgent(agent, _time.GetUtcNow());
        }
    }

    private void OnEnvelope(Envelope envelope)
    {
        // The events total is the sum of the publish edges (each event counts on exactly one edge), so
        // an event costs one increment on its edge's counter; a thread's last edge is found by reference
        // (a session publishes one topic string object again and again) without hashing the pair.
        var sender = envelope.Sender.Length == 0 ? "(bridge)" : envelope.Sender;
        var topic = envelope.Topic;
        var last = t_lastEdge;
        if (last is not null && ReferenceEquals(last.Feed, this) && ReferenceEquals(last.From, sender) && ReferenceEquals(last.To, topic))
        {
            Interlocked.Increment(ref last.Counter.Count);
        }
        else
        {
            t_lastEdge = new LastEdge(this, sender, topic, Count(_publishEdges, sender, topic));
        }

        if (!TakeBudget())
        {
            return;
        }

        var recorded = RecordedEvent.From(envelope);
        Record(recorded);
    }

    private void OnCall(ActionRequest request, ActionOutcome outcome, TimeSpan elapsed)
    {
        Interlocked.Increment(ref _callsTotal);
        if (outcome.Error is not null)
        {
            Interlocked.Increment(ref _callErrors);
        }

        var name = request.Capability ?? "";
        var caller = request.Caller.Length == 0 ? "(bridge)" : request.Caller;
        Count(_callEdges, caller, name);
        // ConcurrentDictionary.Count takes every bucket lock: only a capability not seen yet pays for it.
        if (_calls.TryGetValue(name, out var calls) || (_calls.Count < MaxEdges && (calls = _calls.GetOrAdd(name, static _ => new CapabilityCalls())) is not null))
        {
            calls.Add(elapsed, outcome.Error?.Code);
        }

        if (!TakeBudget())
        {
            return;
        }

        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        Record(new RecordedEvent
        {
            Kind = "call",
            Id = request.CallId ?? "",
            Topic = name,
            Sender = caller,
            Target = outcome.AgentId ?? "",
            ThreadId = request.ThreadId,
            TimestampUnixMs = now - (long)elapsed.TotalMilliseconds,
            EndUnixMs = now,
            DurationMs = Math.Round(elapsed.TotalMilliseconds, 3),
            Error = outcome.Error is { } e ? ErrorCodes.Name(e.Code) + ": " + e.Message : null,
        });
    }

    /// <summary>Counts one on the edge's counter (the "(other)" edge once there are <see cref="MaxEdges"/>) and returns it.</summary>
    private static EdgeCounter Count(ConcurrentDictionary<(string, string), EdgeCounter> edges, string from, string to)
    {
        if (!edges.TryGetValue((from, to), out var counter))
        {
            counter = edges.Count < MaxEdges
                ? edges.GetOrAdd((from, to), static _ => new EdgeCounter())
                : edges.GetOrAdd(("(other)", "(other)"), static _ => new EdgeCounter());
        }

        Interlocked.Increment(ref counter.Count);
        return counter;
    }

    /// <summary>True while this second's recording budget lasts.</summary>
    /// <remarks>
    /// One increment an event: what a second used over its budget is added to
    /// <see cref="SampledOut"/> when the next second starts (and read live for the current one).
    /// </remarks>
    private bool TakeBudget()
    {
        var second = _time.GetTimestamp() / _time.TimestampFrequency;
        if (Volatile.Read(ref _budgetSecond) != second)
        {
            Volatile.Write(ref _budgetSecond, second);
            var used = Interlocked.Exchange(ref _budgetUsed, 0);
            if (used > RecordBudgetPerSecond)
            {
                Interlocked.Add(ref _sampledOut, used - RecordBudgetPerSecond);
            }
        }

        return Interlocked.Increment(ref _budgetUsed) <= RecordBudgetPerSecond;
    }

    private void Record(RecordedEvent recorded)
    {
        lock (_recordGate)
        {
            recorded.Seq = _ringNext;
            _ring[_ringNext % RecentEvents] = recorded;
            _ringNext++;
            if (recorded.ThreadId.Length != 0)
            {
                if (!_threads.TryGetValue(recorded.ThreadId, out var thread))
                {
                    if (_threads.Count >= MaxThreads)
                    {
                        var oldest = _threads.Values.MinBy(t => t.LastUnixMs)!;
                        _threads.Remove(oldest.Id);
                    }

                    thread = new ThreadBuffer(recorded.ThreadId, recorded.TimestampUnixMs);
                    _threads[recorded.ThreadId] = thread;
                }

                thread.Add(recorded);
            }
        }

        foreach (var client in _clients.Values)
        {
            client.OfferEvent(recorded, this);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------------------------

    /// <summary>The recent events matching <paramref name="filter"/>, oldest first.</summary>
    public List<RecordedEvent> Recent(EventFilter filter, int limit)
    {
        var result = new List<RecordedEvent>();
        lock (_recordGate)
        {
            var start = Math.Max(0, _ringNext - RecentEvents);
            for (var i = _ringNext - 1; i >= start && result.Count < limit; i--)
            {
                if (_ring[i % RecentEvents] is { } e && filter.Matches(e))
                {
                    result.Add(e);
                }
            }
        }

        result.Reverse();
        return result;
    }

    public ThreadList Threads()
    {
        lock (_recordGate)
        {
            return new ThreadList(_threads.Values
                .OrderByDescending(t => t.LastUnixMs)
                .Select(t => new ThreadSummary(t.Id, t.FirstUnixMs, t.LastUnixMs, t.Count, t.Errors, t.Agents.ToList(), t.Truncated))
                .ToList());
        }
    }

    public ThreadDetail? Thread(string id)
    {
        lock (_recordGate)
        {
            return _threads.TryGetValue(id, out var t)
                ? new ThreadDetail(t.Id, t.FirstUnixMs, t.LastUnixMs, t.Agents.ToList(), t.Marks.ToList(), t.Truncated)
                : null;
        }
    }

    /// <summary>
    /// The topology cut to the busiest <paramref name="limit"/> nodes of each column: publishers and
    /// topics by events (rate, then count), subscribers by the kept topics they match, callers and
    /// capabilities by calls, providers by capabilities kept. Subscriptions are matched to the kept
    /// topics here, so the page never pairs every topic with every pattern.
    /// </summary>
    public Topology Topology(int limit = TopologyNodes)
    {
        var publishes = _publishEdges.Select(kv => new RateEdge(kv.Key.From, kv.Key.To, Volatile.Read(ref kv.Value.Count), kv.Value.Rate)).ToList();
        var keptPublishers = Busiest(publishes.GroupBy(e => e.From), limit, out var hiddenPublishers);
        var keptTopics = Busiest(publishes.GroupBy(e => e.To), limit, out var hiddenTopics);
        var publishEdges = Fold(publishes, keptPublishers, keptTopics, $"({hiddenPublishers} more publishers)", $"({hiddenTopics} more topics)");

        var subscriptions = _bus.Subscriptions.Where(s => s.Owner != "_loom.collab").ToList();
        var subscribeEdges = new List<SubscribeEdge>();
        foreach (var topic in keptTopics)
        {
            foreach (var sub in subscriptions)
            {
                if (Topics.Matches(sub.Pattern, topic))
                {
                    subscribeEdges.Add(new SubscribeEdge(topic, sub.Owner ?? "(bridge)", sub.Pattern, sub.Stats.Depth));
                }
            }
        }

        var bySubscriber = subscribeEdges.GroupBy(e => e.Agent).OrderByDescending(g => g.Count()).ThenByDescending(g => g.Sum(e => e.Depth)).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
        var keptSubscribers = bySubscriber.Take(limit).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        var hiddenSubscribers = bySubscriber.Count - keptSubscribers.Count;
        var others = $"({hiddenSubscribers} more subscribers)";
        var subscribes = subscribeEdges.Where(e => keptSubscribers.Contains(e.Agent))
            .Concat(subscribeEdges.Where(e => !keptSubscribers.Contains(e.Agent)).GroupBy(e => e.Topic).Select(g => new SubscribeEdge(g.Key, others, $"{g.Count()} subscriptions", g.Sum(e => e.Depth))))
            .OrderBy(e => e.Topic, StringComparer.Ordinal).ThenBy(e => e.Agent, StringComparer.Ordinal).ToList();

        var calls = _callEdges.Select(kv => new RateEdge(kv.Key.From, kv.Key.To, Volatile.Read(ref kv.Value.Count), kv.Value.Rate)).ToList();
        var providers = _broker.Capabilities
            .SelectMany(c => c.Providers.Select(p => new ProvideEdge(p.Provider.AgentId, c.Name)))
            .Distinct()
            .ToList();
        var keptCallers = Busiest(calls.GroupBy(e => e.From), limit, out var hiddenCallers);
        // Capabilities: the called ones by calls, then registered ones never called.
        var capabilityWeights = calls.GroupBy(e => e.To).Select(g => (Name: g.Key, Rate: g.Sum(e => e.Rate), Count: g.Sum(e => e.Count)))
            .Concat(providers.Select(p => p.Capability).Distinct().Where(n => !calls.Any(c => c.To == n)).Select(n => (Name: n, Rate: 0.0, Count: 0L)))
            .OrderByDescending(w => w.Rate).ThenByDescending(w => w.Count).ThenBy(w => w.Name, StringComparer.Ordinal).ToList();
        var keptCapabilities = capabilityWeights.Take(limit).Select(w => w.Name).ToHashSet(StringComparer.Ordinal);
        var hiddenCapabilities = capabilityWeights.Count - keptCapabilities.Count;
        var callEdges = Fold(calls, keptCallers, keptCapabilities, $"({hiddenCallers} more callers)", $"({hiddenCapabilities} more capabilities)");
        var keptProvides = providers.Where(p => keptCapabilities.Contains(p.Capability)).ToList();
        var providerNames = keptProvides.GroupBy(p => p.Agent).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
        var keptProviders = providerNames.Take(limit).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
        var hiddenProviders = providerNames.Count - keptProviders.Count;
        var provides = keptProvides.Select(p => keptProviders.Contains(p.Agent) ? p : p with { Agent = $"({hiddenProviders} more providers)" }).Distinct()
            .OrderBy(p => p.Capability, StringComparer.Ordinal).ThenBy(p => p.Agent, StringComparer.Ordinal).ToList();

        return new Topology(publishEdges, subscribes, callEdges, provides, limit,
            new HiddenNodes(hiddenPublishers, hiddenTopics, hiddenSubscribers, hiddenCallers, hiddenCapabilities, hiddenProviders));
    }

    /// <summary>The keys of the busiest <paramref name="limit"/> groups of edges (by summed rate, then count, then name).</summary>
    private static HashSet<string> Busiest(IEnumerable<IGrouping<string, RateEdge>> groups, int limit, out int hidden)
    {
        var ranked = groups.Select(g => (g.Key, Rate: g.Sum(e => e.Rate), Count: g.Sum(e => e.Count)))
            .OrderByDescending(g => g.Rate).ThenByDescending(g => g.Count).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
        hidden = Math.Max(0, ranked.Count - limit);
        return ranked.Take(limit).Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
    }

    /// <summary>Edges between kept nodes as they are; the others summed onto the columns' "(N more …)" nodes.</summary>
    private static List<RateEdge> Fold(List<RateEdge> edges, HashSet<string> keptFrom, HashSet<string> keptTo, string otherFrom, string otherTo) =>
        edges.GroupBy(e => (From: keptFrom.Contains(e.From) ? e.From : otherFrom, To: keptTo.Contains(e.To) ? e.To : otherTo))
            .Select(g => new RateEdge(g.Key.From, g.Key.To, g.Sum(e => e.Count), Math.Round(g.Sum(e => e.Rate), 2)))
            .OrderBy(e => e.From, StringComparer.Ordinal).ThenBy(e => e.To, StringComparer.Ordinal).ToList();

    /// <summary>
    /// The busiest topics (by events published) whose name contains <paramref name="query"/>, at
    /// most <paramref name="limit"/>, each with at most <see cref="SubscriptionsPerTopic"/> of the
    /// subscriptions that match it (the deepest queues first). Matching is done for the listed
    /// topics only.
    /// </summary>
    public TopicList TopicsView(string query = "", int limit = TopicsShown)
    {
        var stats = _bus.TopicStats();
        var matched = (query.Length == 0 ? stats : stats.Where(s => s.Topic.Contains(query, StringComparison.OrdinalIgnoreCase)).ToList())
            .OrderByDescending(s => s.Published).ThenBy(s => s.Topic, StringComparer.Ordinal).ToList();
        var subscriptions = _bus.Subscriptions.ToList();
        var topics = new List<TopicView>(Math.Min(matched.Count, limit));
        foreach (var s in matched.Take(limit))
        {
            var matching = subscriptions.Where(sub => Topics.Matches(sub.Pattern, s.Topic)).Select(sub => (Sub: sub, Stats: sub.Stats)).ToList();
            var shown = matching
                .OrderByDescending(m => m.Stats.DroppedTotal).ThenByDescending(m => m.Stats.Depth).ThenBy(m => m.Sub.Owner, StringComparer.Ordinal)
                .Take(SubscriptionsPerTopic)
                .Select(m => new TopicSubscription(m.Sub.Owner ?? "(bridge)", m.Sub.Pattern, m.Sub.Qos.ToString().ToLowerInvariant(), m.Sub.Overflow.ToString(), m.Sub.Capacity, m.Stats.Depth, m.Stats.DroppedTotal,
                    m.Stats.Dropped.Where(d => d.Value != 0).ToDictionary(d => d.Key.ToString(), d => d.Value)))
                .ToList();
            topics.Add(new TopicView(s.Topic, _bus.Groups.GroupOf(s.Topic), s.Published, s.Delivered, s.NoSubscribers, s.DroppedTotal,
                s.Dropped.Where(d => d.Value != 0).ToDictionary(d => d.Key.ToString(), d => d.Value), shown, matching.Count));
        }

        return new TopicList(topics, matched.Count > topics.Count, stats.Count, matched.Count);
    }

    public CapabilityStatsList CapabilityStats() =>
        new(_calls.Select(kv => kv.Value.Snapshot(kv.Key)).OrderBy(c => c.Name, StringComparer.Ordinal).ToList());

    // ---------------------------------------------------------------------------------------
    // Sampling
    // ---------------------------------------------------------------------------------------

    private readonly record struct Totals(long Events, long Delivered, long Calls, long Errors, Dictionary<string, long> Drops);

    private Totals ReadTotals()
    {
        long delivered = 0;
        var drops = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var t in _bus.TopicStats())
        {
            delivered += t.Delivered;
            foreach (var (reason, count) in t.Dropped)
            {
                if (count != 0)
                {
                    drops[reason.ToString()] = drops.GetValueOrDefault(reason.ToString()) + count;
                }
            }
        }

        long events = 0;
        foreach (var edge in _publishEdges.Values)
        {
            events += Volatile.Read(ref edge.Count);
        }

        return new Totals(events, delivered, Volatile.Read(ref _callsTotal), Volatile.Read(ref _callErrors), drops);
    }

    /// <summary>One sampling step (every second on the timer; tests may call it).</summary>
    internal void Tick()
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        try
        {
            var now = _time.GetTimestamp();
            var seconds = Math.Max(0.001, _time.GetElapsedTime(_lastTick, now).TotalSeconds);
            _lastTick = now;
            var totals = ReadTotals();
            var previous = _lastTotals;
            _lastTotals = totals;
            var drops = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var (reason, count) in totals.Drops)
            {
                var rate = (count - previous.Drops.GetValueOrDefault(reason)) / seconds;
                if (rate > 0)
                {
                    drops[reason] = Math.Round(rate, 2);
                }
            }

            foreach (var edge in _publishEdges.Values)
            {
                edge.Sample(seconds);
            }

            foreach (var edge in _callEdges.Values)
            {
                edge.Sample(seconds);
            }

            var point = new OverviewPoint(
                _time.GetUtcNow().ToUnixTimeMilliseconds(),
                Math.Round((totals.Events - previous.Events) / seconds, 2),
                Math.Round((totals.Delivered - previous.Delivered) / seconds, 2),
                Math.Round((totals.Calls - previous.Calls) / seconds, 2),
                Math.Round((totals.Errors - previous.Errors) / seconds, 2),
                drops);
            lock (_history)
            {
                _history.Enqueue(point);
                while (_history.Count > HistoryPoints)
                {
                    _history.Dequeue();
                }
            }

            var agents = Agents();
            var states = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var a in agents)
            {
                states[a.State] = states.GetValueOrDefault(a.State) + 1;
            }

            var overview = new Overview(agents.Count > OverviewAgents ? agents.GetRange(0, OverviewAgents) : agents, agents.Count, states, point, totals.Events, totals.Delivered, totals.Calls, totals.Errors, totals.Drops, _bus.QueuedBytes,
                new FeedStats(ClientCount, ClientsDropped, SampledOut, ClientEventsSkipped, StreamBytes));
            var json = JsonSerializer.Serialize(overview, DashboardJsonContext.Default.Overview);
            Volatile.Write(ref _overviewJson, json);
            foreach (var client in _clients.Values)
            {
                client.OfferOverview(json, this);
            }
        }
        catch (Exception ex) when (_logger is not null)
        {
            Log.LoopFailed(_logger, ex, "dashboard sampler");
        }
    }

    public List<OverviewPoint> History()
    {
        lock (_history)
        {
            return [.. _history];
        }
    }

    /// <summary>Agents whose id, name, language, SDK or state contains <paramref name="query"/> (any case), at most <paramref name="limit"/>.</summary>
    public AgentList AgentsView(string query, int limit)
    {
        var all = Agents();
        var matched = query.Length == 0 ? all : all.Where(a =>
            a.AgentId.Contains(query, StringComparison.OrdinalIgnoreCase) || a.Name.Contains(query, StringComparison.OrdinalIgnoreCase)
            || a.Language.Contains(query, StringComparison.OrdinalIgnoreCase) || a.Sdk.Contains(query, StringComparison.OrdinalIgnoreCase)
            || a.State.Contains(query, StringComparison.OrdinalIgnoreCase)).ToList();
        return new AgentList(matched.Take(limit).ToList(), all.Count, matched.Count);
    }

    private List<AgentRow> Agents()
    {
        var sessions = _sessions();
        var now = _time.GetUtcNow();
        var current = new Dictionary<string, AgentInfo>(StringComparer.Ordinal);
        var rows = new List<AgentRow>();
        foreach (var agent in _agents.All())
        {
            current[agent.AgentId] = agent;
            AgentSession? session = null;
            var known = sessions is not null && sessions.TryGetByAgent(agent.AgentId, out session);
            rows.Add(new AgentRow(agent.AgentId, agent.Name, agent.Namespace, agent.Sdk, agent.Metadata.GetValueOrDefault("language", LanguageOf(agent.Sdk)),
                !known ? "in-process" : session!.HasStream ? "connected" : "detached",
                agent.ConnectedAt, known ? (long)session!.SinceLastSeen.TotalMilliseconds : 0, null, agent.Topics, agent.Capabilities));
        }

        lock (_gone)
        {
            foreach (var id in current.Keys)
            {
                _gone.Remove(id);
            }

            foreach (var stale in _gone.Where(g => now - g.Value.Since > GoneAgentsKept).Select(g => g.Key).ToList())
            {
                _gone.Remove(stale);
            }

            while (_gone.Count > MaxGoneAgents)
            {
                _gone.Remove(_gone.MinBy(g => g.Value.Since).Key);
            }

            foreach (var g in _gone.Values.OrderByDescending(g => g.Since))
            {
                var a = g.Info;
                rows.Add(new AgentRow(a.AgentId, a.Name, a.Namespace, a.Sdk, a.Metadata.GetValueOrDefault("language", LanguageOf(a.Sdk)), "gone", a.ConnectedAt, 0, g.Since, a.Topics, a.Capabilities));
            }
        }

        rows.Sort(static (a, b) => (a.State == "gone").CompareTo(b.State == "gone") is var c && c != 0 ? c : string.CompareOrdinal(a.AgentId, b.AgentId));
        return rows;
    }

    private static string LanguageOf(string sdk) =>
        sdk.StartsWith("loom-python", StringComparison.OrdinalIgnoreCase) || sdk.StartsWith("python", StringComparison.OrdinalIgnoreCase) ? "python"
        : sdk.StartsWith("loom-js", StringComparison.OrdinalIgnoreCase) || sdk.Contains("node", StringComparison.OrdinalIgnoreCase) || sdk.Contains("typescript", StringComparison.OrdinalIgnoreCase) ? "typescript"
        : sdk.Contains("dotnet", StringComparison.OrdinalIgnoreCase) || sdk.Contains(".net", StringComparison.OrdinalIgnoreCase) ? "dotnet"
        : "";

    // ---------------------------------------------------------------------------------------
    // Clients
    // ---------------------------------------------------------------------------------------

    public DashboardClient Connect(EventFilter? filter, bool overview, int maxEventsPerSecond)
    {
        var client = new DashboardClient(Interlocked.Increment(ref _clientIds), filter, overview, maxEventsPerSecond, _time);
        _clients[client.Id] = client;
        return client;
    }

    public void Disconnect(DashboardClient client) => _clients.TryRemove(client.Id, out _);

    internal void Dropped(DashboardClient client)
    {
        if (_clients.TryRemove(client.Id, out _))
        {
            Interlocked.Increment(ref _clientsDropped);
        }
    }

    internal void Skipped() => Interlocked.Increment(ref _eventsToClientsSkipped);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _timer?.Dispose();
        if (_bus.Observer == OnEnvelope)
        {
            _bus.Observer = null;
        }

        _broker.CallObserver = null;
        _agents.Removed = null;
        foreach (var client in _clients.Values)
        {
            client.Complete();
        }
    }

    private sealed record LastEdge(DashboardFeed Feed, string From, string To, EdgeCounter Counter);

    private sealed class EdgeCounter
    {
        public long Count;
        private long _sampled;
        public double Rate;

        public void Sample(double seconds)
        {
            var count = Volatile.Read(ref Count);
            Rate = Math.Round((count - _sampled) / seconds, 2);
            _sampled = count;
        }
    }

    private sealed class ThreadBuffer(string id, long first)
    {
        public readonly string Id = id;
        public readonly long FirstUnixMs = first;
        public long LastUnixMs = first;
        public int Count;
        public int Errors;
        public bool Truncated;
        public readonly List<RecordedEvent> Marks = [];
        public readonly SortedSet<string> Agents = new(StringComparer.Ordinal);

        public void Add(RecordedEvent e)
        {
            Count++;
            LastUnixMs = Math.Max(LastUnixMs, e.EndUnixMs ?? e.TimestampUnixMs);
            if (e.Error is not null)
            {
                Errors++;
            }

            if (Agents.Count < 100)
            {
                Agents.Add(e.Sender);
                if (e.Target.Length != 0)
                {
                    Agents.Add(e.Target);
                }
            }

            if (Marks.Count >= MaxMarksPerThread)
            {
                Truncated = true;
                return;
            }

            Marks.Add(e);
        }
    }

    private sealed record GoneAgent(AgentInfo Info, DateTimeOffset Since);
}

/// <summary>Calls of one capability: count, errors by code, and the last 1,024 durations for percentiles.</summary>
internal sealed class CapabilityCalls
{
    private const int Window = 1024;
    private readonly Lock _gate = new();
    private readonly double[] _durations = new double[Window];
    private readonly Dictionary<string, long> _errors = new(StringComparer.Ordinal);
    private long _count;

    public void Add(TimeSpan elapsed, ErrorCode? error)
    {
        lock (_gate)
        {
            _durations[_count % Window] = elapsed.TotalMilliseconds;
            _count++;
            if (error is { } code)
            {
                var name = ErrorCodes.Name(code);
                _errors[name] = _errors.GetValueOrDefault(name) + 1;
            }
        }
    }

    public CapabilityCallStats Snapshot(string name)
    {
        double[] window;
        long count;
        Dictionary<string, long> errors;
        lock (_gate)
        {
            count = _count;
            window = _durations[..(int)Math.Min(count, Window)];
            errors = new Dictionary<string, long>(_errors, StringComparer.Ordinal);
        }

        Array.Sort(window);
        return new CapabilityCallStats(name, count, errors.Values.Sum(), errors, Percentile(window, 0.5), Percentile(window, 0.9), Percentile(window, 0.99));
    }

    private static double Percentile(double[] sorted, double q) =>
        sorted.Length == 0 ? 0 : Math.Round(sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)], 3);
}

/// <summary>Which events a live-tail client wants: a topic pattern, an agent (sender or target), a thread, a correlation id; empty = any.</summary>
internal sealed record EventFilter(string Topic, string Agent, string Thread, string Correlation)
{
    public static readonly EventFilter Any = new("", "", "", "");

    public bool Matches(RecordedEvent e) =>
        (Topic.Length == 0 || (e.Kind == "event" ? Topics.Matches(Topic, e.Topic) : Topic == e.Topic || Topics.Matches(Topic, e.Topic)))
        && (Agent.Length == 0 || e.Sender == Agent || e.Target == Agent)
        && (Thread.Length == 0 || e.ThreadId == Thread)
        && (Correlation.Length == 0 || e.CorrelationId == Correlation || e.Id == Correlation);
}

/// <summary>One recorded event (an envelope with its payload cut to a preview) or call.</summary>
internal sealed class RecordedEvent
{
    public long Seq { get; set; }
    public string Kind { get; init; } = "event";
    public string Id { get; init; } = "";
    public string Topic { get; init; } = "";
    public string Sender { get; init; } = "";
    public string Target { get; init; } = "";
    public string ThreadId { get; init; } = "";
    public string CorrelationId { get; init; } = "";
    public string ReplyTo { get; init; } = "";
    public long TimestampUnixMs { get; init; }
    public long? EndUnixMs { get; init; }
    public double? DurationMs { get; init; }
    public string? Error { get; init; }
    public string ContentType { get; init; } = "";
    public int PayloadBytes { get; init; }
    public string? Payload { get; init; }
    public bool PayloadTruncated { get; init; }
    public uint HopCount { get; init; }
    public string Qos { get; init; } = "";
    public IReadOnlyDictionary<string, string>? Headers { get; init; }

    public static RecordedEvent From(Envelope e)
    {
        var payload = e.Payload.Span;
        var preview = payload.Length > DashboardFeed.PayloadPreviewBytes ? payload[..DashboardFeed.PayloadPreviewBytes] : payload;
        string text;
        try
        {
            // A cut preview may end inside a character: decoded leniently then.
            text = payload.Length > preview.Length ? Encoding.UTF8.GetString(preview) : new UTF8Encoding(false, true).GetString(preview);
        }
        catch (DecoderFallbackException)
        {
            text = "base64:" + Convert.ToBase64String(preview);
        }

        return new RecordedEvent
        {
            Id = e.Id,
            Topic = e.Topic,
            Sender = e.Sender.Length == 0 ? "(bridge)" : e.Sender,
            ThreadId = e.ThreadId,
            CorrelationId = e.CorrelationId,
            ReplyTo = e.ReplyTo,
            TimestampUnixMs = e.TimestampUnixMs,
            ContentType = e.ContentType,
            PayloadBytes = payload.Length,
            Payload = text,
            PayloadTruncated = payload.Length > preview.Length,
            HopCount = e.HopCount,
            Qos = e.Qos.ToString().ToLowerInvariant(),
            Headers = e.Headers.Count == 0 ? null : new Dictionary<string, string>(e.Headers, StringComparer.Ordinal),
            Error = e.Headers.TryGetValue("error", out var error) ? error : null,
        };
    }
}
