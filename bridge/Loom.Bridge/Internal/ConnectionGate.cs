using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

/// <summary>
/// Kestrel connection middleware in front of both listeners: at most
/// <see cref="BridgeOptions.MaxConnections"/> open connections in total and
/// <see cref="BridgeOptions.MaxConnectionsPerAddress"/> from one remote address, and a connection
/// that sends nothing within <see cref="BridgeOptions.HandshakeTimeout"/> is closed. A refused
/// connection is closed at once, counted by reason, and logged once per episode (a flood of
/// refusals is one line, not one per connection).
/// </summary>
internal sealed partial class ConnectionGate(BridgeOptions options, Metrics.BridgeMetrics metrics, ILogger logger, TimeProvider time)
{
    private readonly ConcurrentDictionary<IPAddress, int> _perAddress = new();
    private readonly int _maxConnections = options.MaxConnections > 0 ? options.MaxConnections : DefaultMaxConnections();
    private readonly LogLimiter _refusals = new(logger, "connection refused", time, burst: 1);
    private int _open;

    /// <summary>Open connections now.</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>The limit in force (configured, or derived from the machine's memory).</summary>
    public int MaxConnections => _maxConnections;

    /// <summary>
    /// One connection per 2 MiB of the memory the process may use, between 1,024 and 65,536: a
    /// connection costs Kestrel tens of KB at rest and more in flight, so this leaves room for the
    /// sessions behind them (24 GiB gives 12,288).
    /// </summary>
    public static int DefaultMaxConnections() =>
        (int)Math.Clamp(GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (2L * 1024 * 1024), 1024, 65536);

    public ConnectionDelegate Wrap(ConnectionDelegate next) => connection => ServeAsync(connection, next);

    private async Task ServeAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var address = (connection.RemoteEndPoint as IPEndPoint)?.Address;
        var countedAddress = false;
        try
        {
            // The first statement of the try: the finally's decrement always matches it.
            if (Interlocked.Increment(ref _open) > _maxConnections)
            {
                Refuse("limit", address, $"{_maxConnections} connections are open (max_connections)");
                return;
            }

            if (address is not null && options.MaxConnectionsPerAddress > 0)
            {
                countedAddress = true;
                if (_perAddress.AddOrUpdate(address, 1, static (_, n) => n + 1) > options.MaxConnectionsPerAddress)
                {
                    Refuse("per_address_limit", address, $"{options.MaxConnectionsPerAddress} connections from this address are open (max_connections_per_address)");
                    return;
                }
            }

            // Wait (bounded) for the first bytes without consuming them: the server reads them next.
            var input = connection.Transport.Input;
            using var handshake = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
            handshake.CancelAfter(options.HandshakeTimeout);
            System.IO.Pipelines.ReadResult first;
            try
            {
                first = await input.ReadAsync(handshake.Token);
            }
            catch (OperationCanceledException) when (!connection.ConnectionClosed.IsCancellationRequested)
            {
                Refuse("handshake_timeout", address, $"it sent nothing within {options.HandshakeTimeout.TotalMilliseconds:0} ms");
                return;
            }

            input.AdvanceTo(first.Buffer.Start);
            if (first.IsCompleted && first.Buffer.IsEmpty)
            {
                return;
            }

            await next(connection);
        }
        catch (OperationCanceledException) when (connection.ConnectionClosed.IsCancellationRequested)
        {
            // The peer went away before it said anything.
        }
        finally
        {
            if (countedAddress && address is not null)
            {
                Release(address);
            }

            Interlocked.Decrement(ref _open);
        }
    }

    private void Release(IPAddress address)
    {
        while (_perAddress.TryGetValue(address, out var n))
        {
            if (n <= 1 ? _perAddress.TryRemove(new KeyValuePair<IPAddress, int>(address, n)) : _perAddress.TryUpdate(address, n - 1, n))
            {
                return;
            }
        }
    }

    private void Refuse(string reason, IPAddress? address, string why)
    {
        metrics.ConnectionRefused(reason);
        if (_refusals.TryEnter(out var suppressed))
        {
            ConnectionRefused(logger, address?.ToString() ?? "(unknown)", why, suppressed);
        }
    }

    [LoggerMessage(40, LogLevel.Warning, "Refused a connection from {Address}: {Why} ({Suppressed} more refused since the last such line; see loom_connections_refused_total)")]
    private static partial void ConnectionRefused(ILogger logger, string address, string why, long suppressed);
}
