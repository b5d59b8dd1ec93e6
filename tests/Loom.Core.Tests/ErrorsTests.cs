using Loom.Protocol.V1;

namespace Loom.Core.Tests;

public class ErrorsTests
{
    [Theory]
    [InlineData(ErrorCode.InvalidParams, "INVALID_PARAMS", 3)]
    [InlineData(ErrorCode.Timeout, "TIMEOUT", 4)]
    [InlineData(ErrorCode.CapabilityNotFound, "CAPABILITY_NOT_FOUND", 5)]
    [InlineData(ErrorCode.ProviderUnavailable, "PROVIDER_UNAVAILABLE", 14)]
    [InlineData(ErrorCode.ToolError, "TOOL_ERROR", 2)]
    [InlineData(ErrorCode.PermissionDenied, "PERMISSION_DENIED", 7)]
    [InlineData(ErrorCode.ResourceExhausted, "RESOURCE_EXHAUSTED", 8)]
    [InlineData(ErrorCode.TtlExpired, "TTL_EXPIRED", 4)]
    [InlineData(ErrorCode.HopLimitExceeded, "HOP_LIMIT_EXCEEDED", 9)]
    [InlineData(ErrorCode.SessionNotFound, "SESSION_NOT_FOUND", 16)]
    [InlineData(ErrorCode.Cancelled, "CANCELLED", 1)]
    [InlineData(ErrorCode.Unavailable, "UNAVAILABLE", 14)]
    [InlineData(ErrorCode.Internal, "INTERNAL", 13)]
    [InlineData(ErrorCode.BudgetExceeded, "BUDGET_EXCEEDED", 8)]
    [InlineData(ErrorCode.Unspecified, "UNSPECIFIED", 2)]
    public void Names_and_grpc_statuses(ErrorCode code, string name, int grpc)
    {
        Assert.Equal(name, ErrorCodes.Name(code));
        Assert.Equal(grpc, ErrorCodes.ToGrpcStatus(code));
        Assert.True(ErrorCodes.TryParse(name, out var parsed));
        Assert.Equal(code, parsed);
        Assert.True(ErrorCodes.TryParse("ERROR_CODE_" + name.ToLowerInvariant(), out parsed));
        Assert.Equal(code, parsed);
    }

    [Fact]
    public void TryParse_rejects_unknown_names()
    {
        Assert.False(ErrorCodes.TryParse("NOPE", out _));
        Assert.False(ErrorCodes.TryParse("", out _));
    }

    [Fact]
    public void FromError_maps_to_sealed_subtypes()
    {
        Assert.IsType<InvalidParamsException>(LoomException.FromError(new Error { Code = ErrorCode.InvalidParams, Message = "m", Path = "/a" }));
        Assert.IsType<LoomTimeoutException>(LoomException.FromError(new Error { Code = ErrorCode.Timeout }));
        Assert.IsType<CapabilityNotFoundException>(LoomException.FromError(new Error { Code = ErrorCode.CapabilityNotFound }));
        Assert.IsType<ProviderUnavailableException>(LoomException.FromError(new Error { Code = ErrorCode.ProviderUnavailable }));
        Assert.IsType<ToolErrorException>(LoomException.FromError(new Error { Code = ErrorCode.ToolError }));
        Assert.Equal("/a", LoomException.FromError(new Error { Code = ErrorCode.InvalidParams, Message = "m", Path = "/a" }).Path);
        var tool = Assert.IsType<ToolErrorException>(LoomException.FromError(new Error { Code = ErrorCode.ToolError, Message = "bad row", Path = "/rows/3" }));
        Assert.Equal("/rows/3", tool.Path); // a tool's own pointer into its input survives the trip
        Assert.Equal("/rows/3", tool.ToError().Path);
        Assert.IsType<ResourceExhaustedException>(LoomException.FromError(new Error { Code = ErrorCode.ResourceExhausted }));
        Assert.IsType<TtlExpiredException>(LoomException.FromError(new Error { Code = ErrorCode.TtlExpired }));
        Assert.IsType<PermissionDeniedException>(LoomException.FromError(new Error { Code = ErrorCode.PermissionDenied }));
        Assert.IsType<BudgetExceededException>(LoomException.FromError(new Error { Code = ErrorCode.BudgetExceeded }));
        var other = LoomException.FromError(new Error { Code = ErrorCode.HopLimitExceeded, Message = "loop" });
        Assert.Equal(typeof(LoomException), other.GetType());
        Assert.Equal(ErrorCode.HopLimitExceeded, other.Code);
    }

    [Fact]
    public void ToError_round_trips_code_message_and_path()
    {
        var error = new InvalidParamsException("bad name", "/items/0/name").ToError();
        Assert.Equal(ErrorCode.InvalidParams, error.Code);
        Assert.Equal("bad name", error.Message);
        Assert.Equal("/items/0/name", error.Path);
        Assert.False(error.Retryable);

        var back = LoomException.FromError(error);
        Assert.Equal("bad name", back.Message);
        Assert.Equal("/items/0/name", back.Path);
        Assert.True(new ProviderUnavailableException("x").ToError().Retryable);
    }
}
