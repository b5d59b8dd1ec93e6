using Loom.Sdk;

namespace Loom.Bench.Soak;

/// <summary>
/// Healthy agents that provide soak.sink, the capability the oversized forward targets: several
/// providers, as in the issue, so one oversized call can reach each of them in turn.
/// </summary>
internal sealed class SinkProviders : IAsyncDisposable
{
    public const string Capability = "soak.sink";
    private readonly List<RunningAgent> _agents;

    private SinkProviders(List<RunningAgent> agents) => _agents = agents;

    public long Reconnects => _agents.Sum(a => a.Connection?.Statistics.Reconnects ?? 0);

    public static async Task<SinkProviders> StartAsync(Uri url, int count, CancellationToken cancellationToken)
    {
        var agents = new List<RunningAgent>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                agents.Add(await LoomAgentHost.StartAsync(new SinkAgent(), url, new AgentHostOptions { AgentId = $"soak-sink-{i}" }, cancellationToken));
            }
        }
        catch
        {
            await new SinkProviders(agents).DisposeAsync();
            throw;
        }

        return new SinkProviders(agents);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var agent in _agents)
        {
            await agent.DisposeAsync();
        }
    }
}

public sealed record SinkInput(string Blob);

public sealed record SinkOutput(int Length);

internal sealed class SinkAgent : Agent
{
    public override string Name => "soak-sink";

    [Capability(SinkProviders.Capability, Description = "Takes a blob and returns its length.")]
    public static SinkOutput Sink(SinkInput input) => new(input.Blob.Length);
}
