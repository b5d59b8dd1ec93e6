using System.Collections.Concurrent;
using Loom.Core;

namespace Loom.Bridge;

/// <summary>What a permission rule applies to.</summary>
public enum PermissionAction
{
    /// <summary>Publishing to a topic (topic patterns: <c>*</c> one token, <c>&gt;</c> the rest).</summary>
    Publish,

    /// <summary>Subscribing to a topic pattern (the requested pattern must be covered by an allowed one).</summary>
    Subscribe,

    /// <summary>Providing (registering) a capability (names: <c>*</c> matches any characters).</summary>
    Provide,

    /// <summary>Calling a capability.</summary>
    Call,

    /// <summary>Reading a memory namespace (get, list).</summary>
    MemoryRead,

    /// <summary>Writing a memory namespace (set, delete, compare-and-set).</summary>
    MemoryWrite,

    /// <summary>A collaboration operation: <c>gather</c>, <c>barrier</c> or <c>contract_net</c>.</summary>
    Collaboration,
}

/// <summary>
/// Lists of patterns, one per <see cref="PermissionAction"/>: topic patterns for publish and
/// subscribe, glob patterns (<c>*</c> any characters) for capabilities, memory namespaces and
/// collaboration operations.
/// </summary>
public sealed record PermissionGrants
{
    /// <summary>Topics it may publish to (publish).</summary>
    public IReadOnlyList<string> Publish { get; init; } = [];

    /// <summary>Topic patterns it may subscribe to (subscribe).</summary>
    public IReadOnlyList<string> Subscribe { get; init; } = [];

    /// <summary>Capabilities it may provide (provide).</summary>
    public IReadOnlyList<string> Provide { get; init; } = [];

    /// <summary>Capabilities it may call (call).</summary>
    public IReadOnlyList<string> Call { get; init; } = [];

    /// <summary>Memory namespaces it may read (memory_read).</summary>
    public IReadOnlyList<string> MemoryRead { get; init; } = [];

    /// <summary>Memory namespaces it may write (memory_write).</summary>
    public IReadOnlyList<string> MemoryWrite { get; init; } = [];

    /// <summary>Collaboration operations it may run: gather, barrier, contract_net (collaboration).</summary>
    public IReadOnlyList<string> Collaboration { get; init; } = [];

    /// <summary>The list of <paramref name="action"/>.</summary>
    public IReadOnlyList<string> For(PermissionAction action) => action switch
    {
        PermissionAction.Publish => Publish,
        PermissionAction.Subscribe => Subscribe,
        PermissionAction.Provide => Provide,
        PermissionAction.Call => Call,
        PermissionAction.MemoryRead => MemoryRead,
        PermissionAction.MemoryWrite => MemoryWrite,
        _ => Collaboration,
    };
}

/// <summary>The permissions of one identity in loom.yaml (<c>permissions: { NAME: { allow: ..., deny: ... } }</c>).</summary>
public sealed record IdentityPermissions
{
    /// <summary>What the identity may do.</summary>
    public PermissionGrants Allow { get; init; } = new();

    /// <summary>What it may not do, whatever else allows it (a deny beats every allow, a token's included).</summary>
    public PermissionGrants Deny { get; init; } = new();

    /// <summary>
    /// Its limits (loom.yaml <c>limits:</c>); a limit not set here is taken from the <c>'*'</c> entry's,
    /// and none there means no such limit (the bridge-wide ones, such as max_subscriptions_per_session, still apply).
    /// </summary>
    public IdentityLimits Limits { get; init; } = new();
}

/// <summary>
/// Limits of one identity (loom.yaml <c>permissions.NAME.limits</c>, or <c>permissions.'*'.limits</c> for
/// every identity). Null: no such limit. Going over one is RESOURCE_EXHAUSTED naming it. Rates are token
/// buckets (System.Threading.RateLimiting) shared by every session and call of the identity.
/// </summary>
public sealed record IdentityLimits
{
    /// <summary>Publishes per second (publishes_per_second), each envelope of a batched frame counted. Default null.</summary>
    public int? PublishesPerSecond { get; init; }

