using Microsoft.Extensions.Logging;

namespace Loom.Core.Collaboration.Internal;

internal static partial class CollabLog
{
    [LoggerMessage(4001, LogLevel.Debug, "Collaboration {Operation} {OpId} of {Caller} ended {Outcome} after {ElapsedMs} ms.")]
    public static partial void Ended(ILogger logger, string operation, string opId, string caller, string outcome, long elapsedMs);

    [LoggerMessage(4002, LogLevel.Debug, "Late reply from {Sender} to operation {OpId} dropped (the operation is over).")]
    public static partial void LateReply(ILogger logger, string sender, string opId);

    [LoggerMessage(4003, LogLevel.Warning, "Operation {OpId} received more than {Capacity} pending replies; further replies are dropped and counted.")]
    public static partial void ReplyOverflow(ILogger logger, string opId, int capacity);

    [LoggerMessage(4004, LogLevel.Error, "The collaboration reply pump failed; operations in flight will time out.")]
    public static partial void PumpFailed(ILogger logger, Exception exception);

    [LoggerMessage(4005, LogLevel.Warning, "Could not record the {Kind} event of operation {OpId} on {Topic}: {Message}")]
    public static partial void RecordFailed(ILogger logger, string kind, string opId, string topic, string message);

    [LoggerMessage(4006, LogLevel.Information, "Contract-net {OpId}: {Agent} failed ({Code}); falling back to the next bidder.")]
    public static partial void Fallback(ILogger logger, string opId, string agent, string code);
}
