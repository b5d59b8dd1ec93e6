using System.Net;
using Loom.Bridge.Internal;
using Loom.Core;
using Grpc.AspNetCore.Server;
using Grpc.Health.V1;
using Grpc.HealthCheck;
using Loom.Llm;
using Loom.Mcp;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge;

/// <summary>
/// One bridge: the Loom core (EventBus, ActionBroker, directories, memory) served over gRPC on an
/// HTTP/2-only port, with <c>/healthz</c> and the read-only <c>/v1/agents</c> and <c>/v1/capabilities</c> on a separate HTTP/1.1 port.
/// </summary>
public sealed class LoomBridge : IAsyncDisposable
{
    private readonly BridgeOptions _options;
    private readonly Action<ILoggingBuilder>? _configureLogging;
    private WebApplication? _app;
    private SessionRegistry? _sessions;
    private Core.Collaboration.Coordinator? _coordinator;
    private McpIngestHost? _mcp;
    private LlmGateway? _llm;
    private int _grpcPort;
    private int _httpPort;
    private IPEndPoint? _grpcEndPoint;
    private IPEndPoint? _httpEndPoint;
    private int _stopped;
    private ConnectionGate? _gate;
    private AuditLog? _audit;

    /// <summary>TCP connections the connection gate counts as open now (for tests).</summary>
    internal int OpenConnections => _gate?.Open ?? 0;

    /// <summary>Makes a bridge (not yet listening: see <see cref="StartAsync"/>).</summary>
    /// <exception cref="ArgumentException">A setting is out of range (<see cref="BridgeOptions.Validate"/>).</exception>
    public LoomBridge(BridgeOptions? options = null, Action<ILoggingBuilder>? configureLogging = null, TimeProvider? time = null)
    {
        _options = options ?? new BridgeOptions();
        _options.Validate();
        _configureLogging = configureLogging;
        Time = time ?? TimeProvider.System;
        // No envelope larger than an agent can receive gets into the bus: it would end every subscriber's stream.
        var envelopeLimit = _options.EventBus.MaxEnvelopeBytes > 0 ? Math.Min(_options.EventBus.MaxEnvelopeBytes, _options.MaxForwardedBytes) : _options.MaxForwardedBytes;
        Bus = new EventBus(_options.EventBus with { MaxEnvelopeBytes = envelopeLimit }, Time);
        Broker = new ActionBroker(_options.Actions, new Router(), Time);
        Memory = new MemoryStore(_options.Memory, Time);
        Agents = new AgentDirectory();
        _telemetry = new Internal.Metrics.BridgeTelemetry(Bus, Broker, Memory, () => _sessions, () => _coordinator?.Stats);
        if (_options.Dashboard)
        {
            _dashboard = new Internal.Dashboard.DashboardFeed(Bus, Broker, Agents, () => _sessions, Time);
            _telemetry.ObserveDashboard(_dashboard);
        }
    }

    private readonly Internal.Dashboard.DashboardFeed? _dashboard;

    /// <summary>The dashboard's feed (null with <see cref="BridgeOptions.Dashboard"/> off), for tests.</summary>
    internal Internal.Dashboard.DashboardFeed? Dashboard => _dashboard;

    private readonly Internal.Metrics.BridgeTelemetry _telemetry;

    private Internal.Streams.StreamHost? _streams;
    private Internal.Idempotency.IdempotencyStore? _idempotency;

    private Internal.Runs.RunRecorder? _runs;

    /// <summary>The run records (null when off or before the start), for tests.</summary>
    internal Internal.Runs.RunRecorder? Runs => _runs;

    /// <summary>grpc.health.v1: the server as a whole ("") and each Loom service; NOT_SERVING from the start of shutdown.</summary>
    private readonly HealthServiceImpl _health = new();

    private static readonly string[] HealthServices = ["", BridgeService.ServiceName, CollaborationService.ServiceName];

