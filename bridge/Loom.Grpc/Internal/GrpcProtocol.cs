using System.Globalization;
using System.Net;

namespace Loom.Grpc.Internal;

/// <summary>Names and values of the gRPC over HTTP/2 protocol (grpc/doc/PROTOCOL-HTTP2.md).</summary>
internal static class GrpcProtocol
{
    public const string ContentType = "application/grpc";
    public const string StatusHeader = "grpc-status";
    public const string MessageHeader = "grpc-message";
    public const string TimeoutHeader = "grpc-timeout";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";
    public const string IdentityEncoding = "identity";
    public const string UserAgent = "grpc-dotnet-loom/0.1.0";

    /// <summary>Content-type family handled by the gRPC middleware (includes variants we reject with 415).</summary>
    public static bool IsGrpcContentType(string? contentType) =>
        contentType is not null && contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase);

    /// <summary>The content types we can serve: application/grpc and application/grpc+proto, optionally with parameters.</summary>
    public static bool IsSupportedContentType(string? contentType)
    {
        if (contentType is null)
        {
            return false;
        }

        var mediaType = contentType.AsSpan();
        var semicolon = mediaType.IndexOf(';');
        if (semicolon >= 0)
        {
            mediaType = mediaType[..semicolon];
        }

        mediaType = mediaType.Trim();
        return mediaType.Equals(ContentType, StringComparison.OrdinalIgnoreCase)
            || mediaType.Equals("application/grpc+proto", StringComparison.OrdinalIgnoreCase);
    }

    public static string StatusToString(GrpcStatusCode status) =>
        ((int)status).ToString(CultureInfo.InvariantCulture);

    /// <summary>Parses a grpc-status value: decimal digits without sign or spaces.</summary>
    public static bool TryParseStatus(string? value, out GrpcStatusCode status)
    {
        status = GrpcStatusCode.Unknown;
        if (string.IsNullOrEmpty(value) || value.Length > 9)
        {
            return false;
        }

        var code = 0;
        foreach (var c in value)
        {
            if (c is < '0' or > '9')
            {
                return false;
            }

            code = (code * 10) + (c - '0');
        }

        status = (GrpcStatusCode)code;
        return true;
    }

    /// <summary>Status synthesized for a non-200 HTTP response (grpc/doc/http-grpc-status-mapping.md).</summary>
    public static GrpcStatusCode StatusFromHttp(HttpStatusCode code) => code switch
    {
        HttpStatusCode.BadRequest => GrpcStatusCode.Internal,
        HttpStatusCode.Unauthorized => GrpcStatusCode.Unauthenticated,
        HttpStatusCode.Forbidden => GrpcStatusCode.PermissionDenied,
        HttpStatusCode.NotFound => GrpcStatusCode.Unimplemented,
        HttpStatusCode.TooManyRequests or HttpStatusCode.BadGateway
            or HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout => GrpcStatusCode.Unavailable,
        _ => GrpcStatusCode.Unknown,
    };

    /// <summary>Status for an HTTP/2 RST_STREAM error code received from the server (PROTOCOL-HTTP2 "Errors").</summary>
    public static GrpcStatusCode StatusFromHttp2Error(long errorCode) => errorCode switch
    {
        0x7 => GrpcStatusCode.Unavailable,        // REFUSED_STREAM: nothing was processed
        0x8 => GrpcStatusCode.Cancelled,          // CANCEL
        0xb => GrpcStatusCode.ResourceExhausted,  // ENHANCE_YOUR_CALM
        0xc => GrpcStatusCode.PermissionDenied,   // INADEQUATE_SECURITY
        _ => GrpcStatusCode.Internal,
    };

    /// <summary>True for a metadata name we accept: lowercase token characters (HTTP/2 requires lowercase).</summary>
    public static bool IsValidMetadataName(string name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_' or '.'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>True for a metadata value HTTP/2 can carry as is: printable ASCII.</summary>
    public static bool IsValidMetadataValue(string value)
    {
        foreach (var c in value)
        {
            if (c is < ' ' or > '~')
            {
                return false;
            }
        }

        return true;
    }
}
