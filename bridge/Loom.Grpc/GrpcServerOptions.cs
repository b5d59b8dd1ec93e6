namespace Loom.Grpc;

/// <summary>Limits of the gRPC server middleware.</summary>
public sealed class GrpcServerOptions
{
    /// <summary>Largest request message accepted, in bytes; larger ones end the call with RESOURCE_EXHAUSTED. Default 4 MiB.</summary>
    public int MaxReceiveMessageSize { get; init; } = 4 * 1024 * 1024;

    /// <summary>Largest response message a handler may write, in bytes; larger ones fail the write with RESOURCE_EXHAUSTED. Default 4 MiB.</summary>
    public int MaxSendMessageSize { get; init; } = 4 * 1024 * 1024;

    /// <summary>Told about every message received and sent (for byte and message counters). Default none.</summary>
    public IGrpcServerObserver? Observer { get; init; }
}
