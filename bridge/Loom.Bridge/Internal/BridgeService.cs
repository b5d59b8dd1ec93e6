using Grpc.Core;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>
/// The gRPC face of the bridge: loom.v1.Bridge, served by Grpc.AspNetCore. The methods are bound
/// by <see cref="BridgeServiceBase"/> with Loom's marshallers (<see cref="WireMethods"/>); grpc-dotnet finds
/// each handler by its method name. One instance serves every call.
/// </summary>
internal sealed class BridgeService(SessionRegistry sessions, ActionBroker broker, BridgeOptions options) : BridgeServiceBase
{
    public const string ServiceName = "loom.v1.Bridge";
    public const string SessionHeader = "loom-session-id";

    public override Task<RegisterAgentResponse> RegisterAgent(RegisterAgentRequest request, ServerCallContext context)
    {
        try
        {
            return Task.FromResult(sessions.Register(request, AuthInterceptor.IdentityOf(context), AuthInterceptor.PolicyOf(context), context.Peer));
        }
        catch (LoomException ex)
        {
            // Logged by the registry, at a bounded rate.
            throw StatusMapping.ToStatus(ex);
        }
    }

    public override async Task EventStream(IAsyncStreamReader<ClientFrame> requests, IServerStreamWriter<FrameEncoder> responses, ServerCallContext context)
    {
        var sessionId = context.RequestHeaders.GetValue(SessionHeader);
        if (string.IsNullOrEmpty(sessionId))
        {
            throw StatusMapping.Status(StatusCode.Unauthenticated, $"EventStream needs the metadata header '{SessionHeader}' with the session id from RegisterAgent.", ErrorCode.SessionNotFound);
        }

        if (!sessions.TryGetBySession(sessionId, out var session))
        {
            throw StatusMapping.Status(StatusCode.Unauthenticated, $"Session '{sessionId}' is unknown or has expired; call RegisterAgent again.", ErrorCode.SessionNotFound);
        }

        CheckOwner(session, context, sessions);

        // Headers go out at once: a client waits for them to know the stream is open (grpc-dotnet would hold them until the first message).
        await context.WriteResponseHeadersAsync([]);
        await session.RunStreamAsync(requests, responses, context.CancellationToken);
    }

