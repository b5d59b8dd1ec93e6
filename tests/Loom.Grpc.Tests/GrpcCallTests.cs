using Google.Protobuf;
using Grpc.Health.V1;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Grpc.Tests;

public sealed class GrpcCallTests(GrpcServerFixture fixture) : IClassFixture<GrpcServerFixture>, IDisposable
{
    private const string Bridge = GrpcServerFixture.Bridge;
    private const string Test = GrpcServerFixture.Test;

    private readonly GrpcChannel _channel = GrpcChannel.ForAddress(fixture.Server.Address);
    private readonly CancellationTokenSource _timeout = new(TestUtil.Patience);

    private CancellationToken Token => _timeout.Token;

    public void Dispose()
    {
        _channel.Dispose();
        _timeout.Dispose();
    }

    private static GrpcCallOptions Probe(string id, DateTimeOffset? deadline = null) => new()
    {
        Headers = [new("x-probe", id)],
        Deadline = deadline,
    };

    [Fact]
    public async Task Unary_round_trip_carries_message_metadata_and_trailers()
    {
        var id = Guid.NewGuid().ToString("N");
        var response = await _channel.UnaryAsync(
            Bridge, "Heartbeat", new HeartbeatRequest { SessionId = "s-1", Sequence = 21 }, HeartbeatResponse.Parser, Probe(id, DateTimeOffset.UtcNow.AddMinutes(1)));

        Assert.Equal(42, response.ServerUnixMs);
        Assert.Equal(1000u, response.HeartbeatIntervalMs);
        var probe = fixture.ProbeFor(id);
        Assert.Equal("/loom.v1.Bridge/Heartbeat", probe.Method);
        Assert.StartsWith("ipv4:127.0.0.1:", probe.Peer, StringComparison.Ordinal);
        Assert.Equal("trailers", probe.Te);
        Assert.StartsWith("grpc-dotnet-loom/", probe.UserAgent, StringComparison.Ordinal);
        Assert.Matches("^[0-9]{1,8}[HMSmun]$", probe.Timeout);
        Assert.True(Loom.Grpc.Internal.GrpcTimeout.TryParse(probe.Timeout, out var timeout));
        Assert.InRange(timeout, TimeSpan.FromSeconds(50), TimeSpan.FromSeconds(61));
    }

    [Fact]
    public async Task Unary_handles_large_messages_both_ways()
    {
        var request = new Envelope { Topic = "big", Payload = ByteString.CopyFrom(Enumerable.Range(0, 60_000).Select(i => (byte)i).ToArray()) };
        var response = await _channel.UnaryAsync(Test, "Echo", request, Envelope.Parser);
        Assert.Equal(request, response);
    }

    [Fact]
    public async Task Duplex_carries_10000_messages_in_order_both_ways()
    {
        const int Count = 10_000;
        var id = Guid.NewGuid().ToString("N");
        await using var call = _channel.Duplex<ClientFrame, ServerFrame>(Bridge, "EventStream", ServerFrame.Parser, Probe(id));

        var reading = Task.Run(async () =>
        {
            ulong expected = 0;
            while (await call.MoveNextAsync(Token))
            {
                foreach (var message in call.Current.Messages)
                {
                    Assert.Equal(expected++, message.Heartbeat.Sequence);
                }
            }

            return expected;
        });

        for (ulong i = 0; i < Count; i++)
        {
            var frame = new ClientFrame();
            frame.Messages.Add(new ClientMessage { Heartbeat = new HeartbeatPing { Sequence = i } });
            await call.WriteAsync(frame, Token);
        }

        await call.CompleteRequestAsync();
        Assert.Equal((ulong)Count, await reading.WaitAsync(Token));
        Assert.Equal("0", call.Trailers["grpc-status"]);
        Assert.Equal(Count, fixture.ProbeFor(id).Received);
    }

