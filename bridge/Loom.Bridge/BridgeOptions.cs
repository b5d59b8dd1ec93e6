using Loom.Core;
using Loom.Llm;
using Loom.Mcp;

namespace Loom.Bridge;

/// <summary>
/// Settings of one bridge process. Every value has a working default; <see cref="Validate"/>
/// (called by <see cref="LoomBridge"/> when it is made) checks them all. The names in parentheses
/// in its messages are the keys of loom.yaml's <c>bridge:</c> section (see docs/operations.md).
/// </summary>
public sealed record BridgeOptions
{
    /// <summary>Address both listeners bind to. Default <c>127.0.0.1</c>.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>HTTP/2-only (prior knowledge) port for gRPC. 0 picks a free port. Default 7070.</summary>
    public int GrpcPort { get; init; } = 7070;

    /// <summary>HTTP/1.1 port for <c>/healthz</c>, <c>/metrics</c>, <c>/v1/agents</c>, <c>/v1/capabilities</c> and <c>/mcp</c>. 0 picks a free port. Default 7071.</summary>
    public int HttpPort { get; init; } = 7071;

    /// <summary>Heartbeat interval offered to agents when they ask for none. Default 5 s.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Smallest heartbeat interval an agent may ask for. Default 100 ms.</summary>
    public TimeSpan MinHeartbeatInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Largest heartbeat interval an agent may ask for. Default 60 s.</summary>
    public TimeSpan MaxHeartbeatInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Missed intervals after which an agent is gone. Default 3.</summary>
    public int MissedHeartbeatsBeforeExpiry { get; init; } = 3;

