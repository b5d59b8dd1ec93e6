using System.Net;
using Loom.Protocol.V1;

namespace Loom.Grpc.Tests;

/// <summary>Hand-made HTTP/2 requests: what the server puts on the wire, independent of our client.</summary>
public sealed class RawProtocolTests(GrpcServerFixture fixture) : IClassFixture<GrpcServerFixture>, IDisposable
{
    private readonly HttpClient _http = TestUtil.RawClient();

    private Uri Address => fixture.Server.Address;

    public void Dispose() => _http.Dispose();

    [Fact]
    public async Task Unary_response_has_headers_one_message_and_status_in_trailers()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", TestUtil.Frame(new HeartbeatRequest { Sequence = 5 }));
        using var response = await _http.SendAsync(request);
        var body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        Assert.Null(TestUtil.Header(response.Headers, "grpc-status"));
        Assert.Equal(TestUtil.Frame(new HeartbeatResponse { HeartbeatIntervalMs = 1000, ServerUnixMs = 10 }), body);
        Assert.Equal("0", TestUtil.Header(response.TrailingHeaders, "grpc-status"));
    }

    [Fact]
    public async Task Early_error_is_trailers_only()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.test.Test/RejectAtOnce", []);
        using var response = await _http.SendAsync(request);
        var body = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("7", TestUtil.Header(response.Headers, "grpc-status"));
        Assert.Equal("not allowed: no token", TestUtil.Header(response.Headers, "grpc-message"));
        Assert.Equal("application/grpc", response.Content.Headers.ContentType?.MediaType);
        Assert.Empty(body);
        Assert.Empty(response.TrailingHeaders);
    }

    [Fact]
    public async Task Non_ascii_status_message_is_percent_encoded_on_the_wire()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.test.Test/Fail",
            TestUtil.Frame(new HeartbeatRequest { SessionId = "é 100%", Sequence = 9 }));
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();

        Assert.Equal("9", TestUtil.Header(response.Headers, "grpc-status"));
        Assert.Equal("%C3%A9 100%25", TestUtil.Header(response.Headers, "grpc-message"));
    }

    [Fact]
    public async Task Wrong_content_type_on_a_grpc_path_is_415()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", [], "application/json");
        using var response = await _http.SendAsync(request);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);

        using var json = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", [], "application/grpc+json");
        using var jsonResponse = await _http.SendAsync(json);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, jsonResponse.StatusCode);
    }

    [Fact]
    public async Task Grpc_proto_content_type_is_served()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", TestUtil.Frame(new HeartbeatRequest()), "application/grpc+proto");
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("0", TestUtil.Header(response.TrailingHeaders, "grpc-status"));
    }

    [Fact]
    public async Task Non_post_is_405()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(Address, "/loom.v1.Bridge/Heartbeat"))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        using var response = await _http.SendAsync(request);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, response.StatusCode);
        Assert.Contains("POST", response.Content.Headers.Allow);
    }

    [Fact]
    public async Task Other_requests_pass_to_the_next_middleware()
    {
        using var response = await _http.GetAsync(new Uri(Address, "/healthz"));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("fallback", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Grpc_encoding_gzip_is_unimplemented_with_accept_encoding()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", TestUtil.Frame(new HeartbeatRequest(), compressedFlag: 1));
        request.Headers.TryAddWithoutValidation("grpc-encoding", "gzip");
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();

        Assert.Equal("12", TestUtil.Header(response.Headers, "grpc-status"));
        Assert.Contains("gzip", TestUtil.Header(response.Headers, "grpc-message"), StringComparison.Ordinal);
        Assert.Equal("identity", TestUtil.Header(response.Headers, "grpc-accept-encoding"));
    }

    [Fact]
    public async Task Compressed_flag_without_encoding_is_unimplemented()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", TestUtil.Frame(new HeartbeatRequest(), compressedFlag: 1));
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();

        Assert.Equal("12", TestUtil.Header(response.Headers, "grpc-status"));
        Assert.Equal("identity", TestUtil.Header(response.Headers, "grpc-accept-encoding"));
    }

    [Fact]
    public async Task Server_enforces_grpc_timeout_with_deadline_exceeded_in_trailers()
    {
        var id = Guid.NewGuid().ToString("N");
        using var request = TestUtil.RawRequest(Address, "/loom.test.Test/WaitForCancel", TestUtil.Frame(new HeartbeatRequest()));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "200m");
        request.Headers.TryAddWithoutValidation("x-probe", id);
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();

        var status = TestUtil.Header(response.TrailingHeaders, "grpc-status") ?? TestUtil.Header(response.Headers, "grpc-status");
        Assert.Equal("4", status);
        Assert.True(fixture.ProbeFor(id).Cancelled.Task.IsCompleted, "the handler's token was cancelled before the status was sent");
    }

    [Fact]
    public async Task Malformed_grpc_timeout_is_rejected()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", TestUtil.Frame(new HeartbeatRequest()));
        request.Headers.TryAddWithoutValidation("grpc-timeout", "1000000000S");
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("13", TestUtil.Header(response.Headers, "grpc-status"));
        Assert.Contains("grpc-timeout", TestUtil.Header(response.Headers, "grpc-message"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unary_without_a_message_is_internal()
    {
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", []);
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("13", TestUtil.Header(response.Headers, "grpc-status"));
    }

    [Fact]
    public async Task Truncated_message_is_internal()
    {
        var framed = TestUtil.Frame(new HeartbeatRequest { SessionId = "abcdef" });
        using var request = TestUtil.RawRequest(Address, "/loom.v1.Bridge/Heartbeat", framed[..^2]);
        using var response = await _http.SendAsync(request);
        await response.Content.ReadAsByteArrayAsync();
        Assert.Equal("13", TestUtil.Header(response.Headers, "grpc-status"));
    }
}
