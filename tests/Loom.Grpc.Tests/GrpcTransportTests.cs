using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Loom.Protocol.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Loom.Grpc.Tests;

/// <summary>Transport behaviour that needs its own server settings.</summary>
public sealed class GrpcTransportTests : IDisposable
{
    private const string Test = "loom.test.Transport";
    private readonly CancellationTokenSource _timeout = new(TestUtil.Patience);

    private CancellationToken Token => _timeout.Token;

    public void Dispose() => _timeout.Dispose();

    private static void RegisterEcho(GrpcServiceRegistry registry) =>
        registry.AddDuplexStreaming<Envelope, Envelope>(Test, "Echo", Envelope.Parser, async (reader, writer, context) =>
        {
            while (await reader.MoveNextAsync(context.CancellationToken))
            {
                await writer.WriteAsync(reader.Current, context.CancellationToken);
            }
        });

    [Fact]
    public async Task Kestrel_body_limits_do_not_apply_to_grpc_streams()
    {
        // Tight global limits: a stream outlives MinRequestBodyDataRate's grace and carries more than MaxRequestBodySize.
        await using var server = await TestServer.StartAsync(RegisterEcho, configureKestrel: kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = 16 * 1024;
            kestrel.Limits.MinRequestBodyDataRate = new MinDataRate(bytesPerSecond: 1024 * 1024, gracePeriod: TimeSpan.FromSeconds(1.1));
        });
        using var channel = GrpcChannel.ForAddress(server.Address);
        await using var call = channel.Duplex<Envelope, Envelope>(Test, "Echo", Envelope.Parser);

