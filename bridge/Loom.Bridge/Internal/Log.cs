using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Agent {AgentId} ({Name}, {Sdk}) registered: session {SessionId}, {Subscriptions} subscriptions, {Capabilities} capabilities, reconnected={Reconnected}")]
    public static partial void AgentRegistered(ILogger logger, string agentId, string name, string sdk, string sessionId, int subscriptions, int capabilities, bool reconnected);

    [LoggerMessage(2, LogLevel.Warning, "Agent {AgentId} removed: {Reason}")]
    public static partial void AgentExpired(ILogger logger, string agentId, string reason);

    [LoggerMessage(3, LogLevel.Information, "Agent {AgentId} left")]
    public static partial void AgentLeft(ILogger logger, string agentId);

    [LoggerMessage(4, LogLevel.Warning, "Agent {AgentId} is not reading its stream: {Capacity} replies are waiting; ending the stream")]
    public static partial void SlowReader(ILogger logger, string agentId, int capacity);

    [LoggerMessage(5, LogLevel.Debug, "Agent {AgentId} sent a result for call {CallId}, which is no longer pending (late or cancelled); dropped")]
    public static partial void LateResult(ILogger logger, string agentId, string callId);

    [LoggerMessage(6, LogLevel.Warning, "Stream write to agent {AgentId} failed: {Reason}")]
    public static partial void WriteLoopFailed(ILogger logger, string agentId, string reason);

    [LoggerMessage(7, LogLevel.Warning, "Slow consumer: subscription {SubscriptionId} ({Pattern}) of {Owner} is {Depth}/{Capacity} full; policy {Policy} applies")]
    public static partial void SlowConsumer(ILogger logger, string subscriptionId, string pattern, string owner, int depth, int capacity, string policy);

    [LoggerMessage(8, LogLevel.Warning, "Registration of agent {AgentId} rejected: {Reason}")]
    public static partial void RegistrationRejected(ILogger logger, string agentId, string reason);

    [LoggerMessage(9, LogLevel.Information, "Tracing: exporting spans over OTLP to {Endpoint}")]
    public static partial void TracingOn(ILogger logger, string endpoint);

    [LoggerMessage(10, LogLevel.Warning, "Tracing: no spans are exported ({Reason})")]
    public static partial void TracingOff(ILogger logger, string reason);

    [LoggerMessage(11, LogLevel.Warning, "{Count} more '{Kind}' warnings were left out of the log (at most {Burst} are written per {IntervalSeconds} s)")]
    public static partial void WarningsLeftOut(ILogger logger, long count, string kind, int burst, double intervalSeconds);

    [LoggerMessage(12, LogLevel.Error, "The {Loop} failed; it runs again at its next tick")]
    public static partial void LoopFailed(ILogger logger, Exception exception, string loop);

    [LoggerMessage(13, LogLevel.Warning, "Listening on {GrpcEndPoint} (gRPC) and {HttpEndPoint} (HTTP), {Scope}. The bridge does not require authentication and TLS (--auth required, --tls-cert): whoever reaches these ports can register agents, call every capability and read and write memory. Bind 127.0.0.1 (loom up --host), or let only trusted peers through a firewall.")]
    public static partial void NotLoopback(ILogger logger, string grpcEndPoint, string httpEndPoint, string scope);

    [LoggerMessage(21, LogLevel.Information, "Dashboard call of {Capability} by {Identity}: {Result}")]
    public static partial void DashboardCall(ILogger logger, string capability, string identity, string result);
    [LoggerMessage(22, LogLevel.Warning, "The audit log {File} cannot be written ({Reason}); records are counted in loom_audit_dropped_total until it can")]
    public static partial void AuditFileFailed(ILogger logger, string file, string reason);

    [LoggerMessage(20, LogLevel.Warning, "A {Kind} message of {Bytes} bytes for agent {AgentId} is over the {Limit}-byte message limit: not sent")]
    public static partial void OversizedMessage(ILogger logger, string agentId, string kind, int bytes, int limit);
}
