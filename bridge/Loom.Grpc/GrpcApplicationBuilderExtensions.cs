using Loom.Grpc.Internal;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Grpc;

/// <summary>Hosts gRPC methods in an ASP.NET Core pipeline.</summary>
public static class GrpcApplicationBuilderExtensions
{
    /// <summary>
    /// Adds middleware that serves the registry's methods over gRPC (PROTOCOL-HTTP2). It handles every request
    /// whose content-type starts with application/grpc or whose path is a registered method; others pass to the
    /// next middleware. Unknown method: UNIMPLEMENTED (trailers-only). Non-POST: HTTP 405. Not HTTP/2: HTTP 426.
    /// A content-type other than application/grpc[+proto]: HTTP 415. grpc-encoding other than identity, or a
    /// compressed message: UNIMPLEMENTED with grpc-accept-encoding: identity. A message over
    /// <see cref="GrpcServerOptions.MaxReceiveMessageSize"/>: RESOURCE_EXHAUSTED. grpc-timeout sets the call's
    /// deadline (DEADLINE_EXCEEDED, and the call's token cancelled). A handler's <see cref="GrpcStatusException"/>
    /// sets the status; any other exception is logged and becomes UNKNOWN "Exception was thrown by handler.".
    /// Serve it on an HTTP/2-only listener (see <see cref="GrpcKestrel.ConfigureHttp2"/>).
    /// </summary>
    public static IApplicationBuilder UseGrpcServices(
        this IApplicationBuilder app,
        GrpcServiceRegistry registry,
        GrpcServerOptions options,
        ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxReceiveMessageSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxSendMessageSize);
        var logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger("Loom.Grpc");
        return app.Use(next => new GrpcMiddleware(next, registry, options, logger).InvokeAsync);
    }
}
