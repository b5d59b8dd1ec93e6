using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>
/// Base class of a Loom agent. Override <see cref="Topics"/> and <see cref="OnEventAsync"/> to
/// handle events, and mark methods with <see cref="CapabilityAttribute"/> to answer calls. The same
/// class runs against a remote bridge (<see cref="LoomAgentHost.StartAsync(Agent, Uri, AgentHostOptions?, CancellationToken)"/>) or in-process against
/// the core (<see cref="LoomAgentHost.StartInProcess"/>).
/// </summary>
public abstract class Agent
{
    /// <summary>Display name (and the stem of a generated agent id). Default: the type name.</summary>
    public virtual string Name => GetType().Name;

    /// <summary>Patterns whose events go to <see cref="OnEventAsync"/>. Default none.</summary>
    public virtual IEnumerable<string> Topics => [];

    /// <summary>Queueing of one of <see cref="Topics"/>. Default null: NORMAL QoS and the class defaults.</summary>
    public virtual SubscribeOptions? GetTopicOptions(string pattern) => null;

    /// <summary>
    /// Handles one event of <see cref="Topics"/>. Events of one topic pattern arrive in order, one at
    /// a time; an exception is logged and the agent goes on. Reply to a request with
    /// <see cref="AgentContext.ReplyAsync(Envelope, ReadOnlyMemory{byte}, EmitOptions?, CancellationToken)"/>.
    /// </summary>
    public virtual Task OnEventAsync(AgentContext context, Envelope envelope, CancellationToken cancellationToken) => Task.CompletedTask;
}