    /// <summary>
    /// Time a newly registered agent has to open its stream or send a heartbeat before the
    /// heartbeat rule applies (registration and stream opening are one handshake; a cold client
    /// can take a while between them). Default 5 s.
    /// </summary>
    public TimeSpan FirstContactGrace { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// gRPC server reflection (grpc.reflection.v1 and v1alpha, for tools such as grpcurl). Default
    /// null: on when <see cref="Host"/> is a loopback address, off otherwise.
    /// </summary>
    public bool? GrpcReflection { get; init; }

    /// <summary>
    /// Applied to grpc-dotnet's <see cref="Grpc.AspNetCore.Server.GrpcServiceOptions"/> after Loom's settings
    /// (message sizes from <see cref="MaxMessageBytes"/>): server interceptors, compression providers,
    /// detailed errors. Default none.
    /// </summary>
    public Action<Grpc.AspNetCore.Server.GrpcServiceOptions>? ConfigureGrpc { get; init; }

    /// <summary>
    /// Largest gRPC message accepted or sent. Agents must accept messages of this size (it is in
    /// the registration's limits); whatever the bridge would forward beyond it is refused to its
    /// sender with RESOURCE_EXHAUSTED instead. Default 4 MiB.
    /// </summary>
    public int MaxMessageBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>Room kept in every message the bridge sends for what it wraps around a sender's content (frame, delivery, ids it sets, trace context).</summary>
    internal const int FramingHeadroomBytes = 1024;

    /// <summary>The largest envelope, pushed call, result or memory answer the bridge forwards to an agent.</summary>
    internal int MaxForwardedBytes => Math.Max(MaxMessageBytes / 2, MaxMessageBytes - FramingHeadroomBytes);

    /// <summary>Largest envelope payload. Default 1 MiB.</summary>
    public int MaxPayloadBytes { get; init; } = 1024 * 1024;

    /// <summary>Most messages the bridge puts in one outbound frame. Default 1024.</summary>
    public int MaxBatchMessages { get; init; } = 1024;

    /// <summary>Byte budget of one outbound frame; a frame closes once it is passed. Default 1 MiB.</summary>
    public int MaxBatchBytes { get; init; } = 1024 * 1024;

    /// <summary>Capability calls one session may have in flight as a caller. Default 1024.</summary>
    public int MaxInflightCallsPerSession { get; init; } = 1024;

    /// <summary>Per-session queue of control messages (results, acks, errors, pushed calls). Default 4096.</summary>
    public int OutboundQueueCapacity { get; init; } = 4096;

    /// <summary>
    /// How long the read loop waits for room in a full outbound queue before it ends the stream
    /// with RESOURCE_EXHAUSTED (a client that sends requests but never reads). Default 10 s.
    /// </summary>
    public TimeSpan OutboundQueueFullTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Subscriptions one session may hold. Default 256.</summary>
    public int MaxSubscriptionsPerSession { get; init; } = 256;

    /// <summary>Capabilities one agent may register. Default 256.</summary>
    public int MaxCapabilitiesPerAgent { get; init; } = 256;

    /// <summary>
    /// Most TCP connections open at once on both ports; further ones are closed at once and counted.
    /// Default 0: derived from the memory the process may use (one per 2 MiB, 1,024 to 65,536).
    /// </summary>
    public int MaxConnections { get; init; }

    /// <summary>Most TCP connections open at once from one remote address. Default 0: no limit per address.</summary>
    public int MaxConnectionsPerAddress { get; init; }

    /// <summary>A connection that sends nothing for this long after it opens is closed. Default 10 s.</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Most agent sessions alive at once (connected or waiting for a reconnect); a registration
    /// past it is refused with RESOURCE_EXHAUSTED (a reconnect of a live session is not a new one).
    /// Default 0: derived from the memory the process may use (one per MiB, 1,024 to 65,536).
    /// </summary>
    public int MaxSessions { get; init; }

    /// <summary>Bound on graceful shutdown: in-flight work gets this long to finish. Default 5 s.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>EventBus settings (queue sizes, TTL, hops).</summary>
    public EventBusOptions EventBus { get; init; } = new();

    /// <summary>Durable streams (loom.yaml <c>streams:</c>, docs/durability.md): topics they capture are persisted. Default none.</summary>
    public IReadOnlyList<StreamConfig> Streams { get; init; } = [];

    /// <summary>Where durable streams and consumer positions are kept (<c>--data-dir</c>); needed when <see cref="Streams"/> is not empty. Default none.</summary>
    public string? DataDirectory { get; init; }

    /// <summary>Run records of threads (loom.yaml <c>runs:</c>): on by default, under <see cref="DataDirectory"/> when there is one, else in memory.</summary>
    public RunsOptions Runs { get; init; } = new();

    /// <summary>Idempotent capability calls: window and bounds (loom.yaml <c>idempotency:</c>).</summary>
    public IdempotencyOptions Idempotency { get; init; } = new();

    /// <summary>ActionBroker settings (timeouts, routing default).</summary>
    public ActionBrokerOptions Actions { get; init; } = new();

    /// <summary>Memory store settings.</summary>
    public MemoryStoreOptions Memory { get; init; } = new();

    /// <summary>MCP servers whose tools become capabilities named <c>{server}:{tool}</c> (see docs/mcp.md). Default none.</summary>
    public IReadOnlyList<McpServerOptions> McpServers { get; init; } = [];

    /// <summary>Serving capabilities to MCP clients over streamable HTTP on the HTTP port. Default enabled at <c>/mcp</c>, every capability.</summary>
    public McpExposeOptions Mcp { get; init; } = new();

    /// <summary>The LLM gateway (llm.chat, llm.embed, llm.usage; see docs/llm.md). Default: no models, not served.</summary>
    public LlmOptions Llm { get; init; } = new();

    /// <summary>
    /// Server certificate (PEM file, may hold the chain after the leaf) for TLS on both ports
    /// (tls_cert). Default null: both ports are cleartext. Needs <see cref="TlsKeyFile"/>.
    /// </summary>
    public string? TlsCertificateFile { get; init; }

    /// <summary>Private key (PEM, PKCS#8, PKCS#1 or SEC1) of <see cref="TlsCertificateFile"/> (tls_key). Default null.</summary>
    public string? TlsKeyFile { get; init; }

    /// <summary>
    /// CA bundle (PEM) that client certificates must chain to (tls_client_ca): mutual TLS. The gRPC
    /// port then refuses connections without such a certificate; the HTTP port asks for one but
    /// does not require it. Default null: no client certificates. Needs <see cref="TlsCertificateFile"/>.
    /// </summary>
    public string? TlsClientCaFile { get; init; }

    /// <summary>
    /// Whether gRPC calls must carry a token (auth): <see cref="AuthMode.Off"/> ignores tokens,
    /// <see cref="AuthMode.Optional"/> checks a token when one is sent and lets calls without one in,
    /// <see cref="AuthMode.Required"/> refuses calls without a valid token or client certificate
    /// (UNAUTHENTICATED). A token's or client certificate's identity binds the agent id. Default Off.
    /// </summary>
    public AuthMode Auth { get; init; } = AuthMode.Off;

    /// <summary>
    /// The file holding the key tokens are signed with (token_key): made with a new random key,
    /// readable by the owner only, when it does not exist and <see cref="Auth"/> is not Off. Default
    /// null: <c>.loom/keys/token.key</c> under the current directory (where <c>loom token create</c> looks too).
    /// </summary>
    public string? TokenKeyFile { get; init; }

    /// <summary>
    /// Listen on a non-loopback address without <c>--auth required</c> and TLS (insecure,
    /// <c>--insecure</c>): anyone who reaches the ports can then register agents, call every
    /// capability and read memory. Default false: such a bridge refuses to start, naming what to turn on.
    /// </summary>
    public bool Insecure { get; init; }

    /// <summary>
    /// Serve <c>/metrics</c> without a credential when <see cref="Auth"/> is on (metrics_open,
    /// <c>--metrics-open</c>), for a Prometheus that sends no token. Default false: with auth on,
    /// <c>/metrics</c> needs an admin or read-only credential like <c>/v1/*</c>.
    /// </summary>
    public bool MetricsOpen { get; init; }

    /// <summary>
    /// Serve the dashboard on the HTTP port (<c>/</c>, its views under <c>/v1/</c>) and keep its
    /// bounded in-memory buffers of recent events, calls and threads. Default true.
    /// </summary>
    public bool Dashboard { get; init; } = true;

    /// <summary>Folder of the built dashboard page; null (the default) is the <c>dashboard</c> folder beside the bridge's assembly.</summary>
    public string? DashboardRoot { get; init; }

    /// <summary>
    /// Identities (a client certificate's under mutual TLS, or a token's subject) that are admins of the HTTP surface (admin_identities):
    /// <c>/v1/*</c>, <c>/metrics</c> and <c>/mcp</c>. Default empty: only admin tokens are.
    /// </summary>
    public IReadOnlyList<string> AdminIdentities { get; init; } = [];

    /// <summary>
    /// Host names (besides loopback and the bound address) that <c>/mcp</c> accepts in the <c>Host</c> and
    /// <c>Origin</c> headers (mcp_allowed_hosts): DNS-rebinding protection. Default empty.
    /// </summary>
    public IReadOnlyList<string> McpAllowedHosts { get; init; } = [];

    /// <summary>Identities (a client certificate's, or a token's subject) that may read <c>/v1/*</c> and <c>/metrics</c> (read_only_identities). Default empty.</summary>
    public IReadOnlyList<string> ReadOnlyIdentities { get; init; } = [];

    /// <summary>
    /// Permissions per identity (loom.yaml's <c>permissions:</c> section), keyed by identity; the key
    /// <c>*</c> applies to every identity and <c>anonymous</c> to callers without a credential under
    /// optional auth. With <see cref="Auth"/> on, whatever no rule (here or in the caller's token)
    /// allows is refused with PERMISSION_DENIED; a deny here beats every allow. Ignored with auth off.
    /// Default null: only the tokens' allow lists grant anything. See docs/security.md.
    /// </summary>
    public IReadOnlyDictionary<string, IdentityPermissions>? Permissions { get; init; }

    /// <summary>
    /// The audit trail (audit_log and the audit_* keys; <c>--audit-log</c>): refusals, credential failures,
    /// admin actions, limit hits and registrations as JSON lines and <c>_loom.audit.{kind}</c> events.
    /// Default: on when <see cref="Auth"/> is on, without a file. See docs/security.md.
    /// </summary>
    public AuditOptions Audit { get; init; } = new();

    /// <summary>True when both ports serve TLS.</summary>
    public bool TlsEnabled => TlsCertificateFile is not null;

    /// <summary>The smallest <see cref="MaxMessageBytes"/> accepted: 16 KiB.</summary>
    public const int MinMessageBytes = 16 * 1024;

    /// <summary>The largest <see cref="MaxMessageBytes"/> accepted: 1 GiB.</summary>
    public const int MaxMessageBytesLimit = 1024 * 1024 * 1024;

    /// <summary>
    /// Checks every setting, including those of <see cref="EventBus"/>, <see cref="Actions"/> and
    /// <see cref="Memory"/>: numbers in range, minimums not above maximums.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">
    /// A setting is out of range: <see cref="ArgumentException.ParamName"/> is the option's name
    /// (e.g. <c>MaxSessions</c>, <c>EventBus.MaxQueuedBytes</c>) and the message says what is accepted.
    /// </exception>
    /// <exception cref="ArgumentException"><see cref="Host"/> is not an IP address.</exception>
    public void Validate()
    {
        Llm.Validate();
        if (string.IsNullOrWhiteSpace(Host))
        {
            throw new ArgumentException("Host is empty; use an address such as 127.0.0.1 or 0.0.0.0.", nameof(Host));
        }

        _ = LoomBridge.ResolveAddress(Host);
        Check(
            !Insecure && !LoomBridge.IsLoopback(Host) && !(Auth == AuthMode.Required && TlsEnabled),
            nameof(Insecure),
            $"Host {Host} is not a loopback address, and the bridge does not require authentication and TLS: anyone who reaches it could register agents, call every capability and read memory. Turn on --auth required with --tls-cert/--tls-key (docs/security.md), bind 127.0.0.1, or pass --insecure (insecure: true) to accept that on purpose.");
        Check(GrpcPort is < 0 or > 65535, nameof(GrpcPort), $"GrpcPort is {GrpcPort}; use 0 (a free port) to 65535.");
        Check(HttpPort is < 0 or > 65535, nameof(HttpPort), $"HttpPort is {HttpPort}; use 0 (a free port) to 65535.");
        Check(GrpcPort != 0 && GrpcPort == HttpPort, nameof(HttpPort), $"GrpcPort and HttpPort are both {GrpcPort}; use two different ports (or 0 for free ones).");
        Check(MinHeartbeatInterval <= TimeSpan.Zero, nameof(MinHeartbeatInterval), $"MinHeartbeatInterval is {Ms(MinHeartbeatInterval)}; it must be positive.");
        Check(MaxHeartbeatInterval < MinHeartbeatInterval, nameof(MaxHeartbeatInterval), $"MaxHeartbeatInterval is {Ms(MaxHeartbeatInterval)}; it must be at least MinHeartbeatInterval ({Ms(MinHeartbeatInterval)}).");
        Check(HeartbeatInterval < MinHeartbeatInterval || HeartbeatInterval > MaxHeartbeatInterval, nameof(HeartbeatInterval), $"HeartbeatInterval (heartbeat_ms) is {Ms(HeartbeatInterval)}; use {Ms(MinHeartbeatInterval)} (MinHeartbeatInterval) to {Ms(MaxHeartbeatInterval)} (MaxHeartbeatInterval).");
        Check(MissedHeartbeatsBeforeExpiry is < 1 or > 1000, nameof(MissedHeartbeatsBeforeExpiry), $"MissedHeartbeatsBeforeExpiry is {MissedHeartbeatsBeforeExpiry}; use 1 to 1000.");
        Check(FirstContactGrace < TimeSpan.Zero, nameof(FirstContactGrace), $"FirstContactGrace is {Ms(FirstContactGrace)}; it must not be negative.");
        Check(MaxMessageBytes is < MinMessageBytes or > MaxMessageBytesLimit, nameof(MaxMessageBytes), $"MaxMessageBytes (max_message_bytes) is {MaxMessageBytes}; use {MinMessageBytes} (16 KiB) to {MaxMessageBytesLimit} (1 GiB).");
        Check(MaxPayloadBytes < 1 || MaxPayloadBytes > MaxMessageBytes, nameof(MaxPayloadBytes), $"MaxPayloadBytes (max_payload_bytes) is {MaxPayloadBytes}; use 1 to MaxMessageBytes (max_message_bytes, {MaxMessageBytes}).");
        Check(MaxBatchMessages < 1, nameof(MaxBatchMessages), $"MaxBatchMessages is {MaxBatchMessages}; it must be positive.");
        Check(MaxBatchBytes < 1, nameof(MaxBatchBytes), $"MaxBatchBytes is {MaxBatchBytes}; it must be positive.");
        Check(MaxInflightCallsPerSession < 1, nameof(MaxInflightCallsPerSession), $"MaxInflightCallsPerSession is {MaxInflightCallsPerSession}; it must be positive.");
        Check(OutboundQueueCapacity < 1, nameof(OutboundQueueCapacity), $"OutboundQueueCapacity is {OutboundQueueCapacity}; it must be positive.");
        Check(OutboundQueueFullTimeout <= TimeSpan.Zero, nameof(OutboundQueueFullTimeout), $"OutboundQueueFullTimeout is {Ms(OutboundQueueFullTimeout)}; it must be positive.");
        Check(MaxSubscriptionsPerSession < 1, nameof(MaxSubscriptionsPerSession), $"MaxSubscriptionsPerSession (max_subscriptions_per_session) is {MaxSubscriptionsPerSession}; it must be positive.");
        Check(MaxCapabilitiesPerAgent < 1, nameof(MaxCapabilitiesPerAgent), $"MaxCapabilitiesPerAgent (max_capabilities_per_agent) is {MaxCapabilitiesPerAgent}; it must be positive.");
        Check(MaxConnections < 0, nameof(MaxConnections), $"MaxConnections (max_connections) is {MaxConnections}; use 0 (derived from the machine's memory) or a positive number.");
        Check(MaxConnectionsPerAddress < 0, nameof(MaxConnectionsPerAddress), $"MaxConnectionsPerAddress (max_connections_per_address) is {MaxConnectionsPerAddress}; use 0 (no limit per address) or a positive number.");
        Check(HandshakeTimeout <= TimeSpan.Zero, nameof(HandshakeTimeout), $"HandshakeTimeout (handshake_timeout_ms) is {Ms(HandshakeTimeout)}; it must be positive.");
        Check(MaxSessions < 0, nameof(MaxSessions), $"MaxSessions (max_sessions) is {MaxSessions}; use 0 (derived from the machine's memory) or a positive number.");
        Check(ShutdownTimeout < TimeSpan.Zero, nameof(ShutdownTimeout), $"ShutdownTimeout is {Ms(ShutdownTimeout)}; it must not be negative.");
        Check(Actions.DefaultTimeout <= TimeSpan.Zero, "Actions.DefaultTimeout", $"Actions.DefaultTimeout is {Ms(Actions.DefaultTimeout)}; it must be positive.");
        Check(Actions.MaxTimeout < Actions.DefaultTimeout, "Actions.MaxTimeout", $"Actions.MaxTimeout is {Ms(Actions.MaxTimeout)}; it must be at least Actions.DefaultTimeout ({Ms(Actions.DefaultTimeout)}).");
        Check(Actions.MaxInputBytes < 1, "Actions.MaxInputBytes", $"Actions.MaxInputBytes is {Actions.MaxInputBytes}; it must be positive.");
        Check(Actions.UnhealthyCooldown < TimeSpan.Zero, "Actions.UnhealthyCooldown", $"Actions.UnhealthyCooldown is {Ms(Actions.UnhealthyCooldown)}; it must not be negative.");
        CheckTls();
        Nested("Audit", Audit.Validate);
        Nested("EventBus", EventBus.Validate);
        Nested("Memory", Memory.Validate);
        Nested("Idempotency", Idempotency.Validate);
        StreamConfig.ValidateAll(Streams, DataDirectory);
        Runs.Validate();

        static void Check(bool bad, string name, string message)
        {
            if (bad)
            {
                throw new ArgumentOutOfRangeException(name, message);
            }
        }

        static void Nested(string prefix, Action validate)
        {
            try
            {
                validate();
            }
            catch (ArgumentOutOfRangeException ex)
            {
                var message = ex.ParamName is { } name ? ex.Message.Replace($" (Parameter '{name}')", "", StringComparison.Ordinal) : ex.Message;
                throw new ArgumentOutOfRangeException($"{prefix}.{ex.ParamName}", $"{prefix}.{message}");
            }
        }
    }

    private void CheckTls()
    {
        if ((TlsCertificateFile is null) != (TlsKeyFile is null))
        {
            throw new ArgumentException("TLS needs both a certificate and its key: give TlsCertificateFile (tls_cert, --tls-cert) and TlsKeyFile (tls_key, --tls-key), or neither.", TlsCertificateFile is null ? nameof(TlsCertificateFile) : nameof(TlsKeyFile));
        }

        if (TlsClientCaFile is not null && TlsCertificateFile is null)
        {
            throw new ArgumentException("TlsClientCaFile (tls_client_ca, --tls-client-ca) asks for client certificates, which need TLS: give TlsCertificateFile and TlsKeyFile too.", nameof(TlsClientCaFile));
        }

        foreach (var (file, name) in new[] { (TlsCertificateFile, nameof(TlsCertificateFile)), (TlsKeyFile, nameof(TlsKeyFile)), (TlsClientCaFile, nameof(TlsClientCaFile)) })
        {
            if (file is not null && !File.Exists(file))
            {
                throw new ArgumentException($"{name} '{file}' does not exist.", name);
            }
        }
    }

    private static string Ms(TimeSpan value) => value.TotalMilliseconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + " ms";
}
