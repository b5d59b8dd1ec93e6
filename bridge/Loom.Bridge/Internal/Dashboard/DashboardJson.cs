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

internal sealed record FeedStats(int Clients, long ClientsDropped, long SampledOut, long ClientEventsSkipped);

internal sealed record Overview(
    IReadOnlyList<AgentRow> Agents,
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

internal sealed record SubscribeEdge(string Agent, string Pattern, int Depth);

internal sealed record ProvideEdge(string Agent, string Capability);

internal sealed record Topology(IReadOnlyList<RateEdge> Publishes, IReadOnlyList<SubscribeEdge> Subscribes, IReadOnlyList<RateEdge> Calls, IReadOnlyList<ProvideEdge> Provides);

internal sealed record TopicSubscription(string Agent, string Pattern, string Qos, string Overflow, int Capacity, int Depth, long DroppedTotal, IReadOnlyDictionary<string, long> Dropped);

internal sealed record TopicView(string Topic, string Group, long Published, long Delivered, long NoSubscribers, long DroppedTotal, IReadOnlyDictionary<string, long> Dropped, IReadOnlyList<TopicSubscription> Subscriptions);

internal sealed record TopicList(IReadOnlyList<TopicView> Topics, bool Truncated);

internal sealed record CapabilityCallStats(string Name, long Calls, long Errors, IReadOnlyDictionary<string, long> ErrorsByCode, double P50Ms, double P90Ms, double P99Ms);

internal sealed record CapabilityStatsList(IReadOnlyList<CapabilityCallStats> Capabilities);

internal sealed record EventList(IReadOnlyList<RecordedEvent> Events);

internal sealed record CallResult(bool Ok, JsonElement? Output, string? Code, string? Message, string? Provider, double DurationMs);

internal sealed record WhoAmI(bool Auth, string Level, string? Identity);

internal sealed record DashboardError(string Code, string Message);

[JsonSerializable(typeof(Overview))]
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