    /// <summary>Publishes allowed at once above the rate (publish_burst). Default null: the rate (one second's worth).</summary>
    public int? PublishBurst { get; init; }

    /// <summary>Capability calls per second (calls_per_second): stream calls, ForwardAction, Gather and ContractNet. Default null.</summary>
    public int? CallsPerSecond { get; init; }

    /// <summary>Calls allowed at once above the rate (call_burst). Default null: the rate.</summary>
    public int? CallBurst { get; init; }

    /// <summary>Subscriptions its session may hold (max_subscriptions). Default null.</summary>
    public int? MaxSubscriptions { get; init; }

    /// <summary>Capabilities it may provide (max_capabilities). Default null.</summary>
    public int? MaxCapabilities { get; init; }

    /// <summary>Bytes of memory entries it wrote that the store holds (max_memory_bytes; counted as memory.max_total_bytes counts them). Default null.</summary>
    public long? MaxMemoryBytes { get; init; }

    /// <summary>This entry's limits, each unset one taken from <paramref name="fallback"/>.</summary>
    public IdentityLimits Over(IdentityLimits fallback) => new()
    {
        PublishesPerSecond = PublishesPerSecond ?? fallback.PublishesPerSecond,
        PublishBurst = PublishBurst ?? fallback.PublishBurst,
        CallsPerSecond = CallsPerSecond ?? fallback.CallsPerSecond,
        CallBurst = CallBurst ?? fallback.CallBurst,
        MaxSubscriptions = MaxSubscriptions ?? fallback.MaxSubscriptions,
        MaxCapabilities = MaxCapabilities ?? fallback.MaxCapabilities,
        MaxMemoryBytes = MaxMemoryBytes ?? fallback.MaxMemoryBytes,
    };

    /// <summary>True when no limit is set.</summary>
    public bool IsEmpty => this == Empty;

    /// <summary>No limits.</summary>
    public static IdentityLimits Empty { get; } = new();
}

/// <summary>
/// The permissions of one caller, compiled once per session: loom.yaml's entries for its identity
/// (and for <c>*</c>, every identity) allow, its token's allow lists allow too (they are signed
/// with the bridge's key, like a NATS user JWT), and loom.yaml's deny lists beat both. Anything no
/// rule allows is refused. With auth off (or an anonymous caller under optional auth without an
/// <c>anonymous</c> entry) the policy is <see cref="Unrestricted"/>.
/// </summary>
public sealed class PermissionPolicy
{
    /// <summary>The key of loom.yaml's entry for every identity.</summary>
    public const string EveryIdentity = "*";

    /// <summary>The key of loom.yaml's entry for anonymous callers under optional auth.</summary>
    public const string Anonymous = "anonymous";

    private const int MaxCachedTopics = 1024;

    /// <summary>Where the bridge publishes audit events (<c>_loom.audit.{kind}</c>).</summary>
    public const string AuditTopic = "_loom.audit";

    /// <summary>The SDKs' reply inboxes: <c>_inbox.{agent id}.&gt;</c>.</summary>
    private const string InboxPrefix = "_inbox.";

    private static readonly string[] ActionNames = ["publish", "subscribe", "provide", "call", "memory_read", "memory_write", "collaboration"];

    private readonly (string Pattern, string Source)[][] _allow;
    private readonly (string Pattern, string Source)[][] _deny;
    private readonly ConcurrentDictionary<string, string?> _publishCache = new(StringComparer.Ordinal);
    private readonly bool _unrestricted;

    /// <summary>Everything allowed (auth off); reads audit events too (every caller is trusted).</summary>
    public static PermissionPolicy Unrestricted { get; } = new(null, unrestricted: true) { ReadsAudit = true };

    /// <summary>An anonymous caller under optional auth without an <c>anonymous</c> entry: everything allowed as before, except audit events.</summary>
    public static PermissionPolicy OpenAnonymous { get; } = new(null, unrestricted: true);

    /// <summary>A copy of <paramref name="other"/> that reads audit events.</summary>
    private PermissionPolicy(PermissionPolicy other)
    {
        Identity = other.Identity;
        _allow = other._allow;
        _deny = other._deny;
        _unrestricted = other._unrestricted;
        Limits = other.Limits;
        _ownLimits = other._ownLimits;
        ReadsAudit = true;
    }

