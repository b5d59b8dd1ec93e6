namespace Loom.Grpc;

/// <summary>A stream of outgoing messages. Single writer; every write is flushed to the wire.</summary>
public interface IGrpcStreamWriter<T>
{
    ValueTask WriteAsync(T message, CancellationToken cancellationToken);
}
