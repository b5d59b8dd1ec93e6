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
/// metadata values beyond what the agent registered, and session ids only for an admin credential.
/// </summary>
internal static class AdminApi
{
    // Readable JSON for people and scripts: '>' and quotes as they are, not \u003E.
    private static readonly JsonSerializerOptions Json = new(AdminJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Maps the views; with auth on they need a read-only or admin credential (<see cref="AdminAccess"/>).
    /// Session ids are shown to an admin credential only (empty otherwise, and always with auth off):
    /// with one, a caller could act through another agent's session.
    /// </summary>
    public static void Map(IEndpointRouteBuilder app, AgentDirectory agents, ActionBroker broker, Func<SessionRegistry?> sessions, TimeProvider time, BridgeOptions options)
    {
        var group = app.MapGroup("/v1");
        group.MapGet("/agents", (HttpContext context) => Results.Json(ListAgents(agents, sessions(), time, AdminAccess.Of(context, options) == AdminAccess.Level.Admin), Json));
        group.MapGet("/capabilities", () => Results.Json(ListCapabilities(broker), Json));
        if (options.Auth != AuthMode.Off)
        {
            group.RequireAuthorization(AdminAccess.ReadPolicy);
        }
    }

    internal static AgentList ListAgents(AgentDirectory agents, SessionRegistry? sessions, TimeProvider time, bool showSessions = false)
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
                showSessions ? agent.SessionId : "",
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
