using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Primitives;
using Microsoft.Net.Http.Headers;

namespace Loom.Grpc.Internal;

/// <summary>
/// Validates a gRPC request (PROTOCOL-HTTP2) and runs its method. Order of checks: POST (405), HTTP/2 (426),
/// content-type (415), known method (UNIMPLEMENTED), grpc-encoding (UNIMPLEMENTED), grpc-timeout (INTERNAL).
/// </summary>
internal sealed class GrpcMiddleware(RequestDelegate next, GrpcServiceRegistry registry, GrpcServerOptions options, ILogger logger)
{
    public Task InvokeAsync(HttpContext http)
    {
        var request = http.Request;
        var path = request.Path.Value ?? "";
        var method = registry.Find(path);
        if (method is null && !GrpcProtocol.IsGrpcContentType(request.ContentType))
        {
            return next(http);
        }

        if (!HttpMethods.IsPost(request.Method))
        {
            http.Response.Headers.Allow = HttpMethods.Post;
            return RejectHttpAsync(http, StatusCodes.Status405MethodNotAllowed, "gRPC requires POST.");
        }

        if (!HttpProtocol.IsHttp2(request.Protocol) && !HttpProtocol.IsHttp3(request.Protocol))
        {
            // Trailers (the status) need HTTP/2; cleartext clients must use prior knowledge on an HTTP/2-only listener.
            return RejectHttpAsync(http, StatusCodes.Status426UpgradeRequired, $"gRPC requires HTTP/2, not {request.Protocol}.");
        }

        if (!GrpcProtocol.IsSupportedContentType(request.ContentType))
        {
            return RejectHttpAsync(
                http,
                StatusCodes.Status415UnsupportedMediaType,
                $"Content-Type '{request.ContentType}' is not supported: use application/grpc or application/grpc+proto.");
        }

        if (method is null)
        {
            return RejectAsync(http, GrpcStatusCode.Unimplemented, $"Method '{path}' is not implemented by this server.");
        }

        var encoding = request.Headers[GrpcProtocol.EncodingHeader];
        if (!StringValues.IsNullOrEmpty(encoding)
            && !string.Equals(encoding.ToString(), GrpcProtocol.IdentityEncoding, StringComparison.OrdinalIgnoreCase))
        {
            return RejectAsync(
                http,
                GrpcStatusCode.Unimplemented,
                $"Unsupported grpc-encoding '{encoding}'. Supported encodings: identity.");
        }

        TimeSpan? timeout = null;
        var timeoutHeader = request.Headers[GrpcProtocol.TimeoutHeader];
        if (!StringValues.IsNullOrEmpty(timeoutHeader))
        {
            if (!GrpcTimeout.TryParse(timeoutHeader.ToString(), out var parsed))
            {
                return RejectAsync(
                    http,
                    GrpcStatusCode.Internal,
                    $"Malformed grpc-timeout '{timeoutHeader}': expected 1 to 8 digits followed by H, M, S, m, u or n.");
            }

            if (parsed <= TimeSpan.Zero)
            {
                return RejectAsync(http, GrpcStatusCode.DeadlineExceeded, "Deadline exceeded.");
            }

            timeout = parsed;
        }

        // te: trailers is required of clients by the spec, but Kestrel already refuses any other te value on
        // HTTP/2 and a missing one harms nothing here, so (like grpc-go and Grpc.AspNetCore) it is not enforced.
        return RunAsync(http, method, timeout);
    }

    private async Task RunAsync(HttpContext http, ServerMethod method, TimeSpan? timeout)
    {
        // A stream may idle for minutes and carry gigabytes over its life: Kestrel's body limits are for uploads.
        var minRate = http.Features.Get<IHttpMinRequestBodyDataRateFeature>();
        if (minRate is not null)
        {
            minRate.MinDataRate = null;
        }

        var maxSize = http.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (maxSize is { IsReadOnly: false })
        {
            maxSize.MaxRequestBodySize = null;
        }

        var response = http.Response;
        response.ContentType = GrpcProtocol.ContentType;
        response.Headers[GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.IdentityEncoding;

        using var call = new GrpcServerCall(http, method.Path, options, logger, timeout);
        Exception? failure = null;
        try
        {
            await method.InvokeAsync(call);
        }
        catch (Exception ex)
        {
            failure = ex;
        }

        await call.FinishAsync(failure);
    }

    private Task RejectAsync(HttpContext http, GrpcStatusCode status, string detail)
    {
        Log.Rejected(logger, http.Request.Path.Value ?? "", status, detail);
        ServerResponses.SetTrailersOnly(http.Response, status, detail);
        if (status == GrpcStatusCode.Unimplemented)
        {
            http.Response.Headers[GrpcProtocol.AcceptEncodingHeader] = GrpcProtocol.IdentityEncoding;
        }

        return Task.CompletedTask;
    }

    private Task RejectHttpAsync(HttpContext http, int statusCode, string reason)
    {
        Log.RejectedHttp(logger, http.Request.Method, http.Request.Path.Value ?? "", statusCode, reason);
        var response = http.Response;
        response.StatusCode = statusCode;
        response.ContentType = "text/plain; charset=utf-8";
        return response.WriteAsync(reason, http.RequestAborted);
    }
}
