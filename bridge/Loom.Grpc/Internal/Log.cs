using Microsoft.Extensions.Logging;

namespace Loom.Grpc.Internal;

internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Error, "Exception was thrown by the handler of {Method}.")]
    public static partial void HandlerFailed(ILogger logger, string method, Exception exception);

    [LoggerMessage(2, LogLevel.Debug, "Call {Method} was cancelled or reset by the client.")]
    public static partial void ClientCancelled(ILogger logger, string method);

    [LoggerMessage(3, LogLevel.Debug, "Call {Method} exceeded its deadline.")]
    public static partial void DeadlineExceeded(ILogger logger, string method);

    [LoggerMessage(4, LogLevel.Debug, "Rejected gRPC request {Path}: {Status} {Detail}")]
    public static partial void Rejected(ILogger logger, string path, GrpcStatusCode status, string detail);

    [LoggerMessage(5, LogLevel.Debug, "Rejected HTTP request {Method} {Path}: HTTP {HttpStatus} {Reason}")]
    public static partial void RejectedHttp(ILogger logger, string method, string path, int httpStatus, string reason);

    [LoggerMessage(6, LogLevel.Warning, "Dropped trailer {Name} of call {Method}: the name or value cannot be sent over HTTP/2.")]
    public static partial void InvalidTrailer(ILogger logger, string name, string method);

    [LoggerMessage(7, LogLevel.Debug, "Call {Method} ended with {Status}: {Detail}")]
    public static partial void CallFailed(ILogger logger, string method, GrpcStatusCode status, string detail);
}
