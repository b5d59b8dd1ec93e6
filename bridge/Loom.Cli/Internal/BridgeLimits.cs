using System.Globalization;
using Loom.Bridge;

namespace Loom.Cli.Internal;

/// <summary>How a limit's value is written.</summary>
internal enum LimitUnit
{
    /// <summary>A whole number.</summary>
    Count,

    /// <summary>Bytes: a whole number, or one with KiB, MiB, GiB or TiB (e.g. 64MiB).</summary>
    Bytes,

    /// <summary>A whole number of milliseconds.</summary>
    Milliseconds,
}

/// <summary>
/// One bridge limit settable in loom.yaml (<see cref="Key"/> in the <c>bridge:</c> section; a key
/// <c>memory.x</c> is <c>x</c> in its <c>memory:</c> mapping) and as a <c>loom up</c> flag
/// (<see cref="Flag"/>).
/// </summary>
internal sealed record BridgeLimit(string Key, LimitUnit Unit, long Min, long Max, string Help, Func<BridgeOptions, long, BridgeOptions> Apply)
{
    /// <summary>The <c>loom up</c> flag: the key with '-' for '_' and '.', e.g. <c>--memory-max-total-bytes</c>.</summary>
    public string Flag => "--" + Key.Replace('.', '-').Replace('_', '-');

    /// <summary>The form of a value, e.g. "a whole number from 0 to 1000000".</summary>
    public string Expected => Unit switch
    {
        LimitUnit.Bytes => $"a byte size from {BridgeLimits.FormatBytes(Min)} to {BridgeLimits.FormatBytes(Max)} (a whole number of bytes, or with KiB, MiB, GiB or TiB, e.g. 64MiB)",
        LimitUnit.Milliseconds => $"a whole number of milliseconds from {Min} to {Max}",
        _ => $"a whole number from {Min} to {Max}",
    };

    /// <summary>Parses a value; false with the problem (what is expected, and what was given) otherwise.</summary>
    public bool TryParse(string? text, out long value, out string problem)
    {
        var trimmed = text?.Trim() ?? "";
        var ok = Unit == LimitUnit.Bytes ? BridgeLimits.TryParseBytes(trimmed, out value) : long.TryParse(trimmed, NumberStyles.None, CultureInfo.InvariantCulture, out value);
        if (ok && value >= Min && value <= Max)
        {
            problem = "";
            return true;
        }

        problem = $"expected {Expected}, got '{text}'";
        return false;
    }
}

/// <summary>The bridge limits a project file and <c>loom up</c> can set, and how they map onto <see cref="BridgeOptions"/>.</summary>
internal static class BridgeLimits
{
    private const long KiB = 1024;
    private const long MiB = 1024 * KiB;
    private const long GiB = 1024 * MiB;
    private const long TiB = 1024 * GiB;

