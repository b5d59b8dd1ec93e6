using System.Collections.Concurrent;
using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>
/// The default router. Round robin (per capability), least latency (lowest EWMA), lowest cost
/// (lowest cost_hint) and local only (in-process providers, round robin). Unhealthy candidates
/// are skipped; when none is healthy it returns null. Ties are broken round robin so that equal
/// providers share the load.
/// </summary>
public sealed class Router : IRouter
{
    private const int MaxCounters = 10_000;

    private readonly ConcurrentDictionary<string, StrongBox> _counters = new(StringComparer.Ordinal);

    /// <inheritdoc/>
    public ProviderCandidate? Select(string capability, IReadOnlyList<ProviderCandidate> candidates, RoutingPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(candidates);
        return policy switch
        {
            RoutingPolicy.LeastLatency => PickBest(capability, candidates, static c => c.LatencyEwmaMs),
            RoutingPolicy.LowestCost => PickBest(capability, candidates, static c => c.Descriptor.CostHint),
            RoutingPolicy.LocalOnly => PickRoundRobin(capability, candidates, localOnly: true),
            _ => PickRoundRobin(capability, candidates, localOnly: false),
        };
    }

    private ProviderCandidate? PickRoundRobin(string capability, IReadOnlyList<ProviderCandidate> candidates, bool localOnly)
    {
        var eligible = 0;
        for (var i = 0; i < candidates.Count; i++)
        {
            if (IsEligible(candidates[i], localOnly))
            {
                eligible++;
            }
        }

        if (eligible == 0)
        {
            return null;
        }

        var pick = Next(capability, eligible);
        for (var i = 0; i < candidates.Count; i++)
        {
            if (IsEligible(candidates[i], localOnly) && pick-- == 0)
            {
                return candidates[i];
            }
        }

        return null;
    }

    private ProviderCandidate? PickBest(string capability, IReadOnlyList<ProviderCandidate> candidates, Func<ProviderCandidate, double> score)
    {
        var best = double.PositiveInfinity;
        var tied = 0;
        for (var i = 0; i < candidates.Count; i++)
        {
            var c = candidates[i];
            if (!c.IsHealthy)
            {
                continue;
            }

            var s = Sanitize(score(c));
            if (s < best)
            {
                best = s;
                tied = 1;
            }
            else if (s == best)
            {
                tied++;
            }
        }

        if (tied == 0)
        {
            return null;
        }

        var pick = tied == 1 ? 0 : Next(capability, tied);
        for (var i = 0; i < candidates.Count; i++)
        {
            var c = candidates[i];
            if (c.IsHealthy && Sanitize(score(c)) == best && pick-- == 0)
            {
                return c;
            }
        }

        return null;
    }

    private static bool IsEligible(ProviderCandidate candidate, bool localOnly) =>
        candidate.IsHealthy && (!localOnly || candidate.Provider.IsLocal);

    // NaN or negative hints must not win: they sort as "unknown, expensive".
    private static double Sanitize(double value) => double.IsNaN(value) || value < 0 ? double.MaxValue : value;

    private int Next(string capability, int modulo)
    {
        if (!_counters.TryGetValue(capability, out var counter))
        {
            if (_counters.Count >= MaxCounters)
            {
                _counters.Clear(); // bounded: fairness restarts, nothing breaks
            }

            counter = _counters.GetOrAdd(capability, static _ => new StrongBox());
        }

        var value = Interlocked.Increment(ref counter.Value) - 1;
        return (int)((ulong)value % (ulong)modulo);
    }

    private sealed class StrongBox
    {
        public long Value;
    }
}
