using Microsoft.Extensions.Logging;

namespace Loom.Sdk.Internal;

internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Agent {AgentId} registered: session {SessionId}, reconnected={Reconnected}, {Subscriptions} subscriptions, {Capabilities} capabilities, heartbeat {HeartbeatMs} ms")]
    public static partial void Registered(ILogger logger, string agentId, string sessionId, bool reconnected, int subscriptions, int capabilities, long heartbeatMs);

    [LoggerMessage(2, LogLevel.Warning, "Agent {AgentId} lost its stream: {Reason}; reconnecting")]
    public static partial void StreamLost(ILogger logger, string agentId, string reason);

    [LoggerMessage(3, LogLevel.Warning, "Agent {AgentId} reconnect attempt {Attempt} (after {DelayMs} ms) failed: {Reason}")]
    public static partial void ReconnectFailed(ILogger logger, string agentId, int attempt, long delayMs, string reason);

    [LoggerMessage(4, LogLevel.Error, "Agent {AgentId}: the connection supervisor failed; the connection will not reconnect")]
    public static partial void SupervisorFailed(ILogger logger, string agentId, Exception exception);

    [LoggerMessage(5, LogLevel.Warning, "Agent {AgentId}: stream loops did not stop within their bound")]
    public static partial void LoopsDidNotStop(ILogger logger, string agentId);

    [LoggerMessage(6, LogLevel.Information, "Agent {AgentId}: connection {Previous} -> {Status}")]
    public static partial void StatusChanged(ILogger logger, string agentId, ConnectionStatus previous, ConnectionStatus status);

    [LoggerMessage(7, LogLevel.Warning, "Agent {AgentId}: a StatusChanged handler threw")]
    public static partial void StatusHandlerFailed(ILogger logger, string agentId, Exception exception);

    [LoggerMessage(8, LogLevel.Debug, "Agent {AgentId}: delivery for unknown subscription {SubscriptionId} dropped")]
    public static partial void DeliveryUnrouted(ILogger logger, string agentId, string subscriptionId);

    [LoggerMessage(9, LogLevel.Debug, "Agent {AgentId}: unknown server message kind {Kind} ignored")]
    public static partial void UnknownServerMessage(ILogger logger, string agentId, int kind);

    [LoggerMessage(10, LogLevel.Debug, "Agent {AgentId}: {Kind} for {CorrelationId} arrived after its request gave up; dropped")]
    public static partial void LateResponse(ILogger logger, string agentId, string kind, string correlationId);

    [LoggerMessage(11, LogLevel.Warning, "Agent {AgentId}: the bridge reported {Code}: {Message}")]
    public static partial void SessionError(ILogger logger, string agentId, string code, string message);

    [LoggerMessage(12, LogLevel.Warning, "Agent {AgentId}: publish of envelope {EnvelopeId} rejected with {Code}: {Message}")]
    public static partial void PublishRejected(ILogger logger, string agentId, string envelopeId, string code, string message);

    [LoggerMessage(13, LogLevel.Warning, "Agent {AgentId}: {Count} messages were lost with a stream that broke while writing them")]
    public static partial void LostOnBreak(ILogger logger, string agentId, int count);

    [LoggerMessage(25, LogLevel.Warning, "Agent {AgentId}: {Count} queued messages were never sent: the connection closed first")]
    public static partial void UnsentOnClose(ILogger logger, string agentId, long count);

    [LoggerMessage(14, LogLevel.Warning, "Agent {AgentId}: the bridge pushed call {CallId} twice; the second is ignored")]
    public static partial void DuplicatePushedCall(ILogger logger, string agentId, string callId);

    [LoggerMessage(15, LogLevel.Warning, "Agent {AgentId}: capability {Capability} failed; answering TOOL_ERROR")]
    public static partial void CapabilityFailed(ILogger logger, string agentId, string capability, Exception exception);

    [LoggerMessage(16, LogLevel.Warning, "Agent {AgentId}: result of call {CallId} dropped: {Reason}")]
    public static partial void ResultDropped(ILogger logger, string agentId, string callId, string reason);

    [LoggerMessage(17, LogLevel.Debug, "Agent {AgentId}: late reply on {Topic} (correlation {CorrelationId}) dropped")]
    public static partial void LateReply(ILogger logger, string agentId, string topic, string correlationId);

    [LoggerMessage(18, LogLevel.Warning, "Agent {AgentId}: unsubscribing from {Pattern} failed: {Reason}")]
    public static partial void UnsubscribeFailed(ILogger logger, string agentId, string pattern, string reason);

    [LoggerMessage(19, LogLevel.Warning, "Agent {AgentId}: closing took longer than {BoundMs} ms; the stream is cut")]
    public static partial void DisposeTimedOut(ILogger logger, string agentId, long boundMs);

    [LoggerMessage(20, LogLevel.Error, "Agent {Owner}: handler of subscription {Pattern} threw; the subscription goes on")]
    public static partial void HandlerFailed(ILogger logger, string owner, string pattern, Exception exception);

    [LoggerMessage(21, LogLevel.Warning, "Agent {Owner}: slow subscriber on {Pattern}: the local queue of {Capacity} is full; policy {Policy} applies (drops are counted)")]
    public static partial void SlowSubscriber(ILogger logger, string owner, string pattern, int capacity, string policy);

    [LoggerMessage(22, LogLevel.Warning, "Agent {Owner}: subscription {Pattern} still had {Depth} deliveries queued when its drain bound passed")]
    public static partial void SubscriptionDrainTimedOut(ILogger logger, string owner, string pattern, int depth);

    [LoggerMessage(24, LogLevel.Warning, "Agent {AgentId}: the bridge did not know this agent (it restarted); holding {Queued} queued messages for {SettleMs} ms so that other agents subscribe again first")]
    public static partial void HoldingAfterRestart(ILogger logger, string agentId, int queued, long settleMs);

    [LoggerMessage(23, LogLevel.Warning, "Agent {AgentId}: publish on {Topic} not delivered: {Status}")]
    public static partial void PublishNotAccepted(ILogger logger, string agentId, string topic, string status);
}
