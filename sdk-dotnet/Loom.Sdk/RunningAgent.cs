namespace Loom.Sdk;

/// <summary>An agent that is running, remotely or in-process. Dispose it to stop the agent (bounded, draining).</summary>
public sealed class RunningAgent : IAsyncDisposable
{
    private readonly Func<ValueTask> _stop;
    private int _stopped;

    internal RunningAgent(Agent agent, AgentContext context, LoomConnection? connection, IReadOnlyList<LoomCapability> capabilities, Func<ValueTask> stop)
    {
        Agent = agent;
        Context = context;
        Connection = connection;
        Capabilities = capabilities;
        _stop = stop;
    }

    /// <summary>The agent.</summary>
    public Agent Agent { get; }

    /// <summary>Its context (emit, request, invoke, subscribe, memory).</summary>
    public AgentContext Context { get; }

    /// <summary>Its id.</summary>
    public string AgentId => Context.AgentId;

    /// <summary>The bridge connection of a remote agent; null in-process.</summary>
    public LoomConnection? Connection { get; }

    /// <summary>True when it runs in-process against the core.</summary>
    public bool IsInProcess => Connection is null;

    /// <summary>The capabilities it provides, with their generated schemas.</summary>
    public IReadOnlyList<LoomCapability> Capabilities { get; }

    public ValueTask DisposeAsync() => Interlocked.Exchange(ref _stopped, 1) == 0 ? _stop() : ValueTask.CompletedTask;
}
