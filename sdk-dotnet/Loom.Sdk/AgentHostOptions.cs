using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk;

/// <summary>Settings of a running agent, remote or in-process. Every value has a working default; a record (<c>with { ... }</c>).</summary>
public sealed record AgentHostOptions
{
    /// <summary>Stable agent id. Default null: the agent's name plus a random suffix, fixed for the life of the host.</summary>
    public string? AgentId { get; init; }

    /// <summary>Display name. Default null: <see cref="Agent.Name"/>.</summary>
    public string? Name { get; init; }

    /// <summary>Namespace (the default memory namespace). Default empty: <c>default</c>.</summary>
    public string Namespace { get; init; } = "";

    /// <summary>Metadata registered with the agent. Default none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Timeout of <see cref="AgentContext.InvokeAsync{TOut}"/> when none is given. Default 30 s.</summary>
    public TimeSpan DefaultInvokeTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Timeout of <see cref="AgentContext.RequestAsync{TReply}"/> when none is given. Default 10 s.</summary>
    public TimeSpan DefaultRequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>JSON settings for payloads, capability inputs and outputs, and schemas. Default <see cref="JsonSerializerOptions.Web"/>.</summary>
    public JsonSerializerOptions? JsonOptions { get; init; }

    /// <summary>
    /// Connection settings for a remote agent (reconnect backoff, heartbeats, queues). Its identity
    /// fields are replaced by the ones above when those are set. Default:
    /// <see cref="LoomConnectionOptions.FromEnvironment()"/>, the defaults with the <c>LOOM_*</c>
    /// environment variables applied (<c>LOOM_AGENT_ID</c>, <c>LOOM_NAMESPACE</c>, <c>LOOM_HEARTBEAT_MS</c>, ...).
    /// </summary>
    public LoomConnectionOptions? Connection { get; init; }

    /// <summary>Bound of stopping an in-process agent (handlers finish what is queued). Default 5 s.</summary>
    public TimeSpan StopTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Logging. Default: the connection's, else none.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Clock. Default: the connection's, else <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider? TimeProvider { get; init; }
}
