using System.Threading.Channels;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;
using Loom.Sdk.Internal.Connection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Sdk;

/// <summary>
/// One agent's connection to a bridge: RegisterAgent, then one EventStream with one read loop and
/// one write loop. Everything sent goes through one bounded queue; the write loop drains all that
/// is pending into one frame per write. Heartbeats flow both ways; a stream that breaks (or a
/// bridge that goes silent for three intervals) is re-established with jittered exponential
/// backoff, registering again with the same agent id, subscriptions and capabilities. Requests in
/// flight on a broken stream fail with a retryable UNAVAILABLE error; nothing waits forever.
/// </summary>
/// <remarks>
/// A facade over internal parts (sdk-dotnet/Loom.Sdk/Internal/Connection, the same parts as the
/// Python and TypeScript SDKs): <c>Supervisor</c>, <c>Writer</c>, <c>Reader</c>,
/// <c>SubscriptionRouter</c>, <c>PendingCalls</c>, <c>CallRunner</c>, <c>Heartbeat</c>, <c>DurableStreams</c>.
/// </remarks>
public sealed partial class LoomConnection : IAsyncDisposable, IAgentTransport
{
    private readonly ConnectionState _state;
    private readonly TestGate _testGate = new();
    private readonly PendingCalls _pending;
    private readonly Writer _writer;
    private readonly SubscriptionRouter _router;
    private readonly CallRunner _calls;
    private readonly DurableStreams _durable;
    private readonly Reader _reader;
    private readonly Supervisor _supervisor;
    private readonly ReplyRouter _replies;

    /// <summary>Creates a connection; call <see cref="ConnectAsync(CancellationToken)"/> to register and open the stream.</summary>
    /// <param name="address">The bridge's gRPC address, e.g. <c>http://127.0.0.1:7070</c>.</param>
    /// <param name="options">Settings; null for the defaults.</param>
    /// <param name="capabilities">Capabilities this agent provides (registered with every registration).</param>
    public LoomConnection(Uri address, LoomConnectionOptions? options = null, IEnumerable<LoomCapability>? capabilities = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        Address = address;
        options ??= new LoomConnectionOptions();
        options.Validate();
        var time = options.TimeProvider ?? TimeProvider.System;
        var logger = options.LoggerFactory?.CreateLogger<LoomConnection>() ?? (ILogger)NullLogger.Instance;
        AgentId = string.IsNullOrEmpty(options.AgentId) ? IdGenerator.NewAgentId(options.Name) : options.AgentId;
        Namespace = string.IsNullOrEmpty(options.Namespace) ? "default" : options.Namespace;
        _state = new ConnectionState(options, time, logger, AgentId, this);
        _pending = new PendingCalls(_state);
        _writer = new Writer(_state, _pending, _testGate);
        _pending.Writer = _writer;
        _calls = new CallRunner(_state, _writer, capabilities);
        _replies = new ReplyRouter(AgentId, _state.Ids, time);
        var inbox = new SubscriptionEntry(new Subscription { Pattern = _replies.InboxPattern, Qos = QosClass.Normal }, OnInboxDelivery, AgentId, time, logger);
        _router = new SubscriptionRouter(_state, _writer, _pending, inbox);
        _durable = new DurableStreams(_state, _writer, _pending, _router);
        _reader = new Reader(_state, _pending, _router, _calls, _durable, _testGate);
        var ownsChannel = options.Channel is null;
        var channel = options.Channel ?? GrpcChannel.ForAddress(ChannelSecurity.Address(address, options), options.ChannelOptions ?? ChannelSecurity.Apply(CreateChannelOptions(), address, options));
        var invoker = options.Interceptors is { Count: > 0 } interceptors ? channel.Intercept([.. interceptors]) : channel.CreateCallInvoker();
        _supervisor = new Supervisor(_state, address, channel, ownsChannel, invoker, _writer, _reader, new Heartbeat(_state, _writer, _testGate), _router, _pending, _calls, _durable, _replies, _testGate);
        Collaboration = new Protocol.V1.Collaboration.CollaborationClient(invoker);
    }