    [Fact]
    public async Task Server_streaming_delivers_every_message_then_ends_ok()
    {
        await using var call = _channel.Duplex<HealthCheckRequest, HealthCheckResponse>("grpc.health.v1.Health", "Watch", HealthCheckResponse.Parser);
        await call.WriteAsync(new HealthCheckRequest { Service = "5" }, Token);
        await call.CompleteRequestAsync();

        var statuses = new List<HealthCheckResponse.Types.ServingStatus>();
        while (await call.MoveNextAsync(Token))
        {
            statuses.Add(call.Current.Status);
        }

        Assert.Equal(5, statuses.Count);
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.NotServing, statuses[1]);
        Assert.False(await call.MoveNextAsync(Token)); // stays at the end
    }

    [Fact]
    public async Task Streaming_headers_reach_the_client_before_any_message()
    {
        var id = Guid.NewGuid().ToString("N");
        await using var call = _channel.Duplex<ClientFrame, ServerFrame>(Test, "StreamWaitForCancel", ServerFrame.Parser, Probe(id));
        await call.ResponseHeadersAsync.WaitAsync(Token);
    }

    [Theory]
    [InlineData("plain ascii")]
    [InlineData("héllo wörld: 日本語 ☺ 😈 100% \t\r\n done")]
    public async Task Status_message_round_trips_with_extra_trailers(string detail)
    {
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => _channel.UnaryAsync(
            Test, "Fail", new HeartbeatRequest { SessionId = detail, Sequence = (ulong)GrpcStatusCode.InvalidArgument }, HeartbeatResponse.Parser));

        Assert.Equal(GrpcStatusCode.InvalidArgument, error.Status);
        Assert.Equal(detail, error.Detail);
        Assert.Equal("extra-value", error.Trailers["x-extra"]);
        Assert.DoesNotContain("bad name", error.Trailers.Keys);
    }

    [Fact]
    public async Task Deadline_exceeded_cancels_the_handler_token()
    {
        var id = Guid.NewGuid().ToString("N");
        var deadline = DateTimeOffset.UtcNow.AddMilliseconds(300);
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => _channel.UnaryAsync(
            Test, "WaitForCancel", new HeartbeatRequest(), HeartbeatResponse.Parser, Probe(id, deadline)));

        Assert.Equal(GrpcStatusCode.DeadlineExceeded, error.Status);
        var probe = fixture.ProbeFor(id);
        await probe.Cancelled.Task.WaitAsync(Token);
        Assert.NotNull(probe.Deadline);
        Assert.InRange(probe.Deadline!.Value, deadline.AddSeconds(-1), deadline.AddSeconds(1));
    }

    [Fact]
    public async Task Deadline_already_passed_fails_without_sending()
    {
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => _channel.UnaryAsync(
            Test, "WaitForCancel", new HeartbeatRequest(), HeartbeatResponse.Parser, new GrpcCallOptions { Deadline = DateTimeOffset.UtcNow.AddSeconds(-1) }));
        Assert.Equal(GrpcStatusCode.DeadlineExceeded, error.Status);
    }

    [Fact]
    public async Task Client_cancel_resets_the_stream_and_the_server_observes_it()
    {
        var id = Guid.NewGuid().ToString("N");
        await using var call = _channel.Duplex<ClientFrame, ServerFrame>(Test, "StreamWaitForCancel", ServerFrame.Parser, Probe(id));
        await call.ResponseHeadersAsync.WaitAsync(Token);
        var probe = fixture.ProbeFor(id);
        await probe.Started.Task.WaitAsync(Token);

        call.Cancel();

        await TestUtil.WaitUntilAsync(() => probe.Cancelled.Task.IsCompleted, "the server handler's token to be cancelled");
        await TestUtil.WaitUntilAsync(
            () => fixture.Server.Logs.Entries.Any(e => e.Message == "Call /loom.test.Test/StreamWaitForCancel was cancelled or reset by the client."),
            "the server to end the call without a status");
        Assert.DoesNotContain(fixture.Server.Logs.Entries, e => e.Level >= LogLevel.Warning && e.Message.Contains("StreamWaitForCancel", StringComparison.Ordinal));
        var error = await Assert.ThrowsAsync<GrpcStatusException>(async () => await call.MoveNextAsync(Token));
        Assert.Equal(GrpcStatusCode.Cancelled, error.Status);
        var writeError = await Assert.ThrowsAsync<GrpcStatusException>(async () => await call.WriteAsync(new ClientFrame(), Token));
        Assert.Equal(GrpcStatusCode.Cancelled, writeError.Status);
    }

    [Fact]
    public async Task Unary_cancellation_token_cancels_the_call_and_the_server_sees_it()
    {
        var id = Guid.NewGuid().ToString("N");
        using var cancel = new CancellationTokenSource();
        var calling = _channel.UnaryAsync(Test, "WaitForCancel", new HeartbeatRequest(), HeartbeatResponse.Parser,
            new GrpcCallOptions { Headers = [new("x-probe", id)], CancellationToken = cancel.Token });
        var probe = fixture.ProbeFor(id);
        await probe.Started.Task.WaitAsync(Token);

        await cancel.CancelAsync();

        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => calling);
        Assert.Equal(GrpcStatusCode.Cancelled, error.Status);
        await TestUtil.WaitUntilAsync(() => probe.Cancelled.Task.IsCompleted, "the server handler's token to be cancelled");
    }

    [Fact]
    public async Task Unknown_method_is_unimplemented()
    {
        var unary = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            _channel.UnaryAsync(Test, "NoSuchMethod", new HeartbeatRequest(), HeartbeatResponse.Parser));
        Assert.Equal(GrpcStatusCode.Unimplemented, unary.Status);
        Assert.Contains("/loom.test.Test/NoSuchMethod", unary.Detail, StringComparison.Ordinal);

        await using var call = _channel.Duplex<ClientFrame, ServerFrame>("loom.test.Missing", "Stream", ServerFrame.Parser);
        var duplex = await Assert.ThrowsAsync<GrpcStatusException>(() => call.ResponseHeadersAsync);
        Assert.Equal(GrpcStatusCode.Unimplemented, duplex.Status);
    }

    [Fact]
    public async Task Oversized_request_is_resource_exhausted_naming_size_and_limit()
    {
        var request = new Envelope { Payload = ByteString.CopyFrom(new byte[100_000]) };
        var size = request.CalculateSize() + 0;
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => _channel.UnaryAsync(Test, "Echo", request, Envelope.Parser));

        Assert.Equal(GrpcStatusCode.ResourceExhausted, error.Status);
        Assert.Contains(size.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Detail, StringComparison.Ordinal);
        Assert.Contains(GrpcServerFixture.MaxReceive.ToString(System.Globalization.CultureInfo.InvariantCulture), error.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Oversized_response_is_resource_exhausted_on_the_client()
    {
        using var channel = GrpcChannel.ForAddress(fixture.Server.Address, new GrpcChannelOptions { MaxReceiveMessageSize = 1000 });
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            channel.UnaryAsync(Test, "Big", new HeartbeatRequest { Sequence = 5000 }, Envelope.Parser));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, error.Status);
        Assert.Contains("1000 bytes", error.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Oversized_send_is_refused_locally()
    {
        using var channel = GrpcChannel.ForAddress(fixture.Server.Address, new GrpcChannelOptions { MaxSendMessageSize = 1000 });
        var request = new Envelope { Payload = ByteString.CopyFrom(new byte[5000]) };
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => channel.UnaryAsync(Test, "Echo", request, Envelope.Parser));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, error.Status);

        await using var call = channel.Duplex<Envelope, Envelope>(Test, "Echo", Envelope.Parser);
        var writeError = await Assert.ThrowsAsync<GrpcStatusException>(async () => await call.WriteAsync(request, Token));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, writeError.Status);
    }

    [Fact]
    public async Task Handler_exception_is_unknown_and_not_leaked_but_logged()
    {
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            _channel.UnaryAsync(Test, "Throw", new HeartbeatRequest(), HeartbeatResponse.Parser));

        Assert.Equal(GrpcStatusCode.Unknown, error.Status);
        Assert.Equal("Exception was thrown by handler.", error.Detail);
        Assert.DoesNotContain("hunter2", error.Detail, StringComparison.Ordinal);
        Assert.All(error.Trailers.Values, v => Assert.DoesNotContain("hunter2", v, StringComparison.Ordinal));
        await TestUtil.WaitUntilAsync(
            () => fixture.Server.Logs.Entries.Any(e => e.Level == LogLevel.Error && e.Exception?.Message == GrpcServerFixture.Secret),
            "the handler exception to be logged");
    }

    [Fact]
    public async Task Early_error_is_trailers_only_and_surfaces_from_headers_and_reads()
    {
        await using var call = _channel.Duplex<ClientFrame, ServerFrame>(Test, "RejectAtOnce", ServerFrame.Parser);

        var fromHeaders = await Assert.ThrowsAsync<GrpcStatusException>(() => call.ResponseHeadersAsync.WaitAsync(Token));
        Assert.Equal(GrpcStatusCode.PermissionDenied, fromHeaders.Status);
        Assert.Equal("not allowed: no token", fromHeaders.Detail);

        var fromRead = await Assert.ThrowsAsync<GrpcStatusException>(async () => await call.MoveNextAsync(Token));
        Assert.Equal(GrpcStatusCode.PermissionDenied, fromRead.Status);
        Assert.Equal("7", call.Trailers["grpc-status"]);
    }

    [Fact]
    public async Task Single_writer_is_enforced_and_cancel_unblocks_a_flow_controlled_write()
    {
        await using var call = _channel.Duplex<Envelope, ServerFrame>(Test, "StreamWaitForCancel", ServerFrame.Parser);
        await call.ResponseHeadersAsync.WaitAsync(Token);

        // The handler never reads and the stream window is 1 MiB, so this write stays pending.
        var big = new Envelope { Payload = ByteString.CopyFrom(new byte[3 * 1024 * 1024]) };
        var pending = call.WriteAsync(big, Token).AsTask();
        Assert.False(pending.IsCompleted);

        await Assert.ThrowsAsync<InvalidOperationException>(async () => await call.WriteAsync(new Envelope(), Token));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await call.CompleteRequestAsync());

        call.Cancel();
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() => pending.WaitAsync(Token));
        Assert.Equal(GrpcStatusCode.Cancelled, error.Status);
    }

    [Fact]
    public async Task Completed_request_refuses_further_writes()
    {
        await using var call = _channel.Duplex<HealthCheckRequest, HealthCheckResponse>("grpc.health.v1.Health", "Watch", HealthCheckResponse.Parser);
        await call.WriteAsync(new HealthCheckRequest { Service = "0" }, Token);
        await call.CompleteRequestAsync();
        await call.CompleteRequestAsync(); // idempotent
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await call.WriteAsync(new HealthCheckRequest(), Token));
        Assert.False(await call.MoveNextAsync(Token));
    }
}
