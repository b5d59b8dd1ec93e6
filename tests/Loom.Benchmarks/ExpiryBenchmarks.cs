using BenchmarkDotNet.Attributes;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Benchmarks;

/// <summary>A provider that answers nothing (only registered and unregistered here).</summary>
internal sealed class IdleProvider(string id) : ICapabilityProvider
{
    public string ProviderId => id;

    public string AgentId => id;

    public bool IsLocal => false;

    public ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken) =>
        ValueTask.FromResult<ReadOnlyMemory<byte>>("null"u8.ToArray());
}

/// <summary>
/// One agent leaving among N registered ones, each with a capability of its own: what a session
/// expiry costs the broker (it used to scan every capability name, so a flood expired in quadratic time).
/// </summary>
[MemoryDiagnoser]
public class UnregisterProviderBenchmarks
{
    private ActionBroker _broker = null!;
    private IdleProvider _leaving = null!;
    private CapabilityDescriptor _descriptor = null!;

    [Params(1_000, 10_000, 40_000)]
    public int Providers { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _broker = new ActionBroker();
        for (var i = 0; i < Providers; i++)
        {
            _broker.Register(new CapabilityDescriptor { Name = "own." + i }, new IdleProvider("p" + i));
        }

        _leaving = new IdleProvider("p" + (Providers / 2));
        _descriptor = new CapabilityDescriptor { Name = "own." + (Providers / 2) };
        _broker.Register(_descriptor, _leaving);
    }

    [Benchmark(Description = "unregister 1 provider among N, then register it again")]
    public void UnregisterOne()
    {
        _broker.UnregisterProvider(_leaving.ProviderId);
        _broker.Register(_descriptor, _leaving);
    }
}

/// <summary>
/// Every one of N agents expiring, each with a capability of its own and one that all share
/// (the shape of a registration flood): one at a time by provider id (what each session expiry
/// did), and in batches of 256 registrations' owners through <see cref="ActionBroker.UnregisterAll"/>
/// (what the bridge's sweep does now).
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1)]
public class ExpireAllBenchmarks
{
    private const int Batch = 256;
    private ActionBroker _broker = null!;
    private List<CapabilityRegistration>[] _byProvider = null!;

    [Params(2_000, 20_000)]
    public int Providers { get; set; }

    [IterationSetup]
    public void Setup()
    {
        _broker = new ActionBroker();
        _byProvider = new List<CapabilityRegistration>[Providers];
        var shared = new CapabilityDescriptor { Name = "shared" };
        for (var i = 0; i < Providers; i++)
        {
            var provider = new IdleProvider("p" + i);
            _byProvider[i] = [_broker.Register(new CapabilityDescriptor { Name = "own." + i }, provider), _broker.Register(shared, provider)];
        }
    }

    [Benchmark(Baseline = true, Description = "expire all N one at a time (UnregisterProvider)")]
    public void OneAtATime()
    {
        for (var i = 0; i < Providers; i++)
        {
            _broker.UnregisterProvider("p" + i);
        }
    }

    [Benchmark(Description = "expire all N in batches of 256 (UnregisterAll)")]
    public void InBatches()
    {
        for (var i = 0; i < Providers; i += Batch)
        {
            _broker.UnregisterAll(_byProvider.Skip(i).Take(Batch).SelectMany(r => r));
        }
    }
}
