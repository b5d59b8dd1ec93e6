using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Grpc.Reflection.V1Alpha;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// What the bridge's gRPC server puts on the wire, seen through hand-made HTTP/2 requests and the
/// official .NET client: status codes, trailers-only errors, percent-encoded messages, the port
/// split, reflection, health, and long streams. The Python (grpcio) and Node (grpc-js) interop
/// suites check the same server from other stacks.
/// </summary>
public sealed class TransportTests : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(10);
    private readonly HttpClient _http = new(new SocketsHttpHandler()) { Timeout = Short };
    private LoomBridge _bridge = null!;

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MaxMessageBytes = 256 * 1024, MaxPayloadBytes = 128 * 1024 }, _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    public void Dispose() => _http.Dispose();

    private static byte[] Frame(IMessage message)
    {
        var body = message.ToByteArray();
        var framed = new byte[5 + body.Length];
        BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)body.Length);
        body.CopyTo(framed, 5);
        return framed;
    }

    private HttpRequestMessage Grpc(string path, byte[] body, string contentType = "application/grpc", Uri? address = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(address ?? _bridge.GrpcAddress, path))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        request.Headers.TryAddWithoutValidation("te", "trailers");
        return request;
    }

    private static string? Header(HttpHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;

    private static RegisterAgentRequest Agent(string id, params string[] patterns)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        request.Subscriptions.Add(patterns.Select(p => new Protocol.V1.Subscription { Pattern = p }));
        return request;
    }

    [Fact]
    public async Task A_unary_call_answers_with_one_message_and_the_status_in_trailers()
    {
        using var agent = await RawAgentRegistration(Agent("unary"));
        using var request = Grpc("/loom.v1.Bridge/Heartbeat", Frame(new HeartbeatRequest { SessionId = agent.SessionId, Sequence = 1 }));
        using var response = await _http.SendAsync(request);
        var body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        Assert.Null(Header(response.Headers, "grpc-status"));
        var answer = HeartbeatResponse.Parser.ParseFrom(body.AsSpan(5));
        Assert.True(answer.HeartbeatIntervalMs > 0);
        Assert.Equal("0", Header(response.TrailingHeaders, "grpc-status"));
    }

    [Fact]
    public async Task An_error_before_any_message_is_trailers_only_with_loom_code_and_percent_encoded_message()
    {
        // A pattern with a non-ASCII character: the message echoes it, percent-encoded per the gRPC spec.
        using var request = Grpc("/loom.v1.Bridge/RegisterAgent", Frame(Agent("bad-pattern", "météo.>.x")));
        using var response = await _http.SendAsync(request);
        var body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Empty(body);
        Assert.Equal("3", Header(response.Headers, "grpc-status"));
        Assert.Equal("INVALID_PARAMS", Header(response.Headers, "loom-error-code"));
        Assert.Equal("/subscriptions/0/pattern", Header(response.Headers, "loom-error-path"));
        var message = Header(response.Headers, "grpc-message")!;
        Assert.Contains("m%C3%A9t%C3%A9o.>.x", message, StringComparison.Ordinal);
        Assert.DoesNotContain("é", message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("application/json")]
    [InlineData("text/plain")]
    public async Task A_wrong_content_type_on_a_grpc_method_is_415(string contentType)
    {
        using var request = Grpc("/loom.v1.Bridge/Heartbeat", Frame(new HeartbeatRequest()), contentType);
        using var response = await _http.SendAsync(request);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
    }

    [Fact]
    public async Task Grpc_proto_content_type_is_served()
    {
        using var request = Grpc("/grpc.health.v1.Health/Check", Frame(new HealthCheckRequest()), "application/grpc+proto");
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("0", Header(response.TrailingHeaders, "grpc-status"));
    }

    [Fact]
    public async Task A_gzip_compressed_request_is_accepted()
    {
        var body = new HealthCheckRequest { Service = "loom.v1.Bridge" }.ToByteArray();
        using var compressed = new MemoryStream();
        await using (var gzip = new System.IO.Compression.GZipStream(compressed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            await gzip.WriteAsync(body);
        }

        var framed = new byte[5 + compressed.Length];
        framed[0] = 1; // compressed flag
        BinaryPrimitives.WriteUInt32BigEndian(framed.AsSpan(1), (uint)compressed.Length);
        compressed.ToArray().CopyTo(framed, 5);
        using var request = Grpc("/grpc.health.v1.Health/Check", framed);
        request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");
        using var response = await _http.SendAsync(request);
        var answer = await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("0", Header(response.TrailingHeaders, "grpc-status"));
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, HealthCheckResponse.Parser.ParseFrom(answer.AsSpan(5)).Status);
    }

    [Fact]
    public async Task A_grpc_timeout_that_passes_ends_the_call_with_deadline_exceeded()
    {
        // A call that waits: ForwardAction to a provider that never answers.
        await using var provider = await RawAgent.RegisterAsync(_bridge.GrpcAddress, WithCapability(Agent("mute"), "test.mute"));
        var call = new ForwardActionRequest { Call = new ActionCall { CallId = "t1", Capability = "test.mute", InputJson = ByteString.CopyFromUtf8("{}") } };
        using var request = Grpc("/loom.v1.Bridge/ForwardAction", Frame(call));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "300m");
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("4", Header(response.Headers, "grpc-status") ?? Header(response.TrailingHeaders, "grpc-status"));

        // The provider was told to stop.
        await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Cancel);
    }

    private static RegisterAgentRequest WithCapability(RegisterAgentRequest request, string name)
    {
        request.Capabilities.Add(new CapabilityDescriptor { Name = name, Version = "1.0.0", InputSchemaJson = "{}", OutputSchemaJson = "{}" });
        return request;
    }

    [Theory]
    [InlineData("/loom.v1.Bridge/NoSuchMethod")]
    [InlineData("/loom.v9.Nothing/Call")]
    public async Task An_unknown_method_or_service_is_unimplemented(string path)
    {
        using var request = Grpc(path, Frame(new HeartbeatRequest()));
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("12", Header(response.Headers, "grpc-status") ?? Header(response.TrailingHeaders, "grpc-status"));
    }

    [Fact]
    public async Task A_malformed_message_is_invalid_argument_naming_the_type()
    {
        // Field 1 as a length-delimited string whose length runs past the end.
        using var request = Grpc("/loom.v1.Bridge/RegisterAgent", [0, 0, 0, 0, 3, 0x0A, 0x7F, 0x41]);
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("3", Header(response.Headers, "grpc-status") ?? Header(response.TrailingHeaders, "grpc-status"));
        Assert.Contains("RegisterAgentRequest", Uri.UnescapeDataString(Header(response.Headers, "grpc-message") ?? Header(response.TrailingHeaders, "grpc-message") ?? ""), StringComparison.Ordinal);
        Assert.True(await StillServingAsync());
    }

    [Fact]
    public async Task A_request_over_the_size_limit_is_resource_exhausted_and_the_server_keeps_serving()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var request = Agent("too-big");
        request.Metadata["blob"] = new string('x', 300 * 1024);
        var ex = await Assert.ThrowsAsync<RpcException>(() => new Protocol.V1.Bridge.BridgeClient(channel).RegisterAgentAsync(request, deadline: DateTime.UtcNow + Short).ResponseAsync);
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
        Assert.True(await StillServingAsync());
    }

    [Fact]
    public async Task Grpc_is_served_on_the_grpc_port_only_and_http_endpoints_on_the_http_port_only()
    {
        using var healthz = new HttpRequestMessage(HttpMethod.Get, new Uri(_bridge.GrpcAddress, "/healthz")) { Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var onGrpcPort = await _http.SendAsync(healthz);
        Assert.Equal(HttpStatusCode.NotFound, onGrpcPort.StatusCode);

        using var ok = await _http.GetAsync(new Uri(_bridge.HttpAddress, "/healthz"));
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);

        // The HTTP port speaks HTTP/1.1 only; a gRPC path there is not served.
        using var onHttpPort = new HttpRequestMessage(HttpMethod.Post, new Uri(_bridge.HttpAddress, "/grpc.health.v1.Health/Check")) { Content = new ByteArrayContent(Frame(new HealthCheckRequest())) };
        onHttpPort.Content.Headers.ContentType = MediaTypeHeaderValue.Parse("application/grpc");
        using var refused = await _http.SendAsync(onHttpPort);
        Assert.NotEqual(HttpStatusCode.OK, refused.StatusCode);
    }

    [Fact]
    public async Task Reflection_lists_the_loom_services_on_loopback()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        using var call = new ServerReflection.ServerReflectionClient(channel).ServerReflectionInfo(deadline: DateTime.UtcNow + Short);
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var services = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).ToList();
        Assert.Contains("loom.v1.Bridge", services);
        Assert.Contains("loom.v1.Collaboration", services);
        Assert.Contains("grpc.health.v1.Health", services);

        // The descriptor of a Loom message comes back too, so tools can build requests.
        await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = "loom.v1.Bridge" });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.NotEmpty(call.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto);
        await call.RequestStream.CompleteAsync();
    }

    private sealed class CountingInterceptor(System.Collections.Concurrent.ConcurrentQueue<string> methods) : Grpc.Core.Interceptors.Interceptor
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Methods => methods;

        public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
        {
            Methods.Enqueue(context.Method);
            return continuation(request, context);
        }

        public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
        {
            Methods.Enqueue(context.Method);
            return continuation(requestStream, responseStream, context);
        }
    }

    [Fact]
    public async Task Server_interceptors_configured_on_the_bridge_see_its_calls()
    {
        var seen = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, ConfigureGrpc = o => o.Interceptors.Add<CountingInterceptor>(seen) }, _ => { });
        await bridge.StartAsync();
        await using var agent = await RawAgent.RegisterAsync(bridge.GrpcAddress, Agent("seen"));
        await Poll.UntilAsync(() => seen.Contains("/loom.v1.Bridge/EventStream"), Short, "the interceptor saw the stream");
        Assert.Contains("/loom.v1.Bridge/RegisterAgent", seen);
    }

    [Fact]
    public async Task Reflection_can_be_switched_off()
    {
        await using var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, GrpcReflection = false }, _ => { });
        await bridge.StartAsync();
        using var channel = GrpcChannel.ForAddress(bridge.GrpcAddress);
        using var call = new ServerReflection.ServerReflectionClient(channel).ServerReflectionInfo(deadline: DateTime.UtcNow + Short);
        var ex = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
    }

    [Fact]
    public async Task Health_watch_reports_not_serving_when_the_bridge_stops()
    {
        var bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, ShutdownTimeout = TimeSpan.FromSeconds(2) }, _ => { });
        await bridge.StartAsync();
        try
        {
            using var channel = GrpcChannel.ForAddress(bridge.GrpcAddress);
            using var watch = new Health.HealthClient(channel).Watch(new HealthCheckRequest { Service = "loom.v1.Bridge" }, deadline: DateTime.UtcNow + Short);
            Assert.True(await watch.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, watch.ResponseStream.Current.Status);

            var stopping = bridge.StopAsync();
            var sawNotServing = false;
            try
            {
                while (await watch.ResponseStream.MoveNext(CancellationToken.None))
                {
                    if (watch.ResponseStream.Current.Status == HealthCheckResponse.Types.ServingStatus.NotServing)
                    {
                        sawNotServing = true;
                        break;
                    }
                }
            }
            catch (RpcException)
            {
                // The server may close the watch once it is down; what it said before counts.
            }

            Assert.True(sawNotServing, "the watch saw NOT_SERVING before the bridge went away");
            await stopping.WaitAsync(Short);
        }
        finally
        {
            await bridge.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_stream_carries_more_than_kestrels_request_body_limit()
    {
        // Kestrel's default MaxRequestBodySize is 30 MB for a whole request; an EventStream lives far longer.
        await using var subscriber = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("big-sub", "bulk.done"));
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("big-pub"));
        var payload = ByteString.CopyFrom(new byte[100 * 1024]);
        for (var i = 0; i < 320; i++)
        {
            await publisher.SendAsync(new ClientMessage { Publish = new Envelope { Topic = "bulk.data", Payload = payload } });
        }

        await publisher.PublishAsync("bulk.done", "after 32 MB");
        var done = await subscriber.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver);
        Assert.Equal("after 32 MB", done.Deliver.Envelope.Payload.ToStringUtf8());
        Assert.Null(publisher.StreamError);
    }

    [Fact]
    public async Task Wire_bytes_are_counted_by_method_in_metrics()
    {
        using (var unknown = Grpc("/loom.v1.Bridge/NoSuchMethod", Frame(new HeartbeatRequest())))
        using (var refused = await _http.SendAsync(unknown))
        {
            await refused.Content.ReadAsByteArrayAsync(); // an unserved path gets no series of its own
        }

        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("counted", "counted.>"));
        await agent.PublishAsync("counted.one", "x");
        await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver);
        await Poll.UntilAsync(
            async ct =>
            {
                var text = await _http.GetStringAsync(new Uri(_bridge.HttpAddress, "/metrics"), ct);
                return text.Contains("method=\"/loom.v1.Bridge/EventStream\"", StringComparison.Ordinal)
                    && text.Contains("method=\"/loom.v1.Bridge/RegisterAgent\"", StringComparison.Ordinal)
                    && !text.Contains("NoSuchMethod", StringComparison.Ordinal);
            },
            Short,
            "EventStream and RegisterAgent counted under their methods");
    }

    private async Task<bool> StillServingAsync()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var answer = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest(), deadline: DateTime.UtcNow + Short);
        return answer.Status == HealthCheckResponse.Types.ServingStatus.Serving;
    }

    private async Task<Registration> RawAgentRegistration(RegisterAgentRequest request)
    {
        var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var response = await new Protocol.V1.Bridge.BridgeClient(channel).RegisterAgentAsync(request, deadline: DateTime.UtcNow + Short);
        return new Registration(channel, response.SessionId);
    }

    private sealed record Registration(GrpcChannel Channel, string SessionId) : IDisposable
    {
        public void Dispose() => Channel.Dispose();
    }
}
