using System.Collections.Concurrent;

namespace Loom.Core;

/// <summary>What the bridge knows about a connected agent.</summary>
/// <param name="AgentId">Stable agent id.</param>
/// <param name="Name">Display name.</param>
/// <param name="Namespace">Namespace (memory, isolation).</param>
/// <param name="SessionId">Current session.</param>
/// <param name="Topics">Subscription patterns the agent holds.</param>
/// <param name="Capabilities">Capability names the agent provides.</param>
/// <param name="Metadata">Free-form metadata from registration.</param>
/// <param name="ConnectedAt">When the session started.</param>
/// <param name="Sdk">SDK name and version, e.g. "loom-python/0.1.0".</param>
public sealed record AgentInfo(
    string AgentId,
    string Name,
    string Namespace,
    string SessionId,
    IReadOnlyList<string> Topics,
    IReadOnlyList<string> Capabilities,
    IReadOnlyDictionary<string, string> Metadata,
    DateTimeOffset ConnectedAt,
    string Sdk);

/// <summary>The agents currently known, searchable by topic and capability. Thread-safe.</summary>
public sealed class AgentDirectory
{
    private readonly ConcurrentDictionary<string, AgentInfo> _agents = new(StringComparer.Ordinal);

    /// <summary>Number of agents.</summary>
    public int Count => _agents.Count;

    /// <summary>Adds an agent or replaces the entry with the same id.</summary>
    public void Upsert(AgentInfo agent)
    {
        ArgumentNullException.ThrowIfNull(agent);
        if (string.IsNullOrEmpty(agent.AgentId))
        {
            throw new InvalidParamsException("The agent has no id.", "/agent_id");
        }

        _agents[agent.AgentId] = agent;
    }

    /// <summary>
    /// Called after an agent was removed (on the removing thread), for the bridge's dashboard, which
    /// lists agents that left even when they lived shorter than its sampling interval. Must be quick
    /// and never throw. Null (the default) costs nothing.
    /// </summary>
    public Action<AgentInfo>? Removed { get; set; }

    /// <summary>Removes an agent; false when it was not known.</summary>
    public bool Remove(string agentId)
    {
        ArgumentNullException.ThrowIfNull(agentId);
        if (!_agents.TryRemove(agentId, out var removed))
        {
            return false;
        }

        Removed?.Invoke(removed);
        return true;
    }

    /// <summary>The agent with this id, or null.</summary>
    public AgentInfo? Find(string agentId)
    {
        ArgumentNullException.ThrowIfNull(agentId);
        return _agents.TryGetValue(agentId, out var agent) ? agent : null;
    }

    /// <summary>All agents, ordered by id.</summary>
    public IReadOnlyList<AgentInfo> All() => Collect(static _ => true);

    /// <summary>Agents holding a subscription pattern that matches <paramref name="topic"/>, ordered by id.</summary>
    public IReadOnlyList<AgentInfo> FindByTopic(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        return Collect(agent =>
        {
            foreach (var pattern in agent.Topics)
            {
                if (Core.Topics.Matches(pattern, topic))
                {
                    return true;
                }
            }

            return false;
        });
    }

    /// <summary>Agents that provide <paramref name="capability"/>, ordered by id.</summary>
    public IReadOnlyList<AgentInfo> FindByCapability(string capability)
    {
        ArgumentNullException.ThrowIfNull(capability);
        return Collect(agent =>
        {
            foreach (var name in agent.Capabilities)
            {
                if (string.Equals(name, capability, StringComparison.Ordinal))
                {
                    return true;
                }
            }

            return false;
        });
    }

    private List<AgentInfo> Collect(Func<AgentInfo, bool> predicate)
    {
        var result = new List<AgentInfo>();
        foreach (var agent in _agents.Values)
        {
            if (predicate(agent))
            {
                result.Add(agent);
            }
        }

        result.Sort(static (a, b) => string.CompareOrdinal(a.AgentId, b.AgentId));
        return result;
    }
}
