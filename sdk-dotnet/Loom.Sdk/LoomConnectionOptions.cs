using Grpc.Net.Client;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk;

/// <summary>
/// Settings of a <see cref="LoomConnection"/>. Every value has a working default; a record, so
/// derive variants with <c>with { ... }</c>. <see cref="FromEnvironment()"/> applies the
/// <c>LOOM_*</c> environment variables (the same names as the Python and TypeScript SDKs).
/// The connection checks them with <see cref="Validate"/>.
/// </summary>
public sealed partial record LoomConnectionOptions
{
    /// <summary>
    /// Stable agent id, kept across reconnects. Default null: the SDK makes one from
    /// <see cref="Name"/> and a random suffix (the same for the life of the connection).
    /// </summary>
    public string? AgentId { get; init; }

    /// <summary>Display name. Default <c>dotnet-agent</c>.</summary>
    public string Name { get; init; } = "dotnet-agent";

    /// <summary>Namespace of the agent (its default memory namespace). Default empty: the bridge uses <c>default</c>.</summary>
    public string Namespace { get; init; } = "";

    /// <summary>Metadata sent with the registration. Default none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Heartbeat interval asked of the bridge (it clamps it). Default null: the bridge's interval.</summary>
    public TimeSpan? HeartbeatInterval { get; init; }

    /// <summary>First reconnect delay; doubles per failed attempt. Default 100 ms.</summary>
    public TimeSpan ReconnectInitialDelay { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Largest reconnect delay. Default 5 s.</summary>
    public TimeSpan ReconnectMaxDelay { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Random spread of each reconnect delay, as a fraction of it (0.2 = +/-20 %). Default 0.2.</summary>
    public double ReconnectJitter { get; init; } = 0.2;

    /// <summary>
    /// After a reconnect to a bridge that restarted (it no longer knew this agent), how long to hold
    /// what was queued during the outage, so other agents subscribe again before it is sent (on the
    /// ephemeral bus an event nobody is subscribed to is gone). Default null: automatic, the longest a
    /// peer with the same reconnect settings can still be waiting to retry (twice the outage plus the
    /// first delay, at most <see cref="ReconnectMaxDelay"/>, plus the jitter); <see cref="TimeSpan.Zero"/>: no hold.
    /// </summary>
    public TimeSpan? RestartSettle { get; init; }

    /// <summary>Bound of RegisterAgent and of opening the stream, per attempt. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Capacity of the outbound queue (publishes, calls, results, acks) shared by all writers.
    /// A full queue makes senders wait (backpressure). Default 2048: two frames' worth keeps the
    /// write loop fed, and messages that wait longer in a deeper queue survive garbage collections
    /// (8192 cost the publisher a third of its CPU in GC pauses at full speed).
    /// </summary>
    public int OutboundQueueCapacity { get; init; } = 2048;

    /// <summary>Byte budget of one outbound frame; also capped below the bridge's max message size. Default 1 MiB.</summary>
    public int MaxFrameBytes { get; init; } = 1024 * 1024;

    /// <summary>Most messages in one outbound frame; also capped by the bridge's <c>max_batch_messages</c>. Default 1024.</summary>
    public int MaxFrameMessages { get; init; } = 1024;

    /// <summary>Capability call timeout when a call names none. Default 30 s.</summary>
    public TimeSpan DefaultCallTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Bound of waiting for a subscribe ack or a memory response. Default 10 s.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Capacity of each subscription's local delivery queue, between the read loop and the
    /// handler. When full, the subscription's QoS policy applies (drops are counted). Default 8192.
    /// </summary>
    public int DeliveryQueueCapacity { get; init; } = 8192;

    /// <summary>Bound of <see cref="LoomConnection.DisposeAsync"/>: draining queued writes and closing the stream. Default 5 s.</summary>
    public TimeSpan DisposeTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Value of the <c>sdk</c> registration field. Default <c>loom-dotnet/0.1.0</c>.</summary>
    public string Sdk { get; init; } = "loom-dotnet/0.1.0";

    /// <summary>Logging. Default none.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Clock for timeouts, heartbeats and backoff. Default <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider? TimeProvider { get; init; }

    /// <summary>
    /// The gRPC channel to reach the bridge through, owned by the caller (not disposed with the
    /// connection): give one channel to many agents to share its HTTP/2 connections, or a channel with
    /// TLS, credentials, interceptors or a handler of your own. Its address wins over the connection's.
    /// Default null: the connection makes its own from <see cref="ChannelOptions"/>.
    /// </summary>
    public GrpcChannel? Channel { get; init; }

    /// <summary>
    /// Options of the channel the connection makes when <see cref="Channel"/> is null, used as given.
    /// Default null: <see cref="LoomConnection.CreateChannelOptions"/> (4 MiB messages, keepalive
    /// pings every 30 s with a 10 s timeout, a 10 s connect timeout, more than one HTTP/2 connection when streams run out).
    /// </summary>
    public GrpcChannelOptions? ChannelOptions { get; init; }

    /// <summary>
    /// CA bundle (PEM file) the bridge's certificate must chain to, instead of the system's trusted
    /// roots; giving it also turns TLS on for an <c>http://</c> address. Used when the connection
    /// makes its own channel. Default: the environment variable <c>LOOM_TLS_CA</c>, else null (an
    /// <c>https://</c> address is checked against the system's roots).
    /// </summary>
    public string? TlsCaFile { get; init; } = Env("LOOM_TLS_CA");

    /// <summary>
    /// Client certificate (PEM file) shown to a bridge that asks for one (mutual TLS; the bridge
    /// takes the agent's identity from it). Needs <see cref="TlsKeyFile"/>. Default: <c>LOOM_TLS_CERT</c>, else null.
    /// </summary>
    public string? TlsCertificateFile { get; init; } = Env("LOOM_TLS_CERT");

    /// <summary>The private key (PEM file) of <see cref="TlsCertificateFile"/>. Default: <c>LOOM_TLS_KEY</c>, else null.</summary>
    public string? TlsKeyFile { get; init; } = Env("LOOM_TLS_KEY");

    /// <summary>
    /// Bearer token (from <c>loom token create</c>) sent as <c>authorization: Bearer ...</c> with
    /// every call. Sent only over TLS or to a loopback address. Default: <c>LOOM_TOKEN</c>, else null.
    /// </summary>
    public string? Token { get; init; } = Env("LOOM_TOKEN");

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;

    /// <summary>
    /// gRPC client interceptors every call of the connection goes through (RegisterAgent, the
    /// EventStream, collaboration operations), first one outermost: for auth headers, logging,
    /// metrics of your own. Default none.
    /// </summary>
    public IReadOnlyList<Grpc.Core.Interceptors.Interceptor>? Interceptors { get; init; }

    // The token stays out of logs: a record prints its members in ToString.
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("AgentId = ").Append(AgentId).Append(", Name = ").Append(Name).Append(", Namespace = ").Append(Namespace)
            .Append(", Token = ").Append(Token is null ? "null" : "***");
        return true;
    }
}
