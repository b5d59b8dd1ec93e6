using Loom.Core;
using Grpc.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>Turns gRPC statuses and transport failures into typed <see cref="LoomException"/>s.</summary>
internal static class ErrorMapping
{
    public const string CodeTrailer = "loom-error-code";
    public const string PathTrailer = "loom-error-path";

    /// <summary>A status from the bridge as a typed Loom error: Loom's code from the trailers, else one mapped from the status code.</summary>
    public static LoomException FromStatus(RpcException ex, Uri address)
    {
        if (ex.Trailers.GetValue(CodeTrailer) is { } name)
        {
            // A code this SDK does not know (a newer bridge) is treated like INTERNAL (protocol §11).
            var code = ErrorCodes.TryParse(name, out var parsed) ? parsed : ErrorCode.Internal;
            return Create(code, ex.Status.Detail, ex.Trailers.GetValue(PathTrailer), ex);
        }

        if (ex.StatusCode == StatusCode.Unavailable && ex.Status.DebugException is { } cause)
        {
            // The transport's own failure (no connection, reset): say where and what.
            return new LoomException(ErrorCode.Unavailable, $"Cannot reach the bridge at {address}: {cause.Message}", null, ex);
        }

        var mapped = ex.StatusCode switch
        {
            StatusCode.InvalidArgument => ErrorCode.InvalidParams,
            StatusCode.DeadlineExceeded => ErrorCode.Timeout,
            StatusCode.NotFound => ErrorCode.CapabilityNotFound,
            StatusCode.PermissionDenied => ErrorCode.PermissionDenied,
            StatusCode.ResourceExhausted => ErrorCode.ResourceExhausted,
            StatusCode.FailedPrecondition => ErrorCode.HopLimitExceeded,
            StatusCode.Unauthenticated => ErrorCode.Unauthenticated,
            StatusCode.Cancelled => ErrorCode.Cancelled,
            StatusCode.Unavailable => ErrorCode.Unavailable,
            _ => ErrorCode.Internal, // the inverse of ErrorCodes.ToGrpcStatus; the rest as protocol §11.1 says (tests/vectors/errors.json)
        };
        return Create(mapped, string.IsNullOrEmpty(ex.Status.Detail) ? ex.StatusCode.ToString() : ex.Status.Detail, null, ex);
    }

    /// <summary>Any failure of a bridge call, as a typed Loom error.</summary>
    public static LoomException FromTransport(Exception ex, Uri address) => ex switch
    {
        LoomException loom => loom,
        _ when ChannelSecurity.HandshakeFailure(ex, address) is { } tls => new LoomException(ErrorCode.Unavailable, tls, null, ex),
        RpcException status => FromStatus(status, address),
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
        ErrorCode.Unauthenticated => new UnauthenticatedException(message, inner),
        ErrorCode.BudgetExceeded => new BudgetExceededException(message, inner),
        _ => new LoomException(code, message, path, inner),
    };

    public static LoomException ConnectionLost(string why) =>
        new(ErrorCode.Unavailable, $"The connection to the bridge was lost ({why}); the request may or may not have been carried out. Retry after the connection is back.");

    public static LoomException NotConnected(ConnectionStatus status) =>
        new(ErrorCode.Unavailable, $"Not connected to the bridge (status {status}); retry once the connection is back.");
}
