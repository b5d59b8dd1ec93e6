using System.Text.Json;
using System.Text.Json.Serialization;
using Loom.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Bridge.Internal;

/// <summary>
/// Read-only JSON views of a running bridge on its HTTP/1.1 port, for <c>loom list</c>, the
/// dashboard and tests: <c>GET /v1/agents</c> and <c>GET /v1/capabilities</c>. No payloads, no
/// metadata values beyond what the agent registered, no session secrets beyond the id.
/// </summary>
internal static class AdminApi
{
    // Readable JSON for people and scripts: '>' and quotes as they are, not \u003E.
    private static readonly JsonSerializerOptions Json = new(AdminJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Map(IEndpointRouteBuilder app, AgentDirectory agents, ActionBroker broker, Func<SessionRegistry?> sessions, TimeProvider time)
    {
        app.MapGet("/v1/agents", () => Results.Json(ListAgents(agents, sessions(), time), Json));
        app.MapGet("/v1/capabilities", () => Results.Json(ListCapabilities(broker), Json));
    }

    internal static AgentList ListAgents(AgentDirectory agents, SessionRegistry? sessions, TimeProvider time)
    {
        var list = new List<AgentView>();
        foreach (var agent in agents.All().OrderBy(a => a.AgentId, StringComparer.Ordinal))
        {
            AgentSession? session = null;
            var known = sessions is not null && sessions.TryGetByAgent(agent.AgentId, out session);
            list.Add(new AgentView(
                agent.AgentId,
                agent.Name,
                agent.Namespace,
                agent.Sdk,
                agent.SessionId,
                !known ? "in-process" : session!.HasStream ? "connected" : "detached",
                agent.ConnectedAt,
                known ? (long)session!.SinceLastSeen.TotalMilliseconds : 0,
                agent.Topics,
                agent.Capabilities,
                agent.Metadata));
        }

        return new AgentList(list, time.GetUtcNow());
    }

    internal static CapabilityList ListCapabilities(ActionBroker broker) =>
        new(broker.Capabilities.Select(c => new CapabilityView(
            c.Name,
            c.Version,
            c.Descriptor.Description,
            c.Descriptor.Tags,
            Schema(c.Descriptor.InputSchemaJson),
            Schema(c.Descriptor.OutputSchemaJson),
            c.Providers.Select(p => new ProviderView(p.Provider.AgentId, p.Provider.IsLocal, p.IsHealthy, p.InFlight, p.Calls, p.Failures, Math.Round(p.LatencyEwmaMs, 3))).ToList())).ToList());

    // Schemas were validated at registration; an empty one means "accepts anything".
    private static JsonElement Schema(string json)
    {
        using var document = JsonDocument.Parse(string.IsNullOrEmpty(json) ? "{}" : json);
        return document.RootElement.Clone();
    }
}

internal sealed record AgentList(IReadOnlyList<AgentView> Agents, DateTimeOffset Now);

internal sealed record AgentView(
    string AgentId,
    string Name,
    string Namespace,
    string Sdk,
    string SessionId,
    string State,
    DateTimeOffset ConnectedAt,
    long LastSeenMs,
    IReadOnlyList<string> Topics,
    IReadOnlyList<string> Capabilities,
    IReadOnlyDictionary<string, string> Metadata);

internal sealed record CapabilityList(IReadOnlyList<CapabilityView> Capabilities);

internal sealed record CapabilityView(
    string Name,
    string Version,
    string Description,
    IReadOnlyList<string> Tags,
    JsonElement InputSchema,
    JsonElement OutputSchema,
    IReadOnlyList<ProviderView> Providers);

internal sealed record ProviderView(string AgentId, bool Local, bool Healthy, int InFlight, long Calls, long Failures, double LatencyEwmaMs);

[JsonSerializable(typeof(AgentList))]
[JsonSerializable(typeof(CapabilityList))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
internal sealed partial class AdminJsonContext : JsonSerializerContext;