    /// <summary>
    /// The channel options a connection uses by default: messages up to 4 MiB both ways, HTTP/2
    /// keepalive pings every 30 s (10 s to answer) while calls are open, a 10 s connect timeout,
    /// and a further HTTP/2 connection when one runs out of streams. Start from these to share one
    /// channel among many agents (<see cref="LoomConnectionOptions.Channel"/>) or to add TLS and credentials.
    /// </summary>
    public static GrpcChannelOptions CreateChannelOptions() => new()
    {
        MaxReceiveMessageSize = 4 * 1024 * 1024,
        MaxSendMessageSize = 4 * 1024 * 1024,
        HttpHandler = new SocketsHttpHandler
        {
            KeepAlivePingDelay = TimeSpan.FromSeconds(30),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        },
        DisposeHttpClient = true,
    };

    /// <summary>Creates a connection and connects it (registers and opens the stream).</summary>
    public static async Task<LoomConnection> ConnectAsync(Uri address, LoomConnectionOptions? options = null, IEnumerable<LoomCapability>? capabilities = null, CancellationToken cancellationToken = default)
    {
        var connection = new LoomConnection(address, options, capabilities);
        try
        {
            await connection.ConnectAsync(cancellationToken);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    /// <summary>The bridge address.</summary>
    public Uri Address { get; }

    /// <summary>This agent's id (stable across reconnects).</summary>
    public string AgentId { get; }

    /// <summary>This agent's namespace (its default memory namespace).</summary>
    public string Namespace { get; }

    /// <summary>The current session id; empty while not connected.</summary>
    public string SessionId => Status == ConnectionStatus.Connected ? _supervisor.Session?.SessionId ?? "" : "";

    /// <summary>The bridge's limits from the last registration.</summary>
    public Limits Limits => _supervisor.Limits;

    /// <summary>The current status.</summary>
    public ConnectionStatus Status => _state.Status;

    /// <summary>Raised on every status change, synchronously on the connection's own task; keep handlers short.</summary>
    public event EventHandler<ConnectionStatusChange>? StatusChanged
    {
        add => _state.StatusChanged += value;
        remove => _state.StatusChanged -= value;
    }

    /// <summary>Status changes as a stream (bounded to the last 64; one reader).</summary>
    public ChannelReader<ConnectionStatusChange> StatusChanges => _state.Changes;

    /// <summary>Counters since the connection was created.</summary>
    public LoomConnectionStatistics Statistics => new()
    {
        FramesSent = _writer.FramesSent,
        MessagesSent = _writer.MessagesSent,
        FramesReceived = _reader.FramesReceived,
        MessagesReceived = _reader.MessagesReceived,
        Reconnects = _supervisor.Reconnects,
        DeliveriesDropped = _router.Dropped,
        DeliveriesUnrouted = _router.Unrouted,
        LateReplies = _replies.LateReplies,
        LateResponses = _pending.LateResponses,
        PublishErrors = _reader.PublishErrors,
        LostOnBreak = _writer.LostOnBreak,
        UnsentOnClose = _writer.UnsentOnClose,
        OutboundQueueDepth = _writer.Depth,
    };

    TimeProvider IAgentTransport.Time => _state.Time;

    internal string InboxPattern => _replies.InboxPattern;

    /// <summary>The client of loom.v1.Collaboration on this connection's channel.</summary>
    internal Protocol.V1.Collaboration.CollaborationClient Collaboration { get; }

    private LoomConnectionOptions Options => _state.Options;

    /// <summary>Registers with the bridge and opens the event stream. Fails with a typed error (UNAVAILABLE when unreachable).</summary>
    public Task ConnectAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        return _supervisor.ConnectAsync(cancellationToken);
    }

    /// <summary>
    /// Closes the connection within <see cref="LoomConnectionOptions.DisposeTimeout"/>: capability
    /// calls in flight finish, queued messages are written, then the stream is half-closed (the
    /// bridge takes that as the agent leaving). What is still waiting fails with CANCELLED.
    /// </summary>
    public ValueTask DisposeAsync() => _state.TryMarkDisposed() ? _supervisor.CloseAsync() : ValueTask.CompletedTask;

    /// <summary>Test hook: ends the stream and the TCP connection abruptly, without a half-close, as a killed process would. No reconnect.</summary>
    internal void KillForTest() => _supervisor.Kill();

    /// <summary>Test hook: the process hangs: nothing is read or written (no heartbeats), but the connection stays open.</summary>
    internal void FreezeForTest() => _testGate.Freeze();

    /// <summary>Test hook: breaks the current stream (a network blip); the connection reconnects.</summary>
    internal void BreakStreamForTest() => _supervisor.BreakStream();
}
