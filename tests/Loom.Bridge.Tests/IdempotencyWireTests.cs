using Google.Protobuf;
using Loom.Bridge.Internal.Idempotency;
using Loom.Core;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>Idempotency keys on the wire (raw gRPC agents): <c>replayed</c> on the stored result, no second push to the provider, and what is stored.</summary>
public sealed class IdempotencyWireTests : IAsyncLifetime
{
    private LoomBridge _bridge = null!;

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, HeartbeatInterval = TimeSpan.FromSeconds(5) }, _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    private static RegisterAgentRequest Agent(string id, string? capability = null)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        if (capability is not null)
        {
            request.Capabilities.Add(new CapabilityDescriptor { Name = capability, Version = "1.0.0", InputSchemaJson = """{"type":"object"}""", OutputSchemaJson = "{}" });
        }

        return request;
    }

    private static ClientMessage Call(string callId, string capability, string key, string input = "{}") =>
        new() { Call = new ActionCall { CallId = callId, Capability = capability, InputJson = ByteString.CopyFromUtf8(input), IdempotencyKey = key } };

    [Fact]
    public async Task A_repeated_key_gets_the_stored_result_marked_replayed_without_a_second_push()
    {
        await using var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("wire-provider", "wire.pay"));
        await using var caller = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("wire-caller"));

        await caller.SendAsync(Call("c1", "wire.pay", "pay-1"));
        var pushed = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call);
        Assert.Equal(string.Empty, pushed.Call.IdempotencyKey); // not sent to providers
        await provider.SendAsync(new ClientMessage { Result = new ActionResult { CallId = pushed.Call.CallId, OutputJson = ByteString.CopyFromUtf8("""{"paid":1}""") } });
        var first = await caller.WaitForAsync(m => m.Result?.CallId == "c1");
        Assert.False(first.Result.Replayed);
        Assert.Equal("""{"paid":1}""", first.Result.OutputJson.ToStringUtf8());

        await caller.SendAsync(Call("c2", "wire.pay", "pay-1"));
        var second = await caller.WaitForAsync(m => m.Result?.CallId == "c2");
        Assert.True(second.Result.Replayed);
        Assert.Equal("""{"paid":1}""", second.Result.OutputJson.ToStringUtf8());
        Assert.Equal("wire-provider", second.Result.Provider);

        // A new key is pushed again; the provider saw exactly two calls.
        await caller.SendAsync(Call("c3", "wire.pay", "pay-2"));
        var again = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call && m.Call.CallId != pushed.Call.CallId);
        await provider.SendAsync(new ClientMessage { Result = new ActionResult { CallId = again.Call.CallId, OutputJson = ByteString.CopyFromUtf8("""{"paid":2}""") } });
        var third = await caller.WaitForAsync(m => m.Result?.CallId == "c3");
        Assert.False(third.Result.Replayed);
        Assert.Equal("""{"paid":2}""", third.Result.OutputJson.ToStringUtf8());
    }

    [Fact]
    public async Task A_bad_key_is_invalid_params_before_any_provider_runs()
    {
        await using var caller = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("wire-bad-caller"));
        await caller.SendAsync(Call("b1", "wire.nothing", new string('x', 129)), Call("b2", "wire.nothing", "tab\there"));
        var tooLong = await caller.WaitForAsync(m => m.Result?.CallId == "b1");
        var control = await caller.WaitForAsync(m => m.Result?.CallId == "b2");
        Assert.Equal(ErrorCode.InvalidParams, tooLong.Result.Error.Code);
        Assert.Contains("129 bytes; the limit is 128", tooLong.Result.Error.Message, StringComparison.Ordinal);
        Assert.Equal(ErrorCode.InvalidParams, control.Result.Error.Code);
        Assert.Contains("U+0009 at index 3", control.Result.Error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(null, ErrorCode.Unspecified, true)]
    [InlineData("agent", ErrorCode.ToolError, true)]
    [InlineData("agent", ErrorCode.InvalidParams, true)]
    [InlineData("agent", ErrorCode.Timeout, false)]
    [InlineData("agent", ErrorCode.ProviderUnavailable, false)]
    [InlineData("agent", ErrorCode.ResourceExhausted, false)]
    [InlineData("agent", ErrorCode.Unavailable, false)]
    [InlineData("agent", ErrorCode.Cancelled, false)]
    [InlineData("agent", ErrorCode.Internal, false)]
    [InlineData(null, ErrorCode.CapabilityNotFound, false)]
    [InlineData(null, ErrorCode.InvalidParams, false)]
    public void Results_and_non_transient_provider_failures_are_stored(string? agent, ErrorCode code, bool stored)
    {
        var outcome = code == ErrorCode.Unspecified
            ? new ActionOutcome { OutputJson = "{}"u8.ToArray(), AgentId = "agent" }
            : new ActionOutcome { AgentId = agent, Error = new Error { Code = code, Message = "m", Retryable = ErrorCodes.IsRetryable(code) } };
        Assert.Equal(stored, IdempotencyStore.Storable(outcome));
    }

    [Fact]
    public void A_record_round_trips_and_a_damaged_one_is_refused()
    {
        var outcome = new ActionOutcome { OutputJson = """{"a":1}"""u8.ToArray(), AgentId = "p", ProviderId = "p", Duration = TimeSpan.FromMilliseconds(3) };
        var bytes = IdempotencyRecord.Encode("agent:x\0cap\0k", new byte[16], outcome);
        Assert.True(IdempotencyRecord.TryDecode(bytes, out var key, out _, out var back));
        Assert.Equal(("agent:x\0cap\0k", """{"a":1}""", "p", TimeSpan.FromMilliseconds(3)), (key, System.Text.Encoding.UTF8.GetString(back.OutputJson.Span), back.AgentId, back.Duration));
        var failure = new ActionOutcome { Error = new Error { Code = ErrorCode.ToolError, Message = "no" }, AgentId = "p" };
        Assert.True(IdempotencyRecord.TryDecode(IdempotencyRecord.Encode("k", new byte[16], failure), out _, out _, out var failed));
        Assert.Equal((ErrorCode.ToolError, "no"), (failed.Error!.Code, failed.Error.Message));
        Assert.False(IdempotencyRecord.TryDecode(bytes.AsMemory(0, bytes.Length - 3), out _, out _, out _));
        Assert.False(IdempotencyRecord.TryDecode(new byte[] { 9, 0, 0 }, out _, out _, out _));
    }
}
