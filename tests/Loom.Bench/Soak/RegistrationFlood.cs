using System.Diagnostics;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 4: every period, a burst of RegisterAgent calls, each with capabilities and never a
/// stream, left for the bridge to expire. Each burst uses fresh agent ids and capability names, so
/// the broker holds many capabilities and each expiry has its own to unregister.
/// </summary>
internal sealed class RegistrationFlood(Uri url, int perBurst, TimeSpan period, Tally tally) : IDisposable
{
    public const string Name = "flood";
    private const int CapabilitiesEach = 8;
    private const int Concurrency = 32;
    private static readonly TimeSpan CallBound = TimeSpan.FromSeconds(10);
    private readonly GrpcChannel _channel = GrpcChannel.ForAddress(url);
    private int _burst;
    private long _maxBurstTicks;

    /// <summary>The longest burst so far, in seconds: how long the bridge took to take (or refuse) it.</summary>
    public double MaxBurstSeconds => Interlocked.Read(ref _maxBurstTicks) / (double)Stopwatch.Frequency;

    public Task RunAsync(CancellationToken stop) => Pace.EveryAsync(period, BurstAsync, tally, Name, stop);

    private async Task BurstAsync(CancellationToken stop)
    {
        var client = new Protocol.V1.Bridge.BridgeClient(_channel);
        var burst = Interlocked.Increment(ref _burst);
        var started = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(Enumerable.Range(0, perBurst), new ParallelOptions { MaxDegreeOfParallelism = Concurrency, CancellationToken = stop }, async (i, token) =>
        {
            var request = new RegisterAgentRequest { AgentId = $"soak-flood-{burst}-{i}", Name = "soak-flood", Sdk = "loom-soak" };
            for (var c = 0; c < CapabilitiesEach; c++)
            {
                request.Capabilities.Add(new CapabilityDescriptor { Name = $"soak.flood.b{burst}.a{i}.c{c}", InputSchemaJson = "{}", OutputSchemaJson = "{}" });
            }

            try
            {
                await client.RegisterAgentAsync(request, new CallOptions(deadline: DateTime.UtcNow + CallBound, cancellationToken: token));
                tally.Add(Name + "/" + Outcome.Ok);
            }
            catch (RpcException ex) when (!token.IsCancellationRequested)
            {
                tally.Add(Name + "/" + Outcome.Of(ex));
            }
        });
        Atomic.Max(ref _maxBurstTicks, Stopwatch.GetTimestamp() - started);
    }

    public void Dispose() => _channel.Dispose();
}
