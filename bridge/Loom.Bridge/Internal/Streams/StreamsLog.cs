using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Streams;

internal static partial class StreamsLog
{
    [LoggerMessage(7101, LogLevel.Information, "Durable stream {Stream} ready: subjects {Subjects}, sequences {First}..{Last}, {Consumers} consumers, {Ids} message ids in the dedup window.")]
    public static partial void StreamOpened(ILogger logger, string stream, string subjects, long first, long last, int consumers, int ids);

    [LoggerMessage(7102, LogLevel.Warning, "Consumer {Consumer} of stream {Stream}: event {Sequence} was delivered {Deliveries} times without an ack; sent to dead-letter topic {Topic}.")]
    public static partial void DeadLettered(ILogger logger, string consumer, string stream, long sequence, int deliveries, string topic);

    [LoggerMessage(7103, LogLevel.Warning, "Consumer state file {Path} is unreadable ({Reason}); the consumer starts again from its deliver policy.")]
    public static partial void ConsumerStateUnreadable(ILogger logger, string path, string reason);

    [LoggerMessage(7104, LogLevel.Error, "Consumer {Consumer} of stream {Stream} failed; it stops delivering until attached again.")]
    public static partial void ConsumerFailed(ILogger logger, Exception exception, string consumer, string stream);

    [LoggerMessage(7105, LogLevel.Warning, "Stored event {Sequence} of stream {Stream} cannot be decoded; skipped.")]
    public static partial void UndecodableEvent(ILogger logger, string stream, long sequence);

    [LoggerMessage(7106, LogLevel.Error, "Saving the state of consumer {Consumer} of stream {Stream} failed; retried on the next change.")]
    public static partial void ConsumerSaveFailed(ILogger logger, Exception exception, string consumer, string stream);

    [LoggerMessage(7107, LogLevel.Information, "Durable stream {Stream} created at run time: subjects {Subjects}.")]
    public static partial void StreamCreated(ILogger logger, string stream, string subjects);

    [LoggerMessage(7108, LogLevel.Information, "Durable stream {Stream} deleted with its events and consumers.")]
    public static partial void StreamDeleted(ILogger logger, string stream);

    [LoggerMessage(7109, LogLevel.Warning, "The files of deleted stream {Stream} under {Directory} could not all be removed: {Reason}.")]
    public static partial void StreamFilesNotDeleted(ILogger logger, string stream, string directory, string reason);

    [LoggerMessage(7110, LogLevel.Warning, "Stream {Stream} in streams.json (created at run time) is also defined in loom.yaml; the loom.yaml definition is used.")]
    public static partial void CreatedStreamShadowed(ILogger logger, string stream);
}
