using Grpc.Health.V1;
using Loom.Core;
using Loom.Grpc;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

/// <summary>The gRPC face of the bridge: loom.v1.Bridge and grpc.health.v1.Health.</summary>
internal sealed class BridgeService(SessionRegistry sessions, ActionBroker broker, ILogger logger)
{
    public const string ServiceName = "loom.v1.Bridge";
    public const string SessionHeader = "loom-session-id";

    public void Register(GrpcServiceRegistry registry)
    {
        registry.AddUnary<RegisterAgentRequest, RegisterAgentResponse>(ServiceName, "RegisterAgent", RegisterAgentRequest.Parser, RegisterAgentAsync);
        registry.AddDuplexStreaming<ClientFrame, ServerFrame>(ServiceName, "EventStream", ClientFrame.Parser, EventStreamAsync);
        registry.AddUnary<ForwardActionRequest, ForwardActionResponse>(ServiceName, "ForwardAction", ForwardActionRequest.Parser, ForwardActionAsync);
        registry.AddUnary<HeartbeatRequest, HeartbeatResponse>(ServiceName, "Heartbeat", HeartbeatRequest.Parser, HeartbeatAsync);
        registry.AddUnary<HealthCheckRequest, HealthCheckResponse>("grpc.health.v1.Health", "Check", HealthCheckRequest.Parser, HealthCheckAsync);
        registry.AddServerStreaming<HealthCheckRequest, HealthCheckResponse>("grpc.health.v1.Health", "Watch", HealthCheckRequest.Parser, HealthWatchAsync);
    }

    private Task<RegisterAgentResponse> RegisterAgentAsync(RegisterAgentRequest request, GrpcServerCallContext context)
    {
        try
        {
            return Task.FromResult(sessions.Register(request));
        }
        catch (LoomException ex)
        {
            Log.RegistrationRejected(logger, request.AgentId, ex.Message);
            throw StatusMapping.ToStatus(ex);
        }
    }

    private Task EventStreamAsync(IGrpcStreamReader<ClientFrame> reader, IGrpcStreamWriter<ServerFrame> writer, GrpcServerCallContext context)
    {
        var sessionId = context.GetHeader(SessionHeader);
        if (string.IsNullOrEmpty(sessionId))
        {
            throw new GrpcStatusException(GrpcStatusCode.Unauthenticated, $"EventStream needs the metadata header '{SessionHeader}' with the session id from RegisterAgent.", StatusMapping.CodeTrailer(ErrorCode.SessionNotFound));
        }

        if (!sessions.TryGetBySession(sessionId, out var session))
        {
            throw new GrpcStatusException(GrpcStatusCode.Unauthenticated, $"Session '{sessionId}' is unknown or has expired; call RegisterAgent again.", StatusMapping.CodeTrailer(ErrorCode.SessionNotFound));
        }

        return session.RunStreamAsync(reader, writer, context.CancellationToken);
    }

    private async Task<ForwardActionResponse> ForwardActionAsync(ForwardActionRequest request, GrpcServerCallContext context)
    {
        if (request.Call is null || string.IsNullOrEmpty(request.Call.Capability))
        {
            throw StatusMapping.ToStatus(new InvalidParamsException("ForwardAction needs call.capability: the name of the capability to call.", "/call/capability"));
        }

        if (sessions.IsShuttingDown)
        {
            throw StatusMapping.ToStatus(new LoomException(ErrorCode.Unavailable, "The bridge is shutting down; retry with another bridge."));
        }

        var caller = "anonymous";
        if (!string.IsNullOrEmpty(request.SessionId))
        {
            if (!sessions.TryGetBySession(request.SessionId, out var session))
            {
                throw new GrpcStatusException(GrpcStatusCode.Unauthenticated, $"Session '{request.SessionId}' is unknown or has expired.", StatusMapping.CodeTrailer(ErrorCode.SessionNotFound));
            }

            caller = session.AgentId;
            session.MarkContact();
        }

        var actionRequest = ToActionRequest(request.Call, caller, context.Deadline);
        var outcome = await broker.InvokeAsync(actionRequest, context.CancellationToken);
        if (outcome.Error is { } error)
        {
            if (error.Code == ErrorCode.Cancelled && context.CancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(context.CancellationToken);
            }

            throw StatusMapping.ToStatus(error);
        }

        return new ForwardActionResponse
        {
            OutputJson = Google.Protobuf.ByteString.CopyFrom(outcome.OutputJson.Span),
            Provider = outcome.AgentId ?? string.Empty,
            DurationUs = (ulong)(outcome.Duration.Ticks / 10),
        };
    }

