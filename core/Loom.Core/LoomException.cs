using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>
/// A failure with a code from Loom's error taxonomy (<see cref="ErrorCode"/>). The message says
/// what to fix; <see cref="Path"/> points at the failing value for INVALID_PARAMS.
/// </summary>
public class LoomException : Exception
{
    public LoomException(ErrorCode code, string message, string? path = null, Exception? inner = null)
        : base(message, inner)
    {
        Code = code;
        Path = string.IsNullOrEmpty(path) ? null : path;
    }

    /// <summary>The taxonomy code.</summary>
    public ErrorCode Code { get; }

    /// <summary>JSON pointer of the failing value (INVALID_PARAMS), or null.</summary>
    public string? Path { get; }

    /// <summary>Whether the same request may succeed later (timeouts, unavailable providers, full queues).</summary>
    public bool Retryable => ErrorCodes.IsRetryable(Code);

    /// <summary>The protocol form of this failure.</summary>
    public Error ToError() => new()
    {
        Code = Code,
        Message = Message,
        Path = Path ?? string.Empty,
        Retryable = Retryable,
    };

    /// <summary>Rebuilds the exception for a protocol error, as the sealed subtype for its code.</summary>
    public static LoomException FromError(Error error)
    {
        ArgumentNullException.ThrowIfNull(error);
        var message = string.IsNullOrEmpty(error.Message) ? ErrorCodes.Name(error.Code) : error.Message;
        var path = string.IsNullOrEmpty(error.Path) ? null : error.Path;
        return error.Code switch
        {
            ErrorCode.InvalidParams => new InvalidParamsException(message, path),
            ErrorCode.Timeout => new LoomTimeoutException(message),
            ErrorCode.CapabilityNotFound => new CapabilityNotFoundException(message),
            ErrorCode.ProviderUnavailable => new ProviderUnavailableException(message),
            ErrorCode.ToolError => new ToolErrorException(message, path, null),
            ErrorCode.ResourceExhausted => new ResourceExhaustedException(message),
            ErrorCode.TtlExpired => new TtlExpiredException(message),
            ErrorCode.PermissionDenied => new PermissionDeniedException(message),
            ErrorCode.Unauthenticated => new UnauthenticatedException(message),
            ErrorCode.BudgetExceeded => new BudgetExceededException(message),
            // UNSPECIFIED, or a code this build does not know (a newer bridge): INTERNAL, as in every SDK (protocol §11).
            _ when error.Code == ErrorCode.Unspecified || !Enum.IsDefined(error.Code) => new LoomException(ErrorCode.Internal, message, path),
            _ => new LoomException(error.Code, message, path),
        };
    }
}

/// <summary>INVALID_PARAMS: a field or argument is wrong; <see cref="LoomException.Path"/> says which.</summary>
public sealed class InvalidParamsException : LoomException
{
    public InvalidParamsException(string message, string? path = null)
        : base(ErrorCode.InvalidParams, message, path)
    {
    }
}

/// <summary>TIMEOUT: a deadline passed.</summary>
public sealed class LoomTimeoutException : LoomException
{
    public LoomTimeoutException(string message, Exception? inner = null)
        : base(ErrorCode.Timeout, message, null, inner)
    {
    }
}

/// <summary>CAPABILITY_NOT_FOUND: no provider is registered under that name (and version).</summary>
public sealed class CapabilityNotFoundException : LoomException
{
    public CapabilityNotFoundException(string message, Exception? inner = null)
        : base(ErrorCode.CapabilityNotFound, message, null, inner)
    {
    }
}

/// <summary>PROVIDER_UNAVAILABLE: providers exist but none can answer now.</summary>
public sealed class ProviderUnavailableException : LoomException
{
    public ProviderUnavailableException(string message, Exception? inner = null)
        : base(ErrorCode.ProviderUnavailable, message, null, inner)
    {
    }
}

/// <summary>TOOL_ERROR: the capability itself failed.</summary>
public sealed class ToolErrorException : LoomException
{
    public ToolErrorException(string message, Exception? inner = null)
        : base(ErrorCode.ToolError, message, null, inner)
    {
    }

    /// <summary>A tool error about one part of the input: <paramref name="path"/> (a JSON pointer) says which.</summary>
    public ToolErrorException(string message, string? path, Exception? inner)
        : base(ErrorCode.ToolError, message, path, inner)
    {
    }
}

/// <summary>RESOURCE_EXHAUSTED: a size, queue or rate limit.</summary>
public sealed class ResourceExhaustedException : LoomException
{
    public ResourceExhaustedException(string message, Exception? inner = null)
        : base(ErrorCode.ResourceExhausted, message, null, inner)
    {
    }
}

/// <summary>TTL_EXPIRED: an envelope's time to live passed.</summary>
public sealed class TtlExpiredException : LoomException
{
    public TtlExpiredException(string message, Exception? inner = null)
        : base(ErrorCode.TtlExpired, message, null, inner)
    {
    }
}

/// <summary>PERMISSION_DENIED.</summary>
public sealed class PermissionDeniedException : LoomException
{
    public PermissionDeniedException(string message, Exception? inner = null)
        : base(ErrorCode.PermissionDenied, message, null, inner)
    {
    }
}

/// <summary>BUDGET_EXCEEDED: an agent's or a thread's token budget (LLM gateway) is spent.</summary>
public sealed class BudgetExceededException : LoomException
{
    public BudgetExceededException(string message, Exception? inner = null)
        : base(ErrorCode.BudgetExceeded, message, null, inner)
    {
    }
}

/// <summary>
/// UNAUTHENTICATED: the bridge has auth on and the caller sent no credential where one is required,
/// or a bad one (an expired token, one signed with another key, a certificate and token naming
/// different identities). The message says which and what to send; retrying the same request fails.
/// </summary>
public sealed class UnauthenticatedException : LoomException
{
    public UnauthenticatedException(string message, Exception? inner = null)
        : base(ErrorCode.Unauthenticated, message, null, inner)
    {
    }
}
