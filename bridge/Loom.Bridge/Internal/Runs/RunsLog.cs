using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Runs;

internal static partial class RunsLog
{
    [LoggerMessage(7201, LogLevel.Information, "Run records {Where}: {Threads} threads, {Steps} steps (sequences {First}..{Last}) indexed in {ElapsedMs} ms.")]
    public static partial void Opened(ILogger logger, string where, int threads, long steps, long first, long last, long elapsedMs);

    [LoggerMessage(7202, LogLevel.Warning, "Run record {Sequence} cannot be decoded; skipped.")]
    public static partial void Undecodable(ILogger logger, long sequence);

    [LoggerMessage(7203, LogLevel.Error, "Writing run records failed; {Steps} steps are lost (counted as dropped).")]
    public static partial void WriteFailed(ILogger logger, Exception exception, int steps);

    [LoggerMessage(7204, LogLevel.Warning, "Run records: the queue is full ({Capacity} steps waiting); steps are dropped and counted in loom_run_records_dropped_total until it drains. This line is written at most once a minute.")]
    public static partial void QueueFull(ILogger logger, int capacity);

    [LoggerMessage(7205, LogLevel.Error, "The run records in {Directory} cannot be opened ({Reason}); runs are kept in memory instead.")]
    public static partial void OpenFailed(ILogger logger, string directory, string reason);
}
