namespace Loom.Grpc;

/// <summary>Options of a <see cref="GrpcChannel"/>.</summary>
public sealed class GrpcChannelOptions
{
    /// <summary>Largest response message accepted, in bytes; larger ones end the call with RESOURCE_EXHAUSTED. Default 4 MiB.</summary>
    public int MaxReceiveMessageSize { get; init; } = 4 * 1024 * 1024;

    /// <summary>Largest request message sent, in bytes; larger ones fail the write with RESOURCE_EXHAUSTED. Default 4 MiB.</summary>
    public int MaxSendMessageSize { get; init; } = 4 * 1024 * 1024;

    /// <summary>Interval of HTTP/2 keepalive pings while calls are active. Default 30 s.</summary>
    public TimeSpan KeepAlivePingDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A connection whose ping is not answered within this time is closed. Default 10 s.</summary>
    public TimeSpan KeepAlivePingTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Timeout of establishing a connection. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Handler to send requests with (owned by the caller, not disposed by the channel). Default null:
    /// the channel creates a <see cref="SocketsHttpHandler"/> configured from the options above.
    /// </summary>
    public HttpMessageHandler? Handler { get; init; }
}