    private PermissionPolicy(string? identity, bool unrestricted = false)
    {
        Identity = identity;
        _unrestricted = unrestricted;
        _allow = new (string, string)[ActionNames.Length][];
        _deny = new (string, string)[ActionNames.Length][];
        for (var i = 0; i < ActionNames.Length; i++)
        {
            _allow[i] = [];
            _deny[i] = [];
        }
    }

    /// <summary>The identity the policy is for (null: unrestricted or anonymous).</summary>
    public string? Identity { get; }

    /// <summary>True when every action is allowed (no checks).</summary>
    public bool IsUnrestricted => _unrestricted;

    /// <summary>
    /// Whether it may receive audit events (<c>_loom.audit.*</c>): auth off, an admin credential, or a
    /// subscribe allow that names <c>_loom.audit</c> explicitly (its first token is <c>_loom</c>, not a wildcard).
    /// Others are refused an explicit subscription, and a wildcard one (<c>&gt;</c>) never delivers them.
    /// </summary>
    public bool ReadsAudit { get; private init; }

    /// <summary>Its limits (its loom.yaml entry's over the <c>'*'</c> entry's) and where each comes from.</summary>
    public IdentityLimits Limits { get; private init; } = IdentityLimits.Empty;

    /// <summary>The loom.yaml entry a limit of <see cref="Limits"/> is read from, e.g. <c>permissions.alice.limits</c>.</summary>
    public string LimitSource(Func<IdentityLimits, object?> limit) =>
        _ownLimits is { } own && limit(own) is not null ? $"permissions.{Identity}.limits" : $"permissions.'{EveryIdentity}'.limits";

    private IdentityLimits? _ownLimits;

    /// <summary>The name of <paramref name="action"/> in loom.yaml and in the metric's label.</summary>
    public static string NameOf(PermissionAction action) => ActionNames[(int)action];

    /// <summary>
    /// The policy of a caller: <paramref name="identity"/> (null: anonymous) with its token's allow
    /// lists, under <paramref name="auth"/> and loom.yaml's <paramref name="permissions"/>.
    /// </summary>
    public static PermissionPolicy For(AuthMode auth, IReadOnlyDictionary<string, IdentityPermissions>? permissions, string? identity, IReadOnlyList<string>? tokenPublish = null, IReadOnlyList<string>? tokenSubscribe = null, bool admin = false)
    {
        if (auth == AuthMode.Off)
        {
            return Unrestricted;
        }

        var entries = new List<(IdentityPermissions Rules, string Source)>();
        if (identity is null)
        {
            if (permissions is null || !permissions.TryGetValue(Anonymous, out var anonymous))
            {
                return OpenAnonymous; // optional auth lets anonymous callers in as before
            }

            entries.Add((anonymous, $"permissions.{Anonymous}"));
        }
        else if (permissions is not null)
        {
            if (permissions.TryGetValue(EveryIdentity, out var every))
            {
                entries.Add((every, "permissions.'*'"));
            }

            if (permissions.TryGetValue(identity, out var own))
            {
                entries.Add((own, $"permissions.{identity}"));
            }
        }

        IdentityLimits? ownLimits = null;
        var everyLimits = IdentityLimits.Empty;
        foreach (var (rules, source) in entries)
        {
            if (source == "permissions.'*'")
            {
                everyLimits = rules.Limits;
            }
            else
            {
                ownLimits = rules.Limits;
            }
        }

        var policy = new PermissionPolicy(identity ?? Anonymous) { Limits = (ownLimits ?? IdentityLimits.Empty).Over(everyLimits), _ownLimits = ownLimits };
        for (var i = 0; i < ActionNames.Length; i++)
        {
            var action = (PermissionAction)i;
            var allow = new List<(string, string)>();
            var deny = new List<(string, string)>();
            foreach (var (rules, source) in entries)
            {
                allow.AddRange(rules.Allow.For(action).Select(p => (p, $"{source}.allow.{ActionNames[i]} '{p}'")));
                deny.AddRange(rules.Deny.For(action).Select(p => (p, $"{source}.deny.{ActionNames[i]} '{p}'")));
            }

            var token = action switch
            {
                PermissionAction.Publish => tokenPublish,
                PermissionAction.Subscribe => tokenSubscribe,
                _ => null,
            };
            if (token is not null)
            {
                allow.AddRange(token.Select(p => (p, $"the token's allow-{ActionNames[i]} '{p}'")));
            }

            policy._allow[i] = [.. allow];
            policy._deny[i] = [.. deny];
        }

        var audit = AuditTopic + ".>";
        var explicitGrant = policy._allow[(int)PermissionAction.Subscribe].Any(a => a.Pattern.StartsWith("_loom.", StringComparison.Ordinal) && Overlaps(a.Pattern, audit));
        var denied = policy._deny[(int)PermissionAction.Subscribe].Any(d => Overlaps(d.Pattern, audit) && Covers(d.Pattern, audit));
        return (admin || explicitGrant) && !denied ? new PermissionPolicy(policy) : policy;
    }

