using Grpc.Core;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>Maps Loom's error taxonomy onto gRPC statuses at the edge: the status code, the message, and Loom's code (and path) in trailers.</summary>
internal static class StatusMapping
{
    public const string ErrorCodeTrailer = "loom-error-code";
    public const string ErrorPathTrailer = "loom-error-path";

    /// <summary>
    /// Longest status message: it travels in a trailer, and one that quotes a huge client string
    /// (a 200 KB pattern) would pass the client's header limit and turn INVALID_PARAMS into UNAVAILABLE.
    /// </summary>
    public const int MaxDetailLength = 2048;

    /// <summary>A status with <paramref name="detail"/> and Loom's <paramref name="code"/> in the trailers.</summary>
    public static RpcException Status(StatusCode status, string detail, ErrorCode code) =>
        new(new Status(status, Cut(detail)), new Metadata { { ErrorCodeTrailer, ErrorCodes.Name(code) } });

    public static RpcException ToStatus(Error error)
    {
        var trailers = new Metadata { { ErrorCodeTrailer, ErrorCodes.Name(error.Code) } };
        // A metadata value is printable ASCII; a path that is not stays in the message only.
        if (!string.IsNullOrEmpty(error.Path) && error.Path.AsSpan().IndexOfAnyExceptInRange(' ', '~') < 0)
        {
            trailers.Add(ErrorPathTrailer, error.Path);
        }

        return new RpcException(new Status((StatusCode)ErrorCodes.ToGrpcStatus(error.Code), Cut(error.Message)), trailers);
    }

    private static string Cut(string detail) =>
        detail.Length <= MaxDetailLength ? detail : string.Concat(detail.AsSpan(0, MaxDetailLength), $"…({detail.Length - MaxDetailLength} more characters)");

    public static RpcException ToStatus(LoomException exception) => ToStatus(exception.ToError());
}
