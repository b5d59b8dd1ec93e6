using Loom.Core;
using Loom.Grpc;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>Maps Loom's error taxonomy onto gRPC statuses at the edge.</summary>
internal static class StatusMapping
{
    public const string ErrorCodeTrailer = "loom-error-code";
    public const string ErrorPathTrailer = "loom-error-path";

    public static Dictionary<string, string> CodeTrailer(ErrorCode code) =>
        new(StringComparer.Ordinal) { [ErrorCodeTrailer] = ErrorCodes.Name(code) };

    public static GrpcStatusException ToStatus(Error error)
    {
        var trailers = CodeTrailer(error.Code);
        if (!string.IsNullOrEmpty(error.Path))
        {
            trailers[ErrorPathTrailer] = error.Path;
        }

        return new GrpcStatusException((GrpcStatusCode)ErrorCodes.ToGrpcStatus(error.Code), error.Message, trailers);
    }

    public static GrpcStatusException ToStatus(LoomException exception) => ToStatus(exception.ToError());
}
