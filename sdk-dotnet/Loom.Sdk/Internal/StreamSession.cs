using Grpc.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>
/// One registration and its EventStream: the duplex call, its three loops (read, write,
/// heartbeat), and how it ended. A connection has one at a time and a new one per reconnect.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "The source has no timer; it is cancelled, never disposed, because the gRPC call may still hold its token.")]
internal sealed class StreamSession(int generation, RegisterAgentResponse registration, TimeSpan heartbeatInterval, int maxFrameMessages, int maxFrameBytes, long now)
{
    private readonly CancellationTokenSource _cancellation = new();
    private readonly TaskCompletionSource<Exception?> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ITimer? _releaseTimer;
    private long _lastReceived = now;
    private int _closed;

    public int Generation { get; } = generation;

    public RegisterAgentResponse Registration { get; } = registration;

    public string SessionId => Registration.SessionId;

    public TimeSpan HeartbeatInterval { get; } = heartbeatInterval;

    public int MaxFrameMessages { get; } = maxFrameMessages;

    public int MaxFrameBytes { get; } = maxFrameBytes;

    public CancellationToken Token => _cancellation.Token;

    public AsyncDuplexStreamingCall<FrameEncoder, ServerFrame>? Call { get; set; }

    public Task ReadLoop { get; set; } = Task.CompletedTask;

    public Task WriteLoop { get; set; } = Task.CompletedTask;

    public Task HeartbeatLoop { get; set; } = Task.CompletedTask;

    /// <summary>Completes with why the stream ended (null: a clean end we asked for).</summary>
    public Task<Exception?> Ended => _ended.Task;

    public long LastReceived => Volatile.Read(ref _lastReceived);

    public void Touch(long timestamp) => Volatile.Write(ref _lastReceived, timestamp);

    public void End(Exception? error) => _ended.TrySetResult(error);

    /// <summary>Completes when the write loop may send: at once, or after the settle that follows a bridge restart.</summary>
    public Task Released => _released.Task;

    /// <summary>Holds the write loop for <paramref name="settle"/> (called before the loop starts).</summary>
    public void HoldFor(TimeSpan settle, TimeProvider time)
    {
        Held = true;
        _releaseTimer = time.CreateTimer(static state => ((StreamSession)state!).Release(), this, settle, Timeout.InfiniteTimeSpan);
    }

    /// <summary>True when the write loop waits for <see cref="Released"/> before its first write.</summary>
    public bool Held { get; private set; }

    /// <summary>Ends a hold (its time is up, or the connection is closing and writes what is queued).</summary>
    public void Release()
    {
        _releaseTimer?.Dispose();
        _released.TrySetResult();
    }

    /// <summary>True for the first caller only: the stream is torn down once.</summary>
    public bool TryBeginClose() => Interlocked.Exchange(ref _closed, 1) == 0;

    public void Cancel()
    {
        _ended.TrySetResult(null);
        _releaseTimer?.Dispose();
        try
        {
            _cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already torn down.
        }
    }
}

/// <summary>A call the bridge pushed to this agent, being answered.</summary>
internal sealed record InflightCall(CancellationTokenSource Cancellation, int Generation)
{
    public void Cancel()
    {
        try
        {
            Cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Finished meanwhile.
        }
    }
}
