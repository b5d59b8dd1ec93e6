using Microsoft.AspNetCore.Http;

namespace Loom.Grpc.Internal;

internal static class ServerResponses
{
    /// <summary>Prepares a trailers-only response: HTTP 200, content-type and the status in the headers, no body.</summary>
    public static void SetTrailersOnly(HttpResponse response, GrpcStatusCode status, string? detail)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = GrpcProtocol.ContentType;
        var headers = response.Headers;
        headers[GrpcProtocol.StatusHeader] = GrpcProtocol.StatusToString(status);
        if (!string.IsNullOrEmpty(detail))
        {
            headers[GrpcProtocol.MessageHeader] = GrpcMessageText.Encode(detail);
        }
    }
}
