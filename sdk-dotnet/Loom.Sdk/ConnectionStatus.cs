namespace Loom.Sdk;

/// <summary>The state of a <see cref="LoomConnection"/>.</summary>
public enum ConnectionStatus
{
    /// <summary>Created; <see cref="LoomConnection.ConnectAsync(System.Threading.CancellationToken)"/> has not succeeded yet.</summary>
    Connecting,

    /// <summary>Registered, with an open event stream.</summary>
    Connected,

    /// <summary>The stream broke; the connection is registering again with backoff.</summary>
    Reconnecting,

    /// <summary>Disposed (or killed); it will not connect again.</summary>
    Closed,
}

/// <summary>One status transition of a <see cref="LoomConnection"/>.</summary>
/// <param name="Status">The new status.</param>
/// <param name="Previous">The status before.</param>
/// <param name="Error">Why the stream broke (for <see cref="ConnectionStatus.Reconnecting"/>), else null.</param>
/// <param name="At">When it happened.</param>
/// <param name="SessionId">The session of the new stream (for <see cref="ConnectionStatus.Connected"/>), else empty.</param>
public sealed record ConnectionStatusChange(ConnectionStatus Status, ConnectionStatus Previous, Exception? Error, DateTimeOffset At, string SessionId);