    private Task<HeartbeatResponse> HeartbeatAsync(HeartbeatRequest request, GrpcServerCallContext context)
    {
        if (sessions.Heartbeat(request.SessionId) is not { } session)
        {
            throw new GrpcStatusException(GrpcStatusCode.Unauthenticated, $"Session '{request.SessionId}' is unknown or has expired; call RegisterAgent again.", StatusMapping.CodeTrailer(ErrorCode.SessionNotFound));
        }

        return Task.FromResult(new HeartbeatResponse { HeartbeatIntervalMs = (uint)session.HeartbeatInterval.TotalMilliseconds, ServerUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() });
    }

    private HealthCheckResponse.Types.ServingStatus StatusOf(string service) => service switch
    {
        "" or ServiceName => sessions.IsShuttingDown ? HealthCheckResponse.Types.ServingStatus.NotServing : HealthCheckResponse.Types.ServingStatus.Serving,
        _ => HealthCheckResponse.Types.ServingStatus.ServiceUnknown,
    };

    private Task<HealthCheckResponse> HealthCheckAsync(HealthCheckRequest request, GrpcServerCallContext context)
    {
        var status = StatusOf(request.Service);
        if (status == HealthCheckResponse.Types.ServingStatus.ServiceUnknown)
        {
            throw new GrpcStatusException(GrpcStatusCode.NotFound, $"Unknown service '{request.Service}'; this server serves '{ServiceName}'.");
        }

        return Task.FromResult(new HealthCheckResponse { Status = status });
    }

    private async Task HealthWatchAsync(HealthCheckRequest request, IGrpcStreamWriter<HealthCheckResponse> writer, GrpcServerCallContext context)
    {
        var last = (HealthCheckResponse.Types.ServingStatus)(-1);
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(500));
        do
        {
            var status = StatusOf(request.Service);
            if (status != last)
            {
                await writer.WriteAsync(new HealthCheckResponse { Status = status }, context.CancellationToken);
                last = status;
            }
        }
        while (await timer.WaitForNextTickAsync(context.CancellationToken));
    }

    public static ActionRequest ToActionRequest(ActionCall call, string caller, DateTimeOffset? deadline = null)
    {
        TimeSpan? timeout = call.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(call.TimeoutMs) : null;
        if (deadline is { } d)
        {
            var remaining = d - DateTimeOffset.UtcNow;
            if (remaining < TimeSpan.Zero)
            {
                remaining = TimeSpan.Zero;
            }

            timeout = timeout is { } t && t < remaining ? t : remaining;
        }

        return new ActionRequest
        {
            Capability = call.Capability,
            Version = string.IsNullOrEmpty(call.Version) ? null : call.Version,
            InputJson = call.InputJson.Memory,
            Timeout = timeout,
            Caller = caller,
            ThreadId = call.ThreadId,
            Traceparent = call.Traceparent,
            Tracestate = call.Headers.TryGetValue(LoomTelemetry.TracestateHeader, out var tracestate) ? tracestate : "",
            Policy = call.Routing,
            TargetAgent = string.IsNullOrEmpty(call.TargetAgent) ? null : call.TargetAgent,
            CallId = call.CallId,
            Headers = call.Headers.Count == 0 ? null : new Dictionary<string, string>(call.Headers, StringComparer.Ordinal),
        };
    }
}