    /// <summary>True when spans are exported over OTLP (the OTEL_* environment asked for it at start).</summary>
    public bool TracingEnabled => _telemetry.TracingEnabled;

    public TimeProvider Time { get; }

    public EventBus Bus { get; }

    public ActionBroker Broker { get; }

    public MemoryStore Memory { get; }

    public AgentDirectory Agents { get; }

    /// <summary>
    /// The gRPC address a client on this machine connects to, e.g. <c>http://127.0.0.1:7070</c>:
    /// the bound address, or the loopback address when the bridge listens on every interface
    /// (see <see cref="GrpcEndPoint"/>); valid after <see cref="StartAsync"/>.
    /// </summary>
    public Uri GrpcAddress => new($"{Scheme}://{FormatHost(_options.Host)}:{_grpcPort}");

    /// <summary>The HTTP/1.1 address for health checks, as <see cref="GrpcAddress"/>; valid after <see cref="StartAsync"/>.</summary>
    public Uri HttpAddress => new($"{Scheme}://{FormatHost(_options.Host)}:{_httpPort}");

    /// <summary><c>https</c> when the bridge serves TLS (<see cref="BridgeOptions.TlsCertificateFile"/>), else <c>http</c>.</summary>
    private string Scheme => _options.TlsEnabled ? "https" : "http";

    /// <summary>Where the gRPC listener is bound, e.g. <c>0.0.0.0:7070</c> for every IPv4 interface; valid after <see cref="StartAsync"/>.</summary>
    public IPEndPoint GrpcEndPoint => _grpcEndPoint ?? throw new InvalidOperationException("The bridge is not started.");

    /// <summary>Where the HTTP/1.1 listener is bound; valid after <see cref="StartAsync"/>.</summary>
    public IPEndPoint HttpEndPoint => _httpEndPoint ?? throw new InvalidOperationException("The bridge is not started.");

    /// <summary>The ingested MCP servers and their state (empty before <see cref="StartAsync"/>).</summary>
    public IReadOnlyList<McpServerStatus> McpServers => _mcp?.Servers ?? [];

    /// <summary>Number of live agent sessions.</summary>
    public int SessionCount => _sessions?.Count ?? 0;