    /// <summary>Every limit, in the order of docs/operations.md.</summary>
    public static IReadOnlyList<BridgeLimit> All { get; } =
    [
        new("max_connections", LimitUnit.Count, 0, 1_000_000, "Most TCP connections open at once on both ports; 0 derives it from the machine's memory.", (o, v) => o with { MaxConnections = (int)v }),
        new("max_connections_per_address", LimitUnit.Count, 0, 1_000_000, "Most TCP connections open at once from one remote address; 0 for no limit.", (o, v) => o with { MaxConnectionsPerAddress = (int)v }),
        new("handshake_timeout_ms", LimitUnit.Milliseconds, 1, 3_600_000, "A connection that sends nothing for this long after it opens is closed.", (o, v) => o with { HandshakeTimeout = TimeSpan.FromMilliseconds(v) }),
        new("max_sessions", LimitUnit.Count, 0, 1_000_000, "Most agent sessions at once; 0 derives it from the machine's memory.", (o, v) => o with { MaxSessions = (int)v }),
        new("max_subscriptions_per_session", LimitUnit.Count, 1, 65_536, "Subscriptions one agent session may hold.", (o, v) => o with { MaxSubscriptionsPerSession = (int)v }),
        new("max_capabilities_per_agent", LimitUnit.Count, 1, 65_536, "Capabilities one agent may register.", (o, v) => o with { MaxCapabilitiesPerAgent = (int)v }),
        new("max_subscription_queue_capacity", LimitUnit.Count, 1, 16_777_216, "The largest queue capacity (events) a subscription may ask for.", (o, v) => o with { EventBus = o.EventBus with { MaxSubscriptionQueueCapacity = (int)v } }),
        new("max_queue_bytes_per_subscription", LimitUnit.Bytes, 1, TiB, "Bytes one subscription may hold queued; past it the queue counts as full.", (o, v) => o with { EventBus = o.EventBus with { MaxQueueBytesPerSubscription = v } }),
        new("max_queued_bytes", LimitUnit.Bytes, 0, TiB, "Bytes all subscriptions together may hold queued; past it publishes are refused. 0 derives it from the machine's memory.", (o, v) => o with { EventBus = o.EventBus with { MaxQueuedBytes = v } }),
        new("max_block_timeout_ms", LimitUnit.Milliseconds, 0, 3_600_000, "The longest a BLOCK subscription may hold a publisher.", (o, v) => o with
        {
            // The default wait follows a maximum set below it.
            EventBus = o.EventBus with { MaxBlockTimeout = TimeSpan.FromMilliseconds(v), DefaultBlockTimeout = TimeSpan.FromMilliseconds(Math.Min(v, (long)o.EventBus.DefaultBlockTimeout.TotalMilliseconds)) },
        }),
        new("max_message_bytes", LimitUnit.Bytes, BridgeOptions.MinMessageBytes, BridgeOptions.MaxMessageBytesLimit, "Largest gRPC message received or sent.", (o, v) => o with { MaxMessageBytes = (int)v }),
        new("max_payload_bytes", LimitUnit.Bytes, 1, BridgeOptions.MaxMessageBytesLimit, "Largest envelope payload; at most max_message_bytes.", (o, v) => o with { MaxPayloadBytes = (int)v }),
        new("memory.max_total_bytes", LimitUnit.Bytes, 0, TiB, "Bytes the memory store may hold; 0 derives it from the machine's memory.", (o, v) => o with { Memory = o.Memory with { MaxTotalBytes = v } }),
        new("memory.max_bytes_per_namespace", LimitUnit.Bytes, 0, TiB, "Bytes one memory namespace may hold; 0 for a quarter of the total.", (o, v) => o with { Memory = o.Memory with { MaxBytesPerNamespace = v } }),
        new("memory.max_total_entries", LimitUnit.Count, 1, 1_000_000_000, "Entries the memory store may hold.", (o, v) => o with { Memory = o.Memory with { MaxTotalEntries = v } }),
        new("memory.max_entries_per_namespace", LimitUnit.Count, 1, int.MaxValue, "Entries one memory namespace may hold.", (o, v) => o with { Memory = o.Memory with { MaxEntriesPerNamespace = (int)v } }),
        new("memory.max_value_bytes", LimitUnit.Bytes, 0, GiB, "Largest memory value.", (o, v) => o with { Memory = o.Memory with { MaxValueBytes = (int)v } }),
    ];

    /// <summary>The limits written directly in <c>bridge:</c>.</summary>
    public static IEnumerable<BridgeLimit> Bridge => All.Where(l => !l.Key.StartsWith("memory.", StringComparison.Ordinal));

    /// <summary>The limits of <c>bridge.memory:</c> (keys without the <c>memory.</c> prefix there).</summary>
    public static IEnumerable<BridgeLimit> Memory => All.Where(l => l.Key.StartsWith("memory.", StringComparison.Ordinal));

    /// <summary>
    /// <paramref name="options"/> with the given limits (by key) set. A payload limit left unset
    /// follows a message limit set below it, as the default block timeout follows the maximum.
    /// </summary>
    public static BridgeOptions Apply(BridgeOptions options, IReadOnlyDictionary<string, long> values)
    {
        foreach (var limit in All)
        {
            if (values.TryGetValue(limit.Key, out var value))
            {
                options = limit.Apply(options, value);
            }
        }

        if (!values.ContainsKey("max_payload_bytes") && options.MaxPayloadBytes > options.MaxMessageBytes)
        {
            options = options with { MaxPayloadBytes = options.MaxMessageBytes };
        }

        return options;
    }

    /// <summary>A settings error in one line: the message without .NET's "(Parameter 'x')" suffix.</summary>
    public static string Describe(ArgumentException ex) =>
        ex.ParamName is { } name ? ex.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : ex.Message;

    /// <summary>A whole number of bytes, or one followed by KiB, MiB, GiB or TiB (any case, a space allowed between).</summary>
    public static bool TryParseBytes(string text, out long value)
    {
        value = 0;
        var digits = 0;
        while (digits < text.Length && char.IsAsciiDigit(text[digits]))
        {
            digits++;
        }

        if (digits == 0 || !long.TryParse(text.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out var number))
        {
            return false;
        }

        long scale = text.AsSpan(digits).Trim().ToString().ToLowerInvariant() switch
        {
            "" or "b" => 1,
            "kib" => KiB,
            "mib" => MiB,
            "gib" => GiB,
            "tib" => TiB,
            _ => 0,
        };
        if (scale == 0 || number > long.MaxValue / scale)
        {
            return false;
        }

        value = number * scale;
        return true;
    }

    /// <summary>Bytes as the largest unit that divides them, e.g. 64 MiB, 1000.</summary>
    public static string FormatBytes(long bytes)
    {
        foreach (var (unit, size) in new[] { ("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB) })
        {
            if (bytes >= size && bytes % size == 0)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{bytes / size} {unit}");
            }
        }

        return bytes.ToString(CultureInfo.InvariantCulture);
    }
}
