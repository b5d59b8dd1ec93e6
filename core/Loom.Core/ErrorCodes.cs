using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>Names of the error codes and their mapping onto gRPC statuses (documented in bridge.proto).</summary>
public static class ErrorCodes
{
    private const string Prefix = "ERROR_CODE_";

    /// <summary>The code's name without the <c>ERROR_CODE_</c> prefix, e.g. <c>INVALID_PARAMS</c>.</summary>
    public static string Name(ErrorCode code) => code switch
    {
        ErrorCode.Unspecified => "UNSPECIFIED",
        ErrorCode.InvalidParams => "INVALID_PARAMS",
        ErrorCode.Timeout => "TIMEOUT",
        ErrorCode.CapabilityNotFound => "CAPABILITY_NOT_FOUND",
        ErrorCode.ProviderUnavailable => "PROVIDER_UNAVAILABLE",
        ErrorCode.ToolError => "TOOL_ERROR",
        ErrorCode.PermissionDenied => "PERMISSION_DENIED",
        ErrorCode.ResourceExhausted => "RESOURCE_EXHAUSTED",
        ErrorCode.TtlExpired => "TTL_EXPIRED",
        ErrorCode.HopLimitExceeded => "HOP_LIMIT_EXCEEDED",
        ErrorCode.SessionNotFound => "SESSION_NOT_FOUND",
        ErrorCode.Cancelled => "CANCELLED",
        ErrorCode.Unavailable => "UNAVAILABLE",
        ErrorCode.Internal => "INTERNAL",
        ErrorCode.Unauthenticated => "UNAUTHENTICATED",
        ErrorCode.BudgetExceeded => "BUDGET_EXCEEDED",
        _ => ((int)code).ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// The gRPC status code (numeric, as in grpc/status.proto) a Loom error maps to at the edge.
    /// Unknown codes map to UNKNOWN (2).
    /// </summary>
    public static int ToGrpcStatus(ErrorCode code) => code switch
    {
        ErrorCode.InvalidParams => 3,        // INVALID_ARGUMENT
        ErrorCode.Timeout => 4,              // DEADLINE_EXCEEDED
        ErrorCode.CapabilityNotFound => 5,   // NOT_FOUND
        ErrorCode.ProviderUnavailable => 14, // UNAVAILABLE
        ErrorCode.ToolError => 2,            // UNKNOWN
        ErrorCode.PermissionDenied => 7,     // PERMISSION_DENIED
        ErrorCode.ResourceExhausted => 8,    // RESOURCE_EXHAUSTED
        ErrorCode.TtlExpired => 4,           // DEADLINE_EXCEEDED
        ErrorCode.HopLimitExceeded => 9,     // FAILED_PRECONDITION
        ErrorCode.SessionNotFound => 16,     // UNAUTHENTICATED
        ErrorCode.Cancelled => 1,            // CANCELLED
        ErrorCode.Unavailable => 14,         // UNAVAILABLE
        ErrorCode.Internal => 13,            // INTERNAL
        ErrorCode.Unauthenticated => 16,     // UNAUTHENTICATED
        ErrorCode.BudgetExceeded => 8,       // RESOURCE_EXHAUSTED
        _ => 2,                              // UNKNOWN
    };

    /// <summary>
    /// Parses a code name: <c>INVALID_PARAMS</c> or <c>ERROR_CODE_INVALID_PARAMS</c>, any case.
    /// </summary>
    public static bool TryParse(string name, out ErrorCode code)
    {
        code = ErrorCode.Unspecified;
        if (string.IsNullOrWhiteSpace(name))
        {
            return false;
        }

        var span = name.AsSpan().Trim();
        if (span.StartsWith(Prefix, StringComparison.OrdinalIgnoreCase))
        {
            span = span[Prefix.Length..];
        }

        foreach (var candidate in Enum.GetValues<ErrorCode>())
        {
            if (span.Equals(Name(candidate), StringComparison.OrdinalIgnoreCase))
            {
                code = candidate;
                return true;
            }
        }

        return false;
    }

    /// <summary>Whether a failure with this code may succeed when retried later.</summary>
    public static bool IsRetryable(ErrorCode code) =>
        code is ErrorCode.Timeout or ErrorCode.ProviderUnavailable or ErrorCode.ResourceExhausted or ErrorCode.Unavailable;
}
