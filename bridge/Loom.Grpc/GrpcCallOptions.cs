namespace Loom.Grpc;

/// <summary>Options of one client call.</summary>
public sealed class GrpcCallOptions
{
    /// <summary>Request metadata (lowercase names; names ending in <c>-bin</c> carry base64 values). Default none.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Headers { get; init; }

    /// <summary>Sent as <c>grpc-timeout</c> and enforced locally: the call ends with DEADLINE_EXCEEDED. Default none.</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>Cancels the call (resets the HTTP/2 stream); the call ends with CANCELLED. Default none.</summary>
    public CancellationToken CancellationToken { get; init; }
}