    /// <summary>
    /// Null when <paramref name="action"/> on <paramref name="target"/> is allowed; otherwise the
    /// PERMISSION_DENIED to answer, naming the identity, the action and the rule.
    /// </summary>
    public PermissionDeniedException? Check(PermissionAction action, string target)
    {
        if (action == PermissionAction.Publish && target.Length > 0 && target[0] == '_' && (target == AuditTopic || target.StartsWith(AuditTopic + ".", StringComparison.Ordinal)))
        {
            return new PermissionDeniedException($"{Who} may not publish to '{target}': audit topics are written by the bridge only.");
        }

        if (action == PermissionAction.Subscribe && !ReadsAudit && target.StartsWith("_loom.", StringComparison.Ordinal) && Overlaps(target, AuditTopic + ".>"))
        {
            return new PermissionDeniedException($"{Who} may not subscribe to '{target}': audit events are for admin credentials (loom token create --admin, admin_identities) and identities granted '{AuditTopic}.>' in loom.yaml (permissions.NAME.allow.subscribe).");
        }

        if (IsUnrestricted)
        {
            return null;
        }

        if (action == PermissionAction.Subscribe)
        {
            return CheckSubscribe(target);
        }

        if (action == PermissionAction.Publish)
        {
            // The hot path: one dictionary lookup per topic already seen (bounded).
            if (_publishCache.TryGetValue(target, out var cached))
            {
                return cached is null ? null : new PermissionDeniedException(cached);
            }

            var why = Decide(action, target);
            if (_publishCache.Count < MaxCachedTopics)
            {
                _publishCache[target] = why;
            }

            return why is null ? null : new PermissionDeniedException(why);
        }

        return Decide(action, target) is { } reason ? new PermissionDeniedException(reason) : null;
    }

    private string? Decide(PermissionAction action, string target)
    {
        var i = (int)action;
        foreach (var (pattern, source) in _deny[i])
        {
            if (Matches(action, pattern, target))
            {
                return Refusal(action, target, $"denied by {source}");
            }
        }

        // Replies: to a gather's own reply topic, or to the asker's inbox (request/reply). Every agent may answer one.
        if (action == PermissionAction.Publish
            && (target.StartsWith(Loom.Core.Collaboration.Coordinator.ReplyPrefix, StringComparison.Ordinal) || target.StartsWith(InboxPrefix, StringComparison.Ordinal)))
        {
            return null;
        }

        foreach (var (pattern, _) in _allow[i])
        {
            if (Matches(action, pattern, target))
            {
                return null;
            }
        }

        return Refusal(action, target, "no rule allows it");
    }

    private string Who => Identity is null ? "An anonymous caller" : $"Identity '{Identity}'";

    private string Refusal(PermissionAction action, string target, string rule) =>
        $"Identity '{Identity}' may not {Verb(action)} '{target}': {rule}. Grant it in loom.yaml (permissions.{Identity}.allow.{ActionNames[(int)action]}) or in the token (loom token create --allow-publish/--allow-subscribe).";