    public override async Task<ForwardActionResponse> ForwardAction(ForwardActionRequest request, ServerCallContext context)
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
                throw StatusMapping.Status(StatusCode.Unauthenticated, $"Session '{request.SessionId}' is unknown or has expired.", ErrorCode.SessionNotFound);
            }

            CheckOwner(session, context, sessions);
            caller = session.AgentId;
            session.MarkContact();
        }

        // After the session's owner: a leaked session id is refused as such, whatever the caller may call.
        var policy = AuthInterceptor.PolicyOf(context);
        if (policy.Check(PermissionAction.Call, request.Call.Capability) is { } refusal)
        {
            throw StatusMapping.ToStatus(sessions.Denied(PermissionAction.Call, refusal, context, request.Call.Capability, caller == "anonymous" ? null : caller));
        }

        if (sessions.Quotas.For(policy)?.Call(request.Call.Capability) is { } limited)
        {
            throw StatusMapping.ToStatus(sessions.LimitHit("calls_per_second", "call", request.Call.Capability, limited, context, caller == "anonymous" ? null : caller));
        }

        var actionRequest = ToActionRequest(request.Call, caller, DeadlineOf(context), AuthInterceptor.IdentityOf(context));
        var outcome = await broker.InvokeAsync(actionRequest, context.CancellationToken);
        if (outcome.Error is { } error)
        {
            if (error.Code == ErrorCode.Cancelled && context.CancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(context.CancellationToken);
            }

            throw StatusMapping.ToStatus(error);
        }

        if (outcome.OutputJson.Length > options.MaxForwardedBytes)
        {
            // Said plainly, rather than the transport's bare "exceeds the maximum configured message size".
            throw StatusMapping.ToStatus(new ResourceExhaustedException($"The output of '{request.Call.Capability}' is {outcome.OutputJson.Length} bytes, over the {options.MaxForwardedBytes}-byte limit of what the bridge forwards (max_message_bytes, {options.MaxMessageBytes}, less room for framing)."));
        }

        return new ForwardActionResponse
        {
            OutputJson = Google.Protobuf.ByteString.CopyFrom(outcome.OutputJson.Span),
            Provider = outcome.AgentId ?? string.Empty,
            DurationUs = (ulong)(outcome.Duration.Ticks / 10),
        };
    }

    public override Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        if (!sessions.TryGetBySession(request.SessionId, out var owned))
        {
            throw StatusMapping.Status(StatusCode.Unauthenticated, $"Session '{request.SessionId}' is unknown or has expired; call RegisterAgent again.", ErrorCode.SessionNotFound);
        }

        CheckOwner(owned, context, sessions);
        if (sessions.Heartbeat(request.SessionId) is not { } session)
        {
            throw StatusMapping.Status(StatusCode.Unauthenticated, $"Session '{request.SessionId}' is unknown or has expired; call RegisterAgent again.", ErrorCode.SessionNotFound);
        }

        return Task.FromResult(new HeartbeatResponse { HeartbeatIntervalMs = (uint)session.HeartbeatInterval.TotalMilliseconds, ServerUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() });
    }

    /// <summary>A session bound to an identity is used by that identity only (its stream, its calls, its heartbeats).</summary>
    public static void CheckOwner(AgentSession session, ServerCallContext context, SessionRegistry sessions)
    {
        if (session.Identity is { } owner && owner != AuthInterceptor.IdentityOf(context))
        {
            var message = $"Agent '{session.AgentId}' belongs to identity '{owner}'; this call is {(AuthInterceptor.IdentityOf(context) is { } other ? $"from identity '{other}'" : "anonymous")}. Use that agent's own credential.";
            sessions.AuditRefusal("use_session", message, context, session.AgentId, session.SessionId);
            throw StatusMapping.ToStatus(new PermissionDeniedException(message));
        }
    }

    /// <summary>The call's deadline, or null when the client set none (grpc-dotnet reports none as <see cref="DateTime.MaxValue"/>).</summary>
    public static DateTimeOffset? DeadlineOf(ServerCallContext context) =>
        context.Deadline == DateTime.MaxValue ? null : new DateTimeOffset(context.Deadline, TimeSpan.Zero);

    /// <summary>The broker's request for a call; <paramref name="identity"/> (the authenticated one, if any) scopes its idempotency key, else the caller does.</summary>
    public static ActionRequest ToActionRequest(ActionCall call, string caller, DateTimeOffset? deadline = null, string? identity = null)
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
            IdempotencyKey = call.IdempotencyKey.Length == 0 ? null : call.IdempotencyKey,
            IdempotencyScope = call.IdempotencyKey.Length == 0 ? null : identity is null ? "agent:" + caller : "identity:" + identity,
        };
    }
}

/// <summary>
/// Binds loom.v1.Bridge for grpc-dotnet with Loom's marshallers (<see cref="WireMethods"/>). grpc-dotnet
/// calls <see cref="BindService"/> without an instance and resolves each handler as the override of the
/// abstract method of the same name, as it does for generated service bases.
/// </summary>
[BindServiceMethod(typeof(BridgeServiceBase), nameof(BindService))]
internal abstract class BridgeServiceBase
{
    /// <summary>Read by gRPC server reflection.</summary>
    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor => Protocol.V1.Bridge.Descriptor;

    public abstract Task<RegisterAgentResponse> RegisterAgent(RegisterAgentRequest request, ServerCallContext context);

    public abstract Task EventStream(IAsyncStreamReader<ClientFrame> requests, IServerStreamWriter<FrameEncoder> responses, ServerCallContext context);

    public abstract Task<ForwardActionResponse> ForwardAction(ForwardActionRequest request, ServerCallContext context);

    public abstract Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, BridgeServiceBase? service)
    {
        ArgumentNullException.ThrowIfNull(binder);
        binder.AddMethod(WireMethods.RegisterAgent, service is null ? null : service.RegisterAgent);
        binder.AddMethod(WireMethods.EventStream, service is null ? null : service.EventStream);
        binder.AddMethod(WireMethods.ForwardAction, service is null ? null : service.ForwardAction);
        binder.AddMethod(WireMethods.Heartbeat, service is null ? null : service.Heartbeat);
    }
}
