namespace Loom.Grpc;

/// <summary>
/// A stream writer that also takes messages already serialized (for callers that encode a
/// message by hand, e.g. to serialize a shared sub-message once). Single writer; every write is flushed.
/// </summary>
public interface IGrpcRawStreamWriter
{
    /// <summary>Writes one message given as its protobuf bytes (without the 5-byte gRPC framing, which is added).</summary>
    ValueTask WriteRawAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken);
}