    private static string Verb(PermissionAction action) => action switch
    {
        PermissionAction.Publish => "publish to",
        PermissionAction.Subscribe => "subscribe to",
        PermissionAction.Provide => "provide capability",
        PermissionAction.Call => "call capability",
        PermissionAction.MemoryRead => "read memory namespace",
        PermissionAction.MemoryWrite => "write memory namespace",
        _ => "run collaboration operation",
    };

    private static bool Matches(PermissionAction action, string pattern, string target) => action switch
    {
        PermissionAction.Publish => Topics.Matches(pattern, target),
        _ => Glob(pattern, target),
    };

    /// <summary>
    /// Whether every topic <paramref name="requested"/> matches is matched by <paramref name="granted"/>
    /// (a deny applies when the two overlap at all: see <see cref="Overlaps"/>).
    /// </summary>
    internal static bool Covers(string granted, string requested)
    {
        var g = granted.Split('.');
        var r = requested.Split('.');
        for (var i = 0; i < g.Length; i++)
        {
            if (g[i] == ">")
            {
                return i < r.Length;
            }

            if (i >= r.Length)
            {
                return false;
            }

            if (g[i] == "*")
            {
                if (r[i] == ">")
                {
                    return false;
                }

                continue;
            }

            if (g[i] != r[i])
            {
                return false;
            }
        }

        return g.Length == r.Length;
    }

    /// <summary>Whether some topic matches both patterns.</summary>
    internal static bool Overlaps(string a, string b)
    {
        var x = a.Split('.');
        var y = b.Split('.');
        for (var i = 0; ; i++)
        {
            if (i < x.Length && x[i] == ">")
            {
                return i < y.Length;
            }

            if (i < y.Length && y[i] == ">")
            {
                return i < x.Length;
            }

            if (i >= x.Length || i >= y.Length)
            {
                return x.Length == y.Length;
            }

            if (x[i] != "*" && y[i] != "*" && x[i] != y[i])
            {
                return false;
            }
        }
    }

    /// <summary>A subscription is denied when a deny pattern overlaps it (it could deliver a denied topic).</summary>
    private PermissionDeniedException? CheckSubscribe(string pattern)
    {
        var i = (int)PermissionAction.Subscribe;
        foreach (var (deny, source) in _deny[i])
        {
            if (Overlaps(deny, pattern))
            {
                return new PermissionDeniedException(Refusal(PermissionAction.Subscribe, pattern, $"denied by {source}"));
            }
        }

        // Audit events, for the identities that read them (see ReadsAudit).
        if (ReadsAudit && Covers(AuditTopic + ".>", pattern))
        {
            return null;
        }

        // Its own inbox, where the replies to its requests arrive.
        if (Identity is not null && Covers(InboxPrefix + Identity + ".>", pattern))
        {
            return null;
        }

        foreach (var (allow, _) in _allow[i])
        {
            if (Covers(allow, pattern))
            {
                return null;
            }
        }

        return new PermissionDeniedException(Refusal(PermissionAction.Subscribe, pattern, "no rule allows it"));
    }

    /// <summary><c>*</c> matches any run of characters; everything else matches itself.</summary>
    internal static bool Glob(string pattern, string text)
    {
        if (pattern == "*")
        {
            return true;
        }

        var star = pattern.IndexOf('*', StringComparison.Ordinal);
        if (star < 0)
        {
            return string.Equals(pattern, text, StringComparison.Ordinal);
        }

        var parts = pattern.Split('*');
        var at = 0;
        for (var i = 0; i < parts.Length; i++)
        {
            var part = parts[i];
            if (i == 0)
            {
                if (!text.StartsWith(part, StringComparison.Ordinal))
                {
                    return false;
                }

                at = part.Length;
            }
            else if (i == parts.Length - 1)
            {
                return text.Length - at >= part.Length && text.EndsWith(part, StringComparison.Ordinal);
            }
            else
            {
                var found = text.IndexOf(part, at, StringComparison.Ordinal);
                if (found < 0)
                {
                    return false;
                }

                at = found + part.Length;
            }
        }

        return true;
    }
}
