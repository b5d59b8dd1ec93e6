using Loom.Core;
using Loom.Core.Collaboration;
using Loom.Grpc;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>
/// The gRPC face of the collaboration operations (loom.v1.Collaboration): Gather, Barrier and
/// ContractNet, each a unary call run by the core's <see cref="Coordinator"/>. The caller's
/// session goes in the request body; the gRPC deadline caps the operation's timeout and a client
/// cancel cancels it (outstanding capability calls receive CancelCall).
/// </summary>
internal sealed class CollaborationService(SessionRegistry sessions, Coordinator coordinator)
{
    public const string ServiceName = "loom.v1.Collaboration";

    public void Register(GrpcServiceRegistry registry)
    {
        registry.AddUnary<GatherRequest, GatherResult>(ServiceName, "Gather", GatherRequest.Parser, (r, c) =>
            RunAsync(r.SessionId, c, r.TimeoutMs, ms => r.TimeoutMs = ms, coordinator.Options.DefaultTimeout, caller => coordinator.GatherAsync(r, caller, c.CancellationToken)));
        registry.AddUnary<BarrierRequest, BarrierResult>(ServiceName, "Barrier", BarrierRequest.Parser, (r, c) =>
            RunAsync(r.SessionId, c, r.TimeoutMs, ms => r.TimeoutMs = ms, coordinator.Options.DefaultTimeout, caller => coordinator.BarrierAsync(r, caller, c.CancellationToken)));
        registry.AddUnary<ContractNetRequest, ContractNetResult>(ServiceName, "ContractNet", ContractNetRequest.Parser, (r, c) =>
            RunAsync(r.SessionId, c, r.TimeoutMs, ms => r.TimeoutMs = ms, coordinator.Options.DefaultContractNetTimeout, caller => coordinator.ContractNetAsync(r, caller, c.CancellationToken)));
    }

    private async Task<TResult> RunAsync<TResult>(string sessionId, GrpcServerCallContext context, uint timeoutMs, Action<uint> setTimeout, TimeSpan fallback, Func<string, Task<TResult>> run)
    {
        if (sessions.IsShuttingDown)
        {
            throw StatusMapping.ToStatus(new LoomException(ErrorCode.Unavailable, "The bridge is shutting down; retry with another bridge."));
        }

        var caller = "anonymous";
        if (!string.IsNullOrEmpty(sessionId))
        {
            if (!sessions.TryGetBySession(sessionId, out var session))
            {
                throw new GrpcStatusException(GrpcStatusCode.Unauthenticated, $"Session '{sessionId}' is unknown or has expired; call RegisterAgent again.", StatusMapping.CodeTrailer(ErrorCode.SessionNotFound));
            }

            caller = session.AgentId;
            session.MarkContact();
        }

        // The gRPC deadline caps the operation's own deadline, with a little room to send the result.
        if (context.Deadline is { } deadline)
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
