using System.Collections;
using System.Globalization;
using Loom.Core;

namespace Loom.Sdk;

// LOOM_* environment variables (the same names as the Python and TypeScript SDKs) and the bounds
// every SDK enforces (tests/vectors/options.json).
public sealed partial record LoomConnectionOptions
{
    /// <summary>The bridge address used when none is given: <c>LOOM_URL</c>, else this.</summary>
    public static readonly Uri DefaultBridgeAddress = new("http://127.0.0.1:7070");

    /// <summary>
    /// Every environment variable <see cref="FromEnvironment()"/> reads, with the option it sets.
    /// Durations are integers of milliseconds; <c>LOOM_METADATA</c> is <c>key=value,key2=value2</c>.
    /// </summary>
    public static IReadOnlyDictionary<string, string> EnvironmentVariables { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["LOOM_AGENT_ID"] = nameof(AgentId),
        ["LOOM_NAME"] = nameof(Name),
        ["LOOM_NAMESPACE"] = nameof(Namespace),
        ["LOOM_METADATA"] = nameof(Metadata),
        ["LOOM_HEARTBEAT_MS"] = nameof(HeartbeatInterval),
        ["LOOM_CONNECT_TIMEOUT_MS"] = nameof(ConnectTimeout),
        ["LOOM_RECONNECT_INITIAL_MS"] = nameof(ReconnectInitialDelay),
        ["LOOM_RECONNECT_MAX_MS"] = nameof(ReconnectMaxDelay),
        ["LOOM_RECONNECT_JITTER"] = nameof(ReconnectJitter),
        ["LOOM_RESTART_SETTLE_MS"] = nameof(RestartSettle),
        ["LOOM_CALL_TIMEOUT_MS"] = nameof(DefaultCallTimeout),
        ["LOOM_REQUEST_TIMEOUT_MS"] = nameof(RequestTimeout),
        ["LOOM_OUTBOUND_QUEUE_CAPACITY"] = nameof(OutboundQueueCapacity),
        ["LOOM_MAX_FRAME_MESSAGES"] = nameof(MaxFrameMessages),
        ["LOOM_MAX_FRAME_BYTES"] = nameof(MaxFrameBytes),
        ["LOOM_DELIVERY_QUEUE_CAPACITY"] = nameof(DeliveryQueueCapacity),
        ["LOOM_DRAIN_TIMEOUT_MS"] = nameof(DisposeTimeout),
        ["LOOM_SDK"] = nameof(Sdk),
        ["LOOM_TLS_CA"] = nameof(TlsCaFile),
        ["LOOM_TLS_CERT"] = nameof(TlsCertificateFile),
        ["LOOM_TLS_KEY"] = nameof(TlsKeyFile),
        ["LOOM_TOKEN"] = nameof(Token),
    };

    /// <summary>
    /// The defaults, then the <c>LOOM_*</c> environment variables of this process
    /// (<see cref="EnvironmentVariables"/>); set what you give explicitly on the result with
    /// <c>with { ... }</c> (explicit values win, as in the other SDKs). The result is validated.
    /// </summary>
    /// <exception cref="InvalidParamsException">A variable's value is not a number, out of bounds, or malformed; the message names the variable.</exception>
    public static LoomConnectionOptions FromEnvironment() => FromEnvironment(ProcessEnvironment());

    /// <summary>As <see cref="FromEnvironment()"/>, from the given variables instead of the process's (empty values are ignored).</summary>
    public static LoomConnectionOptions FromEnvironment(IReadOnlyDictionary<string, string?> environment) => new LoomConnectionOptions().WithEnvironment(environment);

