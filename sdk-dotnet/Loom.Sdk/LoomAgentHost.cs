using System.Text.Json;
using Loom.Core;
using Loom.Sdk.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Sdk;

/// <summary>
/// Runs an <see cref="Agent"/>: against a remote bridge over gRPC, or in-process against the core
/// (EventBus, ActionBroker, MemoryStore) with no network. The agent code is the same.
/// </summary>
public static class LoomAgentHost
{
    /// <summary>
    /// Connects the agent to the bridge at <c>LOOM_URL</c> (else <c>http://127.0.0.1:7070</c>), with
    /// the connection settings of the <c>LOOM_*</c> environment variables unless
    /// <see cref="AgentHostOptions.Connection"/> is given. See <see cref="StartAsync(Agent, Uri, AgentHostOptions?, CancellationToken)"/>.
    /// </summary>
    /// <exception cref="LoomException">UNAVAILABLE when the bridge cannot be reached; INVALID_PARAMS when a <c>LOOM_*</c> variable is malformed (the message names it) or the bridge rejects the registration.</exception>
    public static Task<RunningAgent> StartAsync(Agent agent, AgentHostOptions? options = null, CancellationToken cancellationToken = default) =>
        StartAsync(agent, LoomConnectionOptions.BridgeAddressFromEnvironment(), options, cancellationToken);

    /// <summary>
    /// Connects the agent to a bridge: registers its topics and capabilities (schemas generated from
    /// the [Capability] methods), opens the event stream, and keeps it connected (reconnecting with
    /// backoff). Dispose the result to leave.
    /// </summary>
    /// <exception cref="LoomException">UNAVAILABLE when the bridge cannot be reached; INVALID_PARAMS when it rejects the registration.</exception>
    /// <exception cref="InvalidOperationException">A [Capability] method has an unsupported signature.</exception>
    public static async Task<RunningAgent> StartAsync(Agent agent, Uri bridgeAddress, AgentHostOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(agent);
        ArgumentNullException.ThrowIfNull(bridgeAddress);
        options ??= new AgentHostOptions();
        var json = options.JsonOptions ?? JsonSerializerOptions.Web;
        AgentContext? context = null;
        var capabilities = CapabilityBinder.Bind(agent, json, () => context!);
        var connection = new LoomConnection(bridgeAddress, ConnectionOptions(agent, options), capabilities);
        context = new AgentContext(connection, options, json);
        try
        {
            // Before connecting these are only recorded: the first registration carries them all.
            foreach (var topic in agent.Topics.Distinct(StringComparer.Ordinal))
            {
                await connection.SubscribeAsync(topic, (e, ct) => agent.OnEventAsync(context, e, ct), agent.GetTopicOptions(topic), cancellationToken);
            }

            await connection.ConnectAsync(cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        return new RunningAgent(agent, context, connection, capabilities, connection.DisposeAsync);
    }

    /// <summary>
    /// Runs the agent in this process against the core: its topics subscribe on the bus, its
    /// capabilities register with the broker as a local provider, memory goes to the store. Pass
    /// a bridge's <c>Bus</c>, <c>Broker</c>, <c>Memory</c> and <c>Agents</c> to serve remote agents too.
    /// Dispose the result to stop.
    /// </summary>
    /// <exception cref="InvalidParamsException">A topic pattern or a capability descriptor is invalid.</exception>
    public static RunningAgent StartInProcess(Agent agent, EventBus bus, ActionBroker broker, MemoryStore memory, AgentHostOptions? options = null, AgentDirectory? directory = null)
    {
        ArgumentNullException.ThrowIfNull(agent);
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(broker);
        ArgumentNullException.ThrowIfNull(memory);
        options ??= new AgentHostOptions();
        var json = options.JsonOptions ?? JsonSerializerOptions.Web;
        var loggerFactory = options.LoggerFactory ?? options.Connection?.LoggerFactory;
        var logger = loggerFactory?.CreateLogger(typeof(LoomAgentHost).FullName!) ?? (ILogger)NullLogger.Instance;
        var time = options.TimeProvider ?? options.Connection?.TimeProvider ?? TimeProvider.System;
        var name = options.Name ?? agent.Name;
        var agentId = string.IsNullOrEmpty(options.AgentId) ? IdGenerator.NewAgentId(name) : options.AgentId;
        var ns = string.IsNullOrEmpty(options.Namespace) ? "default" : options.Namespace;

        AgentContext? context = null;
        var capabilities = CapabilityBinder.Bind(agent, json, () => context!);
        var transport = new InProcessTransport(agentId, ns, bus, broker, memory, directory, time, logger, options.StopTimeout);
        context = new AgentContext(transport, options, json);
        var topics = agent.Topics.Distinct(StringComparer.Ordinal).ToArray();
        foreach (var topic in topics)
        {
            Topics.ValidatePattern(topic);
        }

        transport.Start(capabilities, name, options.Metadata, topics.Select(t => (t, agent.GetTopicOptions(t))).ToArray(), (e, ct) => agent.OnEventAsync(context, e, ct));
        return new RunningAgent(agent, context, null, capabilities, transport.DisposeAsync);
    }

    private static LoomConnectionOptions ConnectionOptions(Agent agent, AgentHostOptions options)
    {
        var c = options.Connection ?? LoomConnectionOptions.FromEnvironment();
        return c with
        {
            AgentId = options.AgentId ?? c.AgentId,
            Name = options.Name ?? agent.Name,
            Namespace = string.IsNullOrEmpty(options.Namespace) ? c.Namespace : options.Namespace,
            Metadata = options.Metadata ?? c.Metadata,
            LoggerFactory = options.LoggerFactory ?? c.LoggerFactory,
            TimeProvider = options.TimeProvider ?? c.TimeProvider,
        };
    }
}
