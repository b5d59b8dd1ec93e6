using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Loom.Grpc;

/// <summary>Kestrel settings for serving gRPC.</summary>
public static class GrpcKestrel
{
    /// <summary>
    /// Configures Kestrel's HTTP/2 limits for gRPC: keepalive pings every 30 s with a 20 s timeout (to
    /// detect dead peers on long-lived streams), up to 1000 concurrent streams per connection, and
    /// flow-control windows of 1 MiB per stream and 2 MiB per connection for high throughput.
    /// Listeners still need <c>HttpProtocols.Http2</c> for cleartext (prior knowledge) gRPC.
    /// </summary>
    public static void ConfigureHttp2(KestrelServerOptions o)
    {
        ArgumentNullException.ThrowIfNull(o);
        var http2 = o.Limits.Http2;
        http2.KeepAlivePingDelay = TimeSpan.FromSeconds(30);
        http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(20);
        http2.MaxStreamsPerConnection = 1000;
        http2.InitialStreamWindowSize = 1024 * 1024;
        http2.InitialConnectionWindowSize = 2 * 1024 * 1024;
    }
}
