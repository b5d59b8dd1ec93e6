using System.Collections.Concurrent;
using System.Threading.RateLimiting;
using Loom.Core;

namespace Loom.Bridge.Internal;

/// <summary>
/// The live state of the per-identity limits (<see cref="IdentityLimits"/>): one set of token buckets
/// and one memory budget per identity, shared by all its sessions and calls (anonymous callers under
/// optional auth share the <c>anonymous</c> entry's). Made at the identity's first call, kept for the
/// bridge's life (identities are bounded by the credentials the operator issued).
/// </summary>
internal sealed class IdentityQuotas : IDisposable
{
    private readonly ConcurrentDictionary<string, Quota> _byIdentity = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    /// <summary>The quota of <paramref name="policy"/>'s identity; null when it has no limits (or auth is off).</summary>
    public Quota? For(PermissionPolicy policy)
    {
        if (policy.Identity is not { } identity || policy.Limits.IsEmpty)
        {
            return null;
        }

        if (_byIdentity.TryGetValue(identity, out var quota))
        {
            return quota;
        }

        lock (_gate)
        {
            return _byIdentity.TryGetValue(identity, out quota) ? quota : _byIdentity[identity] = new Quota(policy);
        }
    }

    public void Dispose()
    {
        foreach (var quota in _byIdentity.Values)
        {
            quota.Dispose();
        }
    }

    /// <summary>One identity's buckets and memory budget.</summary>
    internal sealed class Quota : IDisposable
    {
        private readonly TokenBucketRateLimiter? _publishes;
        private readonly TokenBucketRateLimiter? _calls;

        public Quota(PermissionPolicy policy)
        {
            Identity = policy.Identity!;
            var limits = policy.Limits;
            Limits = limits;
            _publishes = Bucket(limits.PublishesPerSecond, limits.PublishBurst);
            _calls = Bucket(limits.CallsPerSecond, limits.CallBurst);
            PublishSource = policy.LimitSource(l => l.PublishesPerSecond);
            CallSource = policy.LimitSource(l => l.CallsPerSecond);
            SubscriptionSource = policy.LimitSource(l => l.MaxSubscriptions);
            CapabilitySource = policy.LimitSource(l => l.MaxCapabilities);
            if (limits.MaxMemoryBytes is { } bytes)
            {
                Memory = new MemoryQuota(Identity, bytes, policy.LimitSource(l => l.MaxMemoryBytes) + ".max_memory_bytes");
            }
        }

        public string Identity { get; }

        public IdentityLimits Limits { get; }

        public MemoryQuota? Memory { get; }

        public string PublishSource { get; }

        public string CallSource { get; }

        public string SubscriptionSource { get; }

        public string CapabilitySource { get; }

        /// <summary>Null when a publish to <paramref name="topic"/> is within the rate; otherwise the refusal.</summary>
        public ResourceExhaustedException? Publish(string envelopeId, string topic) =>
            Take(_publishes)
                ? null
                : new ResourceExhaustedException($"Identity '{Identity}' is over its limit of {Limits.PublishesPerSecond} publishes per second ({PublishSource}.publishes_per_second, burst {PublishBurstInForce}): envelope '{envelopeId}' on '{topic}' was not published. Publish slower, or raise the limit.");

        /// <summary>Null when a call of <paramref name="capability"/> is within the rate; otherwise the refusal.</summary>
        public ResourceExhaustedException? Call(string capability) =>
            Take(_calls)
                ? null
                : new ResourceExhaustedException($"Identity '{Identity}' is over its limit of {Limits.CallsPerSecond} calls per second ({CallSource}.calls_per_second, burst {CallBurstInForce}): the call of '{capability}' was not made. Call slower, or raise the limit.");

        private int PublishBurstInForce => Math.Max(1, Limits.PublishBurst ?? Limits.PublishesPerSecond ?? 1);

        private int CallBurstInForce => Math.Max(1, Limits.CallBurst ?? Limits.CallsPerSecond ?? 1);

        private static bool Take(TokenBucketRateLimiter? bucket)
        {
            if (bucket is null)
            {
                return true;
            }

            using var lease = bucket.AttemptAcquire(1);
            return lease.IsAcquired;
        }

        /// <summary>
        /// A bucket of <paramref name="burst"/> tokens (default: one second's worth) refilled at
        /// <paramref name="rate"/> per second, in steps of at least 1/20 s so that a rate is exact.
        /// </summary>
        private static TokenBucketRateLimiter? Bucket(int? rate, int? burst)
        {
            if (rate is not { } perSecond || perSecond <= 0)
            {
                return null;
            }

            var perPeriod = Math.Max(1, (int)Math.Ceiling(perSecond / 20.0));
            return new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
            {
                TokenLimit = Math.Max(Math.Max(1, burst ?? perSecond), perPeriod),
                TokensPerPeriod = perPeriod,
                ReplenishmentPeriod = TimeSpan.FromSeconds((double)perPeriod / perSecond),
                AutoReplenishment = true,
                QueueLimit = 0,
            });
        }

        public void Dispose()
        {
            _publishes?.Dispose();
            _calls?.Dispose();
        }
    }
}
