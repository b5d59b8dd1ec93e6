using Loom.Core;
using Loom.Grpc;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>Turns gRPC statuses and transport failures into typed <see cref="LoomException"/>s.</summary>
internal static class ErrorMapping
{
    public const string CodeTrailer = "loom-error-code";
    public const string PathTrailer = "loom-error-path";

    public static LoomException FromStatus(GrpcStatusException ex)
    {
        if (ex.Trailers.TryGetValue(CodeTrailer, out var name) && ErrorCodes.TryParse(name, out var code))
        {
            ex.Trailers.TryGetValue(PathTrailer, out var path);
            return Create(code, ex.Detail, path, ex);
        }

        var mapped = ex.Status switch
        {
            GrpcStatusCode.InvalidArgument => ErrorCode.InvalidParams,
            GrpcStatusCode.DeadlineExceeded => ErrorCode.Timeout,
            GrpcStatusCode.NotFound => ErrorCode.CapabilityNotFound,
            GrpcStatusCode.PermissionDenied => ErrorCode.PermissionDenied,
            GrpcStatusCode.ResourceExhausted => ErrorCode.ResourceExhausted,
            GrpcStatusCode.FailedPrecondition => ErrorCode.HopLimitExceeded,
            GrpcStatusCode.Unauthenticated => ErrorCode.SessionNotFound,
            GrpcStatusCode.Cancelled => ErrorCode.Cancelled,
            GrpcStatusCode.Internal or GrpcStatusCode.Unimplemented or GrpcStatusCode.DataLoss => ErrorCode.Internal,
            _ => ErrorCode.Unavailable,
        };
        return Create(mapped, string.IsNullOrEmpty(ex.Detail) ? ex.Status.ToString() : ex.Detail, null, ex);
    }

    /// <summary>Any failure of a bridge call, as a typed Loom error.</summary>
    public static LoomException FromTransport(Exception ex, Uri address) => ex switch
    {
        LoomException loom => loom,
        GrpcStatusException status => FromStatus(status),
        _ => new LoomException(ErrorCode.Unavailable, $"Cannot reach the bridge at {address}: {ex.Message}", null, ex),
    };

    public static LoomException Create(ErrorCode code, string message, string? path = null, Exception? inner = null) => code switch
    {
        ErrorCode.InvalidParams => new InvalidParamsException(message, path),
        ErrorCode.Timeout => new LoomTimeoutException(message, inner),
        ErrorCode.CapabilityNotFound => new CapabilityNotFoundException(message, inner),
        ErrorCode.ProviderUnavailable => new ProviderUnavailableException(message, inner),
        ErrorCode.ToolError => new ToolErrorException(message, path, inner),
        ErrorCode.ResourceExhausted => new ResourceExhaustedException(message, inner),
        ErrorCode.TtlExpired => new TtlExpiredException(message, inner),
        ErrorCode.PermissionDenied => new PermissionDeniedException(message, inner),
        _ => new LoomException(code, message, path, inner),
    };

    public static LoomException ConnectionLost(string why) =>
        new(ErrorCode.Unavailable, $"The connection to the bridge was lost ({why}); the request may or may not have been carried out. Retry after the connection is back.");

    public static LoomException NotConnected(ConnectionStatus status) =>
        new(ErrorCode.Unavailable, $"Not connected to the bridge (status {status}); retry once the connection is back.");
}