    /// <summary>These options with the <c>LOOM_*</c> variables present in <paramref name="environment"/> applied over them, validated.</summary>
    /// <exception cref="InvalidParamsException">A variable's value is not a number, out of bounds, or malformed; the message names the variable.</exception>
    public LoomConnectionOptions WithEnvironment(IReadOnlyDictionary<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var env = new EnvironmentReader(environment);
        var options = this with
        {
            AgentId = env.String("LOOM_AGENT_ID") ?? AgentId,
            Name = env.String("LOOM_NAME") ?? Name,
            Namespace = env.String("LOOM_NAMESPACE") ?? Namespace,
            Metadata = env.Metadata("LOOM_METADATA") ?? Metadata,
            HeartbeatInterval = env.Milliseconds("LOOM_HEARTBEAT_MS") is { } hb ? (hb == TimeSpan.Zero ? null : hb) : HeartbeatInterval,
            ConnectTimeout = env.Milliseconds("LOOM_CONNECT_TIMEOUT_MS") ?? ConnectTimeout,
            ReconnectInitialDelay = env.Milliseconds("LOOM_RECONNECT_INITIAL_MS") ?? ReconnectInitialDelay,
            ReconnectMaxDelay = env.Milliseconds("LOOM_RECONNECT_MAX_MS") ?? ReconnectMaxDelay,
            ReconnectJitter = env.Fraction("LOOM_RECONNECT_JITTER") ?? ReconnectJitter,
            RestartSettle = env.Settle("LOOM_RESTART_SETTLE_MS", RestartSettle),
            DefaultCallTimeout = env.Milliseconds("LOOM_CALL_TIMEOUT_MS") ?? DefaultCallTimeout,
            RequestTimeout = env.Milliseconds("LOOM_REQUEST_TIMEOUT_MS") ?? RequestTimeout,
            OutboundQueueCapacity = env.Count("LOOM_OUTBOUND_QUEUE_CAPACITY", MinOutboundQueueCapacity) ?? OutboundQueueCapacity,
            MaxFrameMessages = env.Count("LOOM_MAX_FRAME_MESSAGES", MinFrameMessages) ?? MaxFrameMessages,
            MaxFrameBytes = env.Count("LOOM_MAX_FRAME_BYTES", MinFrameBytes) ?? MaxFrameBytes,
            DeliveryQueueCapacity = env.Count("LOOM_DELIVERY_QUEUE_CAPACITY", MinDeliveryQueueCapacity) ?? DeliveryQueueCapacity,
            DisposeTimeout = env.Milliseconds("LOOM_DRAIN_TIMEOUT_MS") ?? DisposeTimeout,
            Sdk = env.String("LOOM_SDK") ?? Sdk,
            TlsCaFile = env.String("LOOM_TLS_CA") ?? TlsCaFile,
            TlsCertificateFile = env.String("LOOM_TLS_CERT") ?? TlsCertificateFile,
            TlsKeyFile = env.String("LOOM_TLS_KEY") ?? TlsKeyFile,
            Token = env.String("LOOM_TOKEN") ?? Token,
        };
        options.Validate();
        return options;
    }

    /// <summary>The bridge address: <paramref name="address"/> when given, else <c>LOOM_URL</c>, else <see cref="DefaultBridgeAddress"/>.</summary>
    /// <exception cref="InvalidParamsException"><c>LOOM_URL</c> is not an absolute URI.</exception>
    public static Uri BridgeAddressFromEnvironment(Uri? address = null) => address ?? BridgeAddressFromEnvironment(ProcessEnvironment());

    /// <summary>As <see cref="BridgeAddressFromEnvironment(Uri?)"/>, from the given variables.</summary>
    public static Uri BridgeAddressFromEnvironment(IReadOnlyDictionary<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var raw = new EnvironmentReader(environment).String("LOOM_URL");
        if (raw is null)
        {
            return DefaultBridgeAddress;
        }

        // host:port as the Python SDK accepts it.
        var text = raw.Contains("://", StringComparison.Ordinal) ? raw : "http://" + raw;
        return Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Host.Length > 0
            ? uri
            : throw new InvalidParamsException($"LOOM_URL='{raw}' is not a bridge address; use http://host:port (https:// for TLS).", "/env/LOOM_URL");
    }

    /// <summary>Smallest <see cref="OutboundQueueCapacity"/> (the same in every SDK).</summary>
    internal const int MinOutboundQueueCapacity = 16;

    internal const int MinFrameMessages = 1;

    internal const int MinFrameBytes = 1024;

    internal const int MinDeliveryQueueCapacity = 1;

