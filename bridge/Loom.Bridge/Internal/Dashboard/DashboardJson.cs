using System.Text.Json;
using System.Text.Json.Serialization;

namespace Loom.Bridge.Internal.Dashboard;

internal sealed record AgentRow(
    string AgentId,
    string Name,
    string Namespace,
    string Sdk,
    string Language,
    string State,
    DateTimeOffset ConnectedAt,
    long LastSeenMs,
    DateTimeOffset? GoneAt,
    IReadOnlyList<string> Topics,
    IReadOnlyList<string> Capabilities);

/// <summary>One second of the overview's charts: rates per second.</summary>
internal sealed record OverviewPoint(long T, double Events, double Deliveries, double Calls, double Errors, IReadOnlyDictionary<string, double> Drops);

/// <summary>The feed's own bookkeeping; <c>StreamBytes</c>: bytes sent on the live streams (SSE) since the bridge started.</summary>
internal sealed record FeedStats(int Clients, long ClientsDropped, long SampledOut, long ClientEventsSkipped, long StreamBytes);

/// <summary>
/// The overview, once a second to every page: <c>Agents</c> holds at most
/// <see cref="DashboardFeed.OverviewAgents"/> rows (live ones first, by id); <c>AgentsTotal</c> and
/// <c>AgentStates</c> count them all (the page asks /v1/overview/agents to search the rest).
/// </summary>
internal sealed record Overview(
    IReadOnlyList<AgentRow> Agents,
    int AgentsTotal,
    IReadOnlyDictionary<string, int> AgentStates,
    OverviewPoint Point,
    long EventsTotal,
    long DeliveredTotal,
    long CallsTotal,
    long ErrorsTotal,
    IReadOnlyDictionary<string, long> DropsTotal,
    long QueuedBytes,
    FeedStats Feed);

internal sealed record HistoryList(IReadOnlyList<OverviewPoint> Points);

internal sealed record ThreadSummary(string Id, long FirstUnixMs, long LastUnixMs, int Count, int Errors, IReadOnlyList<string> Agents, bool Truncated);

internal sealed record ThreadList(IReadOnlyList<ThreadSummary> Threads);

internal sealed record ThreadDetail(string Id, long FirstUnixMs, long LastUnixMs, IReadOnlyList<string> Agents, IReadOnlyList<RecordedEvent> Marks, bool Truncated);

internal sealed record RateEdge(string From, string To, long Count, double Rate);

internal sealed record SubscribeEdge(string Topic, string Agent, string Pattern, int Depth);

/// <summary>Nodes left out of a topology column (folded into its "(N more …)" node) and the column's total.</summary>
internal sealed record HiddenNodes(int Publishers, int Topics, int Subscribers, int Callers, int Capabilities, int Providers);

internal sealed record ProvideEdge(string Agent, string Capability);

/// <summary>
/// Who publishes to which topics and who subscribes, who calls which capabilities and who provides
/// them, cut on the bridge to the busiest <c>Limit</c> nodes of each column; the rest of a column
/// is one "(N more …)" node whose edges carry the summed counts and rates (<c>Hidden</c> says how many).
/// </summary>
internal sealed record Topology(IReadOnlyList<RateEdge> Publishes, IReadOnlyList<SubscribeEdge> Subscribes, IReadOnlyList<RateEdge> Calls, IReadOnlyList<ProvideEdge> Provides, int Limit, HiddenNodes Hidden);

internal sealed record TopicSubscription(string Agent, string Pattern, string Qos, string Overflow, int Capacity, int Depth, long DroppedTotal, IReadOnlyDictionary<string, long> Dropped);

internal sealed record TopicView(string Topic, string Group, long Published, long Delivered, long NoSubscribers, long DroppedTotal, IReadOnlyDictionary<string, long> Dropped, IReadOnlyList<TopicSubscription> Subscriptions, int SubscriptionsTotal);

/// <summary>The busiest topics (by events published) matching the query, at most its limit; <c>Total</c> topics known, <c>Matched</c> by the query.</summary>
internal sealed record TopicList(IReadOnlyList<TopicView> Topics, bool Truncated, int Total, int Matched);

/// <summary>Agents matching a search, at most its limit; <c>Matched</c> of <c>Total</c>.</summary>
internal sealed record AgentList(IReadOnlyList<AgentRow> Agents, int Total, int Matched);

internal sealed record CapabilityCallStats(string Name, long Calls, long Errors, IReadOnlyDictionary<string, long> ErrorsByCode, double P50Ms, double P90Ms, double P99Ms);

internal sealed record CapabilityStatsList(IReadOnlyList<CapabilityCallStats> Capabilities);

internal sealed record EventList(IReadOnlyList<RecordedEvent> Events);

internal sealed record CallResult(bool Ok, JsonElement? Output, string? Code, string? Message, string? Provider, double DurationMs);

internal sealed record WhoAmI(bool Auth, string Level, string? Identity);

internal sealed record DashboardError(string Code, string Message);

[JsonSerializable(typeof(Overview))]
[JsonSerializable(typeof(AgentList))]
[JsonSerializable(typeof(HistoryList))]
[JsonSerializable(typeof(ThreadList))]
[JsonSerializable(typeof(ThreadDetail))]
[JsonSerializable(typeof(Topology))]
[JsonSerializable(typeof(TopicList))]
[JsonSerializable(typeof(CapabilityStatsList))]
[JsonSerializable(typeof(EventList))]
[JsonSerializable(typeof(RecordedEvent))]
[JsonSerializable(typeof(CallResult))]
[JsonSerializable(typeof(WhoAmI))]
[JsonSerializable(typeof(DashboardError))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class DashboardJsonContext : JsonSerializerContext;
