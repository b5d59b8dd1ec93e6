using Microsoft.Extensions.Logging;

namespace Loom.Streams.Internal;

internal static partial class Log
{
    [LoggerMessage(7001, LogLevel.Warning, "Stream log {Directory}: segment {Segment} has a bad record at byte {Offset} ({Reason}); cutting {Bytes} bytes from there (records after sequence {LastGood} in that segment are lost).")]
    public static partial void TailCut(ILogger logger, string directory, string segment, long offset, string reason, long bytes, long lastGood);

    [LoggerMessage(7002, LogLevel.Information, "Stream log {Directory} opened: sequences {First}..{Last}, {Segments} segments, {Bytes} bytes, in {ElapsedMs} ms.")]
    public static partial void Opened(ILogger logger, string directory, long first, long last, int segments, long bytes, long elapsedMs);

    [LoggerMessage(7003, LogLevel.Information, "Stream log {Directory}: retention removed segment {Segment} ({Records} records, {Bytes} bytes): {Why}.")]
    public static partial void SegmentRemoved(ILogger logger, string directory, string segment, long records, long bytes, string why);

    [LoggerMessage(7004, LogLevel.Error, "Stream log {Directory}: a commit failed; appends waiting on it fail.")]
    public static partial void CommitFailed(ILogger logger, Exception exception, string directory);
}
