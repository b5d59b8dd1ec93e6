using Loom.Core;
using Loom.Mcp;

namespace Loom.Bridge;

/// <summary>Settings of one bridge process. Every value has a working default.</summary>
public sealed class BridgeOptions
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

    /// <summary>Bound on graceful shutdown: in-flight work gets this long to finish. Default 5 s.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>EventBus settings (queue sizes, TTL, hops).</summary>
    public EventBusOptions EventBus { get; init; } = new();

    /// <summary>ActionBroker settings (timeouts, routing default).</summary>
    public ActionBrokerOptions Actions { get; init; } = new();

    /// <summary>Memory store settings.</summary>
    public MemoryStoreOptions Memory { get; init; } = new();

    /// <summary>MCP servers whose tools become capabilities named <c>{server}:{tool}</c> (see docs/mcp.md). Default none.</summary>
    public IReadOnlyList<McpServerOptions> McpServers { get; init; } = [];

    /// <summary>Serving capabilities to MCP clients over streamable HTTP on the HTTP port. Default enabled at <c>/mcp</c>, every capability.</summary>
    public McpExposeOptions Mcp { get; init; } = new();
}