        var payload = ByteString.CopyFrom(new byte[4096]);
        for (var i = 0; i < 16; i++)
        {
            await call.WriteAsync(new Envelope { Id = i.ToString(System.Globalization.CultureInfo.InvariantCulture), Payload = payload }, Token);
            Assert.True(await call.MoveNextAsync(Token));
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), call.Current.Id);
        }

        // Idle past the data-rate grace period (Kestrel checks once per second): the scenario itself, not a wait for a condition.
        await Task.Delay(TimeSpan.FromSeconds(2.5), Token);

        await call.WriteAsync(new Envelope { Id = "after-idle" }, Token);
        Assert.True(await call.MoveNextAsync(Token));
        Assert.Equal("after-idle", call.Current.Id);
        await call.CompleteRequestAsync();
        Assert.False(await call.MoveNextAsync(Token));
    }

    [Fact]
    public async Task More_streams_than_a_connection_allows_open_more_connections()
    {
        var started = 0;
        await using var server = await TestServer.StartAsync(
            registry => registry.AddDuplexStreaming<Envelope, Envelope>(Test, "Hold", Envelope.Parser, async (reader, _, context) =>
            {
                Interlocked.Increment(ref started);
                while (await reader.MoveNextAsync(context.CancellationToken))
                {
                }
            }),
            // 100 is Kestrel's default and what HttpClient assumes before SETTINGS arrive (a lower limit would refuse
            // streams sent in that window).
            configureKestrel: kestrel => kestrel.Limits.Http2.MaxStreamsPerConnection = 100);
        using var channel = GrpcChannel.ForAddress(server.Address);

        var calls = Enumerable.Range(0, 150).Select(_ => channel.Duplex<Envelope, Envelope>(Test, "Hold", Envelope.Parser)).ToList();
        try
        {
            await Task.WhenAll(calls.Select(c => c.ResponseHeadersAsync)).WaitAsync(Token);
            await TestUtil.WaitUntilAsync(() => Volatile.Read(ref started) == 150, "every handler to start");
            foreach (var call in calls)
            {
                await call.CompleteRequestAsync();
                Assert.False(await call.MoveNextAsync(Token));
            }
        }
        finally
        {
            foreach (var call in calls)
            {
                await call.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Error_after_messages_arrives_in_trailers()
    {
        await using var server = await TestServer.StartAsync(registry =>
            registry.AddServerStreaming<Envelope, Envelope>(Test, "TwoThenFail", Envelope.Parser, async (request, writer, context) =>
            {
                await writer.WriteAsync(request, context.CancellationToken);
                await writer.WriteAsync(request, context.CancellationToken);
                throw new GrpcStatusException(GrpcStatusCode.Aborted, "stopped after two");
            }));
        using var channel = GrpcChannel.ForAddress(server.Address);
        await using var call = channel.Duplex<Envelope, Envelope>(Test, "TwoThenFail", Envelope.Parser);
        await call.WriteAsync(new Envelope { Id = "x" }, Token);
        await call.CompleteRequestAsync();

        await call.ResponseHeadersAsync.WaitAsync(Token);
        Assert.True(await call.MoveNextAsync(Token));
        Assert.True(await call.MoveNextAsync(Token));
        var error = await Assert.ThrowsAsync<GrpcStatusException>(async () => await call.MoveNextAsync(Token));
        Assert.Equal(GrpcStatusCode.Aborted, error.Status);
        Assert.Equal("stopped after two", error.Detail);
    }

    [Fact]
    public async Task Duplex_deadline_is_enforced_locally_and_by_the_server()
    {
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(registry =>
            registry.AddDuplexStreaming<Envelope, Envelope>(Test, "Hang", Envelope.Parser, async (reader, _, context) =>
            {
                using var registration = context.CancellationToken.Register(() => cancelled.TrySetResult());
                while (await reader.MoveNextAsync(CancellationToken.None))
                {
                }
            }));
        using var channel = GrpcChannel.ForAddress(server.Address);
        await using var call = channel.Duplex<Envelope, Envelope>(Test, "Hang", Envelope.Parser, new GrpcCallOptions { Deadline = DateTimeOffset.UtcNow.AddMilliseconds(300) });

        var error = await Assert.ThrowsAsync<GrpcStatusException>(async () => await call.MoveNextAsync(Token));
        Assert.Equal(GrpcStatusCode.DeadlineExceeded, error.Status);
        await cancelled.Task.WaitAsync(Token);
    }

    [Fact]
    public async Task Unreachable_server_is_unavailable()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();

        using var channel = GrpcChannel.ForAddress(new Uri($"http://127.0.0.1:{port}"));
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            channel.UnaryAsync(Test, "Any", new HeartbeatRequest(), HeartbeatResponse.Parser));
        Assert.Equal(GrpcStatusCode.Unavailable, error.Status);
    }

    [Fact]
    public async Task Http1_request_is_426_upgrade_required()
    {
        await using var server = await TestServer.StartAsync(RegisterEcho, protocols: HttpProtocols.Http1);
        using var http = new HttpClient();
        using var request = TestUtil.RawRequest(server.Address, $"/{Test}/Echo", TestUtil.Frame(new Envelope()));
        request.Version = HttpVersion.Version11;
        using var response = await http.SendAsync(request, Token);
        Assert.Equal(HttpStatusCode.UpgradeRequired, response.StatusCode);
    }

    [Theory]
    [InlineData(503, "text/plain", GrpcStatusCode.Unavailable)]
    [InlineData(404, "text/plain", GrpcStatusCode.Unimplemented)]
    [InlineData(401, "text/plain", GrpcStatusCode.Unauthenticated)]
    [InlineData(500, "text/plain", GrpcStatusCode.Unknown)]
    [InlineData(200, "text/html", GrpcStatusCode.Internal)]
    public async Task Non_grpc_responses_get_a_synthesized_status(int httpStatus, string contentType, GrpcStatusCode expected)
    {
        // A broken deployment (e.g. a proxy) answering in place of a gRPC server.
        await using var server = await TestServer.StartAsync(RegisterEcho, beforeGrpc: app => app.Use((HttpContext context, RequestDelegate _) =>
        {
            context.Response.StatusCode = httpStatus;
            context.Response.ContentType = contentType;
            return context.Response.WriteAsync("<html>proxy error</html>", context.RequestAborted);
        }));
        using var channel = GrpcChannel.ForAddress(server.Address);
        var error = await Assert.ThrowsAsync<GrpcStatusException>(() =>
            channel.UnaryAsync(Test, "Echo", new Envelope(), Envelope.Parser, new GrpcCallOptions { CancellationToken = Token }));
        Assert.Equal(expected, error.Status);
    }

    [Fact]
    public async Task A_client_that_stops_reading_blocks_writes_until_the_handler_token_fires()
    {
        // Kestrel never times out a stalled reader: the handler's own token must be able to end the write.
        var outcome = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await TestServer.StartAsync(registry =>
            registry.AddServerStreaming<Envelope, Envelope>(Test, "Flood", Envelope.Parser, async (_, writer, context) =>
            {
                using var stall = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
                stall.CancelAfter(TimeSpan.FromMilliseconds(300));
                var chunk = new Envelope { Payload = ByteString.CopyFrom(new byte[256 * 1024]) };
                try
                {
                    for (var i = 0; i < 1000; i++)
                    {
                        await writer.WriteAsync(chunk, stall.Token);
                    }

                    outcome.TrySetResult(null);
                }
                catch (Exception ex)
                {
                    outcome.TrySetResult(ex);
                    throw;
                }
            }));
        using var channel = GrpcChannel.ForAddress(server.Address);
        await using var call = channel.Duplex<Envelope, Envelope>(Test, "Flood", Envelope.Parser);
        await call.WriteAsync(new Envelope(), Token);
        await call.CompleteRequestAsync();

        var error = await outcome.Task.WaitAsync(Token);
        Assert.IsAssignableFrom<OperationCanceledException>(error);
    }
}
