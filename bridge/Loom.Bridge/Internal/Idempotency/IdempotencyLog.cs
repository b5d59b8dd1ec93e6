using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Idempotency;

internal static partial class IdempotencyLog
{
    [LoggerMessage(7201, LogLevel.Information, "Idempotency store ready: {Keys} keys within the {WindowHours} h window (log sequences {First}..{Last}).")]
    public static partial void Ready(ILogger logger, int keys, long first, long last, double windowHours);

    [LoggerMessage(7202, LogLevel.Warning, "Storing the result of a call with an idempotency key (answered by {Agent}) failed; a retry with that key runs the call again.")]
    public static partial void StoreFailed(ILogger logger, Exception exception, string agent);

    [LoggerMessage(7203, LogLevel.Warning, "Idempotency record {Sequence} cannot be decoded; skipped.")]
    public static partial void Undecodable(ILogger logger, long sequence);
}