    /// <summary>Binds both listeners and starts serving. Ports 0 are resolved to the bound ports.</summary>
    /// <exception cref="InvalidOperationException">A TLS file cannot be loaded (the message names it).</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_app is not null)
        {
            throw new InvalidOperationException("The bridge is already started.");
        }

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        if (_configureLogging is not null)
        {
            _configureLogging(builder.Logging);
        }
        else
        {
            builder.Logging.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        }

        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);

        var tls = TlsSetup.From(_options);
        AuditLog? audit = null; // made once logging exists; the TLS callback runs only after the start
        if (tls is not null)
        {
            tls.Rejected = (certificate, why) => audit?.Record(new AuditRecord(AuditRecord.Credential, "tls_handshake", "unauthenticated")
            {
                Identity = TlsSetup.IdentityOf(certificate),
                Reason = $"The client certificate '{LogText.Clean(certificate.Subject)}' does not chain to a CA of tls_client_ca for client authentication: {why}",
            });
        }

        ConnectionGate? gate = null; // made once logging exists, before Kestrel reads its options at start
        ListenOptions? grpcListen = null;
        ListenOptions? httpListen = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = null;
            ConfigureHttp2(k.Limits.Http2);
            var address = ResolveAddress(_options.Host);
            k.Listen(address, _options.GrpcPort, l => { l.Protocols = HttpProtocols.Http2; l.Use(next => gate!.Wrap(next)); tls?.Apply(l, requireClientCertificate: true); grpcListen = l; });
            k.Listen(address, _options.HttpPort, l => { l.Protocols = HttpProtocols.Http1; l.Use(next => gate!.Wrap(next)); tls?.Apply(l, requireClientCertificate: false); httpListen = l; });
        });

        if (_options.Mcp.Enabled)
        {
            builder.Services.AddLoomMcp(_options.Mcp, Broker, Time);
        }

        var authenticate = _options.Auth != AuthMode.Off || tls?.MutualTls == true;
        if (_options.Auth != AuthMode.Off)
        {
            var key = BridgeTokens.LoadOrCreateKey(_options.TokenKeyFile ?? BridgeTokens.DefaultKeyFile);
            builder.Services.AddAuthentication().AddJwtBearer(o =>
            {
                o.MapInboundClaims = false;
                o.IncludeErrorDetails = false;
                o.TokenValidationParameters = BridgeTokens.Validation(key);
            });
        }

        if (_options.Auth != AuthMode.Off)
        {
            builder.Services.AddAuthorization(o => AdminAccess.AddPolicies(o, _options));
            builder.Services.AddSingleton<Microsoft.AspNetCore.Authorization.IAuthorizationMiddlewareResultHandler>(new AdminAccess.ResultHandler(null));
        }

        if (tls?.MutualTls == true)
        {
            tls.AddCertificateAuthentication(builder.Services);
        }

        if (authenticate)
        {
            builder.Services.AddSingleton(_ => new AuthInterceptor(_options, tls?.MutualTls == true, _audit));
        }

        builder.Services.AddGrpc(o =>
        {
            if (authenticate)
            {
                o.Interceptors.Add<AuthInterceptor>();
            }

            o.MaxReceiveMessageSize = _options.MaxMessageBytes;
            o.MaxSendMessageSize = _options.MaxMessageBytes;
            o.EnableDetailedErrors = false;
            _options.ConfigureGrpc?.Invoke(o);
        });
        var reflection = _options.GrpcReflection ?? IsLoopback(_options.Host);
        if (reflection)
        {
            builder.Services.AddGrpcReflection();
        }

        // The services are singletons built from the core this bridge owns (resolved at the first call, after StartAsync set them up).
        builder.Services.AddSingleton(_ => new BridgeService(_sessions!, Broker, _options));
        builder.Services.AddSingleton(_ => new CollaborationService(_sessions!, _coordinator!, _options));
        builder.Services.AddSingleton(_health);

        var app = builder.Build();
        var loggerFactory = app.Services.GetRequiredService<ILoggerFactory>();
        gate = new ConnectionGate(_options, _telemetry.Bridge, loggerFactory.CreateLogger<ConnectionGate>(), Time);
        _gate = gate;
        _telemetry.Bridge.OpenConnections = () => gate.Open;
        if (_options.Audit.IsOn(_options.Auth))
        {
            audit = new AuditLog(_options.Audit, Bus, Time, loggerFactory.CreateLogger<AuditLog>(), _telemetry.Bridge);
            audit.Start();
            _audit = audit;
        }

        _streams = Internal.Streams.StreamHost.Open(_options, Bus, Time, loggerFactory.CreateLogger("Loom.Streams"));
        _runs = Internal.Runs.RunRecorder.Open(_options, Bus, Broker, Time, loggerFactory.CreateLogger("Loom.Runs"));
        if (_runs is not null)
        {
            _telemetry.ObserveRuns(_runs);
        }

        _idempotency = Internal.Idempotency.IdempotencyStore.Open(_options.Idempotency, _options.Actions, _options.DataDirectory, Time, loggerFactory.CreateLogger("Loom.Idempotency"));
        Broker.Idempotency = _idempotency;
        _telemetry.ObserveIdempotency(_idempotency);
        _sessions = new SessionRegistry(_options, Bus, Broker, Memory, Agents, Time, loggerFactory.CreateLogger<SessionRegistry>(), _telemetry.Bridge) { Audit = audit, Streams = _streams };
        _telemetry.StartTracing(loggerFactory.CreateLogger<LoomBridge>());
        _coordinator = Core.Collaboration.Coordinator.For(Bus, Broker, loggerFactory.CreateLogger<Core.Collaboration.Coordinator>());

        app.UseRouting();
        app.Use(SeparatePorts);
        if (audit is not null)
        {
            app.Use(AdminAudit.For(audit, () => _httpPort));
        }

        if (_options.Mcp.Enabled)
        {
            app.Use(McpOriginGuard.For(_options));
        }
        if (_dashboard is not null)
        {
            Internal.Dashboard.DashboardApi.UseStaticPage(app, _options.DashboardRoot ?? Internal.Dashboard.DashboardApi.DefaultRoot);
        }
        else
        {
            Internal.Dashboard.DashboardApi.MapOff(app);
        }

        var protect = _options.Auth != AuthMode.Off;
        if (protect)
        {
            app.UseAuthorization();
        }

        app.MapGrpcService<BridgeService>();
        app.MapGrpcService<CollaborationService>();
        app.MapGrpcService<HealthServiceImpl>();
        if (reflection)
        {
            app.MapGrpcReflectionService();
        }

        app.MapGet("/healthz", (HttpContext _) => Results.Json(new HealthReport("ok", SessionCount), HealthJsonContext.Default.HealthReport));
        AdminApi.Map(app, Agents, Broker, () => _sessions, Time, _options);
        if (_dashboard is not null)
        {
            Internal.Dashboard.DashboardApi.Map(app, _dashboard, Broker, _options, loggerFactory.CreateLogger("Loom.Bridge.Dashboard"));
        }

        Internal.Streams.StreamsApi.Map(app, () => _streams, _options);
        Internal.Runs.RunsApi.Map(app, () => _runs, _options);
        var metrics = app.MapGet("/metrics", _telemetry.Exporter.ServeAsync);
        if (protect && !_options.MetricsOpen)
        {
            metrics.RequireAuthorization(AdminAccess.ReadPolicy);
        }

        if (_options.Mcp.Enabled)
        {
            var mcp = app.MapLoomMcp(_options.Mcp);
            if (protect)
            {
                mcp.RequireAuthorization(AdminAccess.AdminPolicy);
            }
        }

        _mcp = new McpIngestHost(_options.McpServers, Broker, Agents, Time, loggerFactory);
        _llm = _options.Llm.Enabled ? new LlmGateway(_options.Llm, Broker, Bus, _telemetry.Meter, Time, loggerFactory, cacheDirectory: _options.DataDirectory is { } dataDir ? Path.Combine(dataDir, "llm-cache") : null) : null;

        await app.StartAsync(cancellationToken);
        _grpcEndPoint = grpcListen!.IPEndPoint!;
        _httpEndPoint = httpListen!.IPEndPoint!;
        _grpcPort = _grpcEndPoint.Port;
        _httpPort = _httpEndPoint.Port;
        if (!IsLoopback(_options.Host) && !(_options.Auth == AuthMode.Required && _options.TlsEnabled))
        {
            var scope = _grpcEndPoint.Address.Equals(IPAddress.Any) ? "every IPv4 interface"
                : _grpcEndPoint.Address.Equals(IPAddress.IPv6Any) ? "every interface"
                : "a non-loopback address";
            Log.NotLoopback(loggerFactory.CreateLogger<LoomBridge>(), _grpcEndPoint.ToString(), _httpEndPoint.ToString(), scope);
        }
        _app = app;
        _sessions.Start();
        _mcp.Start();
        _llm?.Start();
        foreach (var service in HealthServices)
        {
            _health.SetStatus(service, HealthCheckResponse.Types.ServingStatus.Serving);
        }
    }

    /// <summary>
    /// gRPC is served on the gRPC port only and everything else on the HTTP port only (a request on
    /// the wrong port is 404). A served gRPC call's messages are counted under its method.
    /// </summary>
    private Task SeparatePorts(HttpContext context, RequestDelegate next)
    {
        var grpcMethod = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>();
        if (context.Connection.LocalPort == _grpcPort)
        {
            if (grpcMethod is null && context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) != true)
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }

            if (grpcMethod?.ServiceType == typeof(BridgeService) || grpcMethod?.ServiceType == typeof(CollaborationService))
            {
                WireCounters.Current = _telemetry.Bridge.Wire(grpcMethod.Method.FullName);
            }
        }
        else if (grpcMethod is not null)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }

        return next(context);
    }

    /// <summary>
    /// HTTP/2 limits for gRPC: keepalive pings every 30 s with a 20 s timeout (to detect dead peers
    /// on long-lived streams), up to 1000 concurrent streams per connection, and flow-control
    /// windows of 1 MiB per stream and 2 MiB per connection for high throughput.
    /// </summary>
    private static void ConfigureHttp2(Http2Limits http2)
    {
        http2.KeepAlivePingDelay = TimeSpan.FromSeconds(30);
        http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(20);
        http2.MaxStreamsPerConnection = 1000;
        http2.InitialStreamWindowSize = 1024 * 1024;
        http2.InitialConnectionWindowSize = 2 * 1024 * 1024;
    }

    internal static bool IsLoopback(string host) => host == "localhost" || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));

    /// <summary>Stops accepting work, drains in-flight work within <see cref="BridgeOptions.ShutdownTimeout"/>, and closes.</summary>
    public async Task StopAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1 || _app is null)
        {
            return;
        }

        foreach (var service in HealthServices)
        {
            _health.SetStatus(service, HealthCheckResponse.Types.ServingStatus.NotServing);
        }

        using var bound = new CancellationTokenSource(_options.ShutdownTimeout);
        _dashboard?.Dispose(); // ends the live streams, which would hold the server's shutdown
        if (_sessions is not null)
        {
            await _sessions.ShutdownAsync(bound.Token);
        }

        if (_mcp is not null)
        {
            try
            {
                await _mcp.StopAsync(bound.Token);
            }
            catch (OperationCanceledException)
            {
                // Past the bound: stdio servers are left to their transport's own shutdown.
            }
        }

        if (_llm is not null)
        {
            await _llm.DisposeAsync();
        }

        try
        {
            await _app.StopAsync(bound.Token);
        }
        catch (OperationCanceledException)
        {
            // Past the bound: connections are cut.
        }

        await _app.DisposeAsync();
        if (_audit is not null)
        {
            await _audit.DisposeAsync(); // the last records (unregistrations at shutdown) flushed, within its own bound
        }
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        _sessions?.Dispose();
        if (_runs is not null)
        {
            await _runs.DisposeAsync();
        }

        if (_streams is not null)
        {
            await _streams.DisposeAsync();
        }

        if (_idempotency is not null)
        {
            Broker.Idempotency = null;
            await _idempotency.DisposeAsync();
        }

        _coordinator?.Dispose();
        _dashboard?.Dispose();
        Bus.Dispose();
        _telemetry.Dispose();
    }

    internal static IPAddress ResolveAddress(string host) => host switch
    {
        "localhost" => IPAddress.Loopback,
        "*" or "0.0.0.0" => IPAddress.Any,
        _ => IPAddress.TryParse(host, out var ip) ? ip : throw new ArgumentException($"Host '{host}' is not an IP address; use an address such as 127.0.0.1 or 0.0.0.0.", nameof(host)),
    };

    /// <summary>The host of the connect addresses: a wildcard bind is reached on the loopback address of its family.</summary>
    private static string FormatHost(string host) => host switch
    {
        "*" or "0.0.0.0" or "localhost" => "127.0.0.1",
        "::" => "[::1]",
        _ when host.Contains(':', StringComparison.Ordinal) => $"[{host}]",
        _ => host,
    };
}

internal sealed record HealthReport(string Status, int Agents);

[System.Text.Json.Serialization.JsonSerializable(typeof(HealthReport))]
[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class HealthJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
