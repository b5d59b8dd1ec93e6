namespace Loom.Grpc;

/// <summary>A stream of incoming messages. One reader at a time.</summary>
public interface IGrpcStreamReader<T>
{
    /// <summary>Advances to the next message; false at the end of the stream.</summary>
    ValueTask<bool> MoveNextAsync(CancellationToken cancellationToken);

    /// <summary>The message read by the last successful <see cref="MoveNextAsync"/>.</summary>
    T Current { get; }
}
