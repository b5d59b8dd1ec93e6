using System.Threading.Channels;
using Loom.Sdk.Internal;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// What every part of a connection shares: its settings, clock, logger, ids, and its lifecycle
/// (status, closing, disposed). Only the <see cref="Supervisor"/> and the facade change the status.
/// </summary>
internal sealed class ConnectionState(LoomConnectionOptions options, TimeProvider time, ILogger logger, string agentId, object sender)
{
    private readonly Lock _gate = new();
    private readonly Channel<ConnectionStatusChange> _changes =
        Channel.CreateBounded<ConnectionStatusChange>(new BoundedChannelOptions(64) { FullMode = BoundedChannelFullMode.DropOldest });
    private ConnectionStatus _status = ConnectionStatus.Connecting;
    private int _disposed;
    private volatile bool _closing;

    public LoomConnectionOptions Options { get; } = options;

    public TimeProvider Time { get; } = time;

    public ILogger Logger { get; } = logger;

    public string AgentId { get; } = agentId;

    public IdGenerator Ids { get; } = new();

    /// <summary>Cancelled when the connection is disposed or killed.</summary>
    public CancellationTokenSource Lifetime { get; } = new();

    public ConnectionStatus Status
    {
        get
        {
            lock (_gate)
            {
                return _status;
            }
        }
    }

    public bool IsConnected => Status == ConnectionStatus.Connected;

    public bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>True from the moment the connection starts closing (disposed or killed): nothing reconnects.</summary>
    public bool Closing
    {
        get => _closing;
        set => _closing = value;
    }

    public ChannelReader<ConnectionStatusChange> Changes => _changes.Reader;

    public event EventHandler<ConnectionStatusChange>? StatusChanged;

    /// <summary>True for the first caller only.</summary>
    public bool TryMarkDisposed() => Interlocked.Exchange(ref _disposed, 1) == 0;

    public void SetStatus(ConnectionStatus status, Exception? error, string sessionId)
    {
        ConnectionStatusChange change;
        lock (_gate)
        {
            if (_status == status || _status == ConnectionStatus.Closed)
            {
                return;
            }

            change = new ConnectionStatusChange(status, _status, error, Time.GetUtcNow(), sessionId);
            _status = status;
        }

        _changes.Writer.TryWrite(change);
        Log.StatusChanged(Logger, AgentId, change.Previous, status);
        try
        {
            StatusChanged?.Invoke(sender, change);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.StatusHandlerFailed(Logger, AgentId, ex);
        }
    }

    public void CompleteChanges() => _changes.Writer.TryComplete();
}

/// <summary>
/// Test hooks, outside the loops' code: a test freezes a connection (a hung process) by closing
/// this gate; the loops pass it once per frame or tick and otherwise never look at it.
/// </summary>
internal sealed class TestGate
{
    private TaskCompletionSource? _frozen;

    /// <summary>Null while open (always, outside tests); a task that never completes while frozen.</summary>
    public Task? Frozen => Volatile.Read(ref _frozen)?.Task;

    public bool IsFrozen => Volatile.Read(ref _frozen) is not null;

    public void Freeze() =>
        Interlocked.CompareExchange(ref _frozen, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), null);
}
