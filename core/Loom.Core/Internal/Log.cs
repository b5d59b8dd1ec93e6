using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Core.Internal;

internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Warning, "Subscription {SubscriptionId} ({Pattern}) of {Owner} started dropping envelopes: {Reason}; depth {Depth}/{Capacity}, policy {Policy}. Further drops are counted until the queue drains below half.")]
    public static partial void DropEpisode(ILogger logger, string subscriptionId, string pattern, string owner, DropReason reason, int depth, int capacity, OverflowPolicy policy);

    [LoggerMessage(1002, LogLevel.Information, "Slow consumer: subscription {SubscriptionId} ({Pattern}) of {Owner} is {Depth}/{Capacity} full (policy {Policy}).")]
    public static partial void SlowConsumer(ILogger logger, string subscriptionId, string pattern, string owner, int depth, int capacity, OverflowPolicy policy);

    [LoggerMessage(1003, LogLevel.Error, "A SlowConsumer handler threw for subscription {SubscriptionId}.")]
    public static partial void SlowConsumerHandlerFailed(ILogger logger, Exception exception, string subscriptionId);

    [LoggerMessage(1004, LogLevel.Error, "The availability signal of subscription {SubscriptionId} threw; signals must not throw.")]
    public static partial void SignalFailed(ILogger logger, Exception exception, string subscriptionId);

    [LoggerMessage(1005, LogLevel.Warning, "The bus tracks {Limit} topics; statistics of further topics are pooled under '(other)' and their matches are not cached. First untracked topic: {Topic}.")]
    public static partial void TopicLimitReached(ILogger logger, int limit, string topic);

    [LoggerMessage(2001, LogLevel.Warning, "Capability {Capability} call {CallId} on provider {ProviderId} failed: {Code}: {Message}")]
    public static partial void CallFailed(ILogger logger, string capability, string callId, string providerId, string code, string message);

    [LoggerMessage(2002, LogLevel.Information, "Provider {ProviderId} is unavailable; it is skipped for {Cooldown}.")]
    public static partial void ProviderUnhealthy(ILogger logger, string providerId, TimeSpan cooldown);

    [LoggerMessage(2003, LogLevel.Warning, "Capability {Capability} provider {ProviderId} returned output that does not match its output schema: {Message}")]
    public static partial void OutputSchemaMismatch(ILogger logger, string capability, string providerId, string message);

    [LoggerMessage(2004, LogLevel.Debug, "Provider {ProviderId} kept running call {CallId} of {Capability} after the broker gave up on it; it ended with: {Error}")]
    public static partial void AbandonedCallFailed(ILogger logger, string providerId, string callId, string capability, string error);
}
