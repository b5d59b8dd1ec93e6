using Loom.Core;
using Loom.Core.Collaboration;
using Grpc.Core;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>
/// The gRPC face of the collaboration operations (loom.v1.Collaboration): Gather, Barrier and
/// ContractNet, each a unary call run by the core's <see cref="Coordinator"/>. The caller's
/// session goes in the request body; the gRPC deadline caps the operation's timeout and a client
/// cancel cancels it (outstanding capability calls receive CancelCall).
/// </summary>
internal sealed class CollaborationService(SessionRegistry sessions, Coordinator coordinator, BridgeOptions options) : CollaborationServiceBase
{
    public const string ServiceName = "loom.v1.Collaboration";

    public override Task<GatherResult> Gather(GatherRequest r, ServerCallContext c) =>
        RunAsync(r.SessionId, c, r.TimeoutMs, ms => r.TimeoutMs = ms, coordinator.Options.DefaultTimeout, caller => coordinator.GatherAsync(r, caller, c.CancellationToken), "gather",
            r.Topic.Length != 0 ? (PermissionAction.Publish, r.Topic) : (PermissionAction.Call, r.Capability));

    public override Task<BarrierResult> Barrier(BarrierRequest r, ServerCallContext c) =>
        RunAsync(r.SessionId, c, r.TimeoutMs, ms => r.TimeoutMs = ms, coordinator.Options.DefaultTimeout, caller =>
        {
            // With auth on, one arrives as oneself only: naming another participant is refused.
            if (options.Auth != AuthMode.Off && !r.Observe && r.Participant.Length != 0 && r.Participant != caller)
            {
                throw sessions.Denied(PermissionAction.Collaboration, new PermissionDeniedException(
                    $"{(AuthInterceptor.IdentityOf(c) is { } who ? $"Identity '{who}'" : "An anonymous caller")} (agent '{caller}') may not arrive at barrier '{r.BarrierId}' as '{r.Participant}': with auth on, a participant arrives as its own agent id (leave participant empty, or observe)."), c, $"barrier:{r.BarrierId}", caller);
            }

            return coordinator.BarrierAsync(r, caller, c.CancellationToken);
        }, "barrier");

    public override Task<ContractNetResult> ContractNet(ContractNetRequest r, ServerCallContext c) =>
        RunAsync(r.SessionId, c, r.TimeoutMs, ms => r.TimeoutMs = ms, coordinator.Options.DefaultContractNetTimeout, caller => coordinator.ContractNetAsync(r, caller, c.CancellationToken), "contract_net",
            (PermissionAction.Call, r.Capability),
            r.Bids.Count == 0 ? (PermissionAction.Publish, r.Topic.Length != 0 ? r.Topic : (r.ThreadId.Length != 0 ? r.ThreadId : r.OpId) is { Length: > 0 } thread ? $"thread.{thread}.broadcast" : "") : null);

    private async Task<TResult> RunAsync<TResult>(string sessionId, ServerCallContext context, uint timeoutMs, Action<uint> setTimeout, TimeSpan fallback, Func<string, Task<TResult>> run, string operation, params (PermissionAction Action, string Target)?[] alsoNeeds)
    {
        // The operation itself, then what it does on the caller's behalf (publish the request, call the capability).
        var policy = AuthInterceptor.PolicyOf(context);
        if (!policy.IsUnrestricted)
        {
            if (policy.Check(PermissionAction.Collaboration, operation) is { } refusal)
            {
                throw StatusMapping.ToStatus(sessions.Denied(PermissionAction.Collaboration, refusal, context, operation));
            }

            foreach (var need in alsoNeeds)
            {
                if (need is { } n && n.Target.Length != 0 && policy.Check(n.Action, n.Target) is { } denied)
                {
                    throw StatusMapping.ToStatus(sessions.Denied(n.Action, denied, context, n.Target));
                }
            }
        }

        if (sessions.IsShuttingDown)
        {
            throw StatusMapping.ToStatus(new LoomException(ErrorCode.Unavailable, "The bridge is shutting down; retry with another bridge."));
        }

        var caller = "anonymous";
        if (!string.IsNullOrEmpty(sessionId))
        {
            if (!sessions.TryGetBySession(sessionId, out var session))
            {
                throw StatusMapping.Status(StatusCode.Unauthenticated, $"Session '{sessionId}' is unknown or has expired; call RegisterAgent again.", ErrorCode.SessionNotFound);
            }

            BridgeService.CheckOwner(session, context, sessions);
            caller = session.AgentId;
            session.MarkContact();
        }

        // A gather or contract-net calls on the caller's behalf: one call against its calls_per_second.
        if (operation != "barrier" && sessions.Quotas.For(policy)?.Call(operation) is { } limited)
        {
            throw StatusMapping.ToStatus(sessions.LimitHit("calls_per_second", operation, operation, limited, context, caller == "anonymous" ? null : caller));
        }

        // The gRPC deadline caps the operation's own deadline, with a little room to send the result.
        if (BridgeService.DeadlineOf(context) is { } deadline)
        {
            var wanted = timeoutMs == 0 ? fallback : TimeSpan.FromMilliseconds(timeoutMs);
            var left = deadline - DateTimeOffset.UtcNow - TimeSpan.FromMilliseconds(50);
            if (left < wanted)
            {
                setTimeout((uint)Math.Max(1, left.TotalMilliseconds));
            }
        }

        try
        {
            var result = await run(caller);
            context.CancellationToken.ThrowIfCancellationRequested();
            return result;
        }
        catch (LoomException ex)
        {
            throw StatusMapping.ToStatus(ex);
        }
    }
}

/// <summary>
/// Binds loom.v1.Collaboration for grpc-dotnet with Loom's marshallers (<see cref="WireMethods"/>). grpc-dotnet
/// calls <see cref="BindService"/> without an instance and resolves each handler as the override of the
/// abstract method of the same name, as it does for generated service bases.
/// </summary>
[BindServiceMethod(typeof(CollaborationServiceBase), nameof(BindService))]
internal abstract class CollaborationServiceBase
{
    /// <summary>Read by gRPC server reflection.</summary>
    public static Google.Protobuf.Reflection.ServiceDescriptor Descriptor => Protocol.V1.Collaboration.Descriptor;

    public abstract Task<GatherResult> Gather(GatherRequest request, ServerCallContext context);

    public abstract Task<BarrierResult> Barrier(BarrierRequest request, ServerCallContext context);

    public abstract Task<ContractNetResult> ContractNet(ContractNetRequest request, ServerCallContext context);

    public static void BindService(ServiceBinderBase binder, CollaborationServiceBase? service)
    {
        ArgumentNullException.ThrowIfNull(binder);
        binder.AddMethod(WireMethods.Gather, service is null ? null : service.Gather);
        binder.AddMethod(WireMethods.Barrier, service is null ? null : service.Barrier);
        binder.AddMethod(WireMethods.ContractNet, service is null ? null : service.ContractNet);
    }
}