    /// <summary>
    /// Checks the bounds every SDK enforces (tests/vectors/options.json): durations not negative,
    /// <see cref="ReconnectJitter"/> from 0 to 1, <see cref="OutboundQueueCapacity"/> at least 16,
    /// <see cref="MaxFrameMessages"/> and <see cref="DeliveryQueueCapacity"/> at least 1,
    /// <see cref="MaxFrameBytes"/> at least 1024.
    /// </summary>
    /// <exception cref="InvalidParamsException">The first value out of bounds, with the path <c>/OptionName</c>.</exception>
    public void Validate()
    {
        static void NotNegative(TimeSpan value, string name)
        {
            if (value < TimeSpan.Zero)
            {
                throw new InvalidParamsException($"The option {name} is {value}; use a duration of zero or more.", "/" + name);
            }
        }

        static void AtLeast(int value, int least, string name)
        {
            if (value < least)
            {
                throw new InvalidParamsException($"The option {name} is {value}; use an integer of at least {least}.", "/" + name);
            }
        }

        NotNegative(HeartbeatInterval ?? TimeSpan.Zero, nameof(HeartbeatInterval));
        NotNegative(ReconnectInitialDelay, nameof(ReconnectInitialDelay));
        NotNegative(ReconnectMaxDelay, nameof(ReconnectMaxDelay));
        NotNegative(RestartSettle ?? TimeSpan.Zero, nameof(RestartSettle));
        NotNegative(ConnectTimeout, nameof(ConnectTimeout));
        NotNegative(RequestTimeout, nameof(RequestTimeout));
        NotNegative(DefaultCallTimeout, nameof(DefaultCallTimeout));
        NotNegative(DisposeTimeout, nameof(DisposeTimeout));
        if (!(ReconnectJitter >= 0 && ReconnectJitter <= 1))
        {
            throw new InvalidParamsException($"The option {nameof(ReconnectJitter)} is {ReconnectJitter.ToString(CultureInfo.InvariantCulture)}; use a number from 0 to 1.", "/" + nameof(ReconnectJitter));
        }

        AtLeast(OutboundQueueCapacity, MinOutboundQueueCapacity, nameof(OutboundQueueCapacity));
        AtLeast(MaxFrameMessages, MinFrameMessages, nameof(MaxFrameMessages));
        AtLeast(MaxFrameBytes, MinFrameBytes, nameof(MaxFrameBytes));
        AtLeast(DeliveryQueueCapacity, MinDeliveryQueueCapacity, nameof(DeliveryQueueCapacity));
    }

    internal static Dictionary<string, string?> ProcessEnvironment()
    {
        var result = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry entry in Environment.GetEnvironmentVariables())
        {
            if (entry.Key is string key && key.StartsWith("LOOM_", StringComparison.Ordinal))
            {
                result[key] = entry.Value as string;
            }
        }

        return result;
    }

    /// <summary>Parses one variable at a time; every error names the variable and what to set instead.</summary>
    private readonly struct EnvironmentReader(IReadOnlyDictionary<string, string?> environment)
    {
        public string? String(string name) => environment.TryGetValue(name, out var raw) && !string.IsNullOrWhiteSpace(raw) ? raw.Trim() : null;

        public TimeSpan? Milliseconds(string name)
        {
            if (String(name) is not { } raw)
            {
                return null;
            }

            return long.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms <= (long)TimeSpan.MaxValue.TotalMilliseconds / 2
                ? TimeSpan.FromMilliseconds(ms)
                : throw new InvalidParamsException($"Environment variable {name}='{raw}' is not a duration; use a whole number of milliseconds, 0 or more.", "/env/" + name);
        }

        public TimeSpan? Settle(string name, TimeSpan? current)
        {
            if (String(name) is not { } raw)
            {
                return current;
            }

            return raw == "-1" ? null
                : long.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out var ms) && ms <= int.MaxValue ? TimeSpan.FromMilliseconds(ms)
                : throw new InvalidParamsException($"Environment variable {name}='{raw}' is not valid; use -1 (automatic), 0 (no hold) or a whole number of milliseconds.", "/env/" + name);
        }

        public double? Fraction(string name)
        {
            if (String(name) is not { } raw)
            {
                return null;
            }

            return double.TryParse(raw, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value is >= 0 and <= 1
                ? value
                : throw new InvalidParamsException($"Environment variable {name}='{raw}' is not valid; use a number from 0 to 1 (0.2 = +/-20 %).", "/env/" + name);
        }

        public int? Count(string name, int least)
        {
            if (String(name) is not { } raw)
            {
                return null;
            }

            return int.TryParse(raw, NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= least
                ? value
                : throw new InvalidParamsException($"Environment variable {name}='{raw}' is not valid; use a whole number of at least {least}.", "/env/" + name);
        }

        public Dictionary<string, string>? Metadata(string name)
        {
            if (String(name) is not { } raw)
            {
                return null;
            }

            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var pair in raw.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var i = pair.IndexOf('=', StringComparison.Ordinal);
                if (i <= 0)
                {
                    throw new InvalidParamsException($"Environment variable {name}='{raw}' is not of the form key=value,key2=value2 (entry '{pair}').", "/env/" + name);
                }

                result[pair[..i].Trim()] = pair[(i + 1)..].Trim();
            }

            return result;
        }
    }
}
