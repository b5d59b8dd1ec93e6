using Microsoft.Extensions.Logging;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Loom.Mcp.Internal;

/// <summary>
/// Tracks the MCP sessions being served and the tool set each one last listed. While there are
/// sessions, the exposed capability set is checked every <see cref="McpExposeOptions.RefreshInterval"/>;
/// a session whose last listing differs from it gets <c>notifications/tools/list_changed</c> (once
/// per change: it is then considered up to date until it lists again).
/// </summary>
internal sealed class ToolListNotifier : IAsyncDisposable
{
    private readonly ToolCatalog _catalog;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Session> _sessions = new(StringComparer.Ordinal);
    private readonly ITimer _timer;
    private int _running;

    public ToolListNotifier(ToolCatalog catalog, McpExposeOptions options, TimeProvider time, ILogger logger)
    {
        _catalog = catalog;
        _logger = logger;
        _timer = time.CreateTimer(_ => _ = TickAsync(), null, options.RefreshInterval, options.RefreshInterval);
    }

    /// <summary>Tracks a session until the returned handle is disposed.</summary>
    public IDisposable Track(McpServer server)
    {
        var key = KeyOf(server);
        lock (_gate)
        {
            _sessions[key] = new Session(server);
        }

        return new Untrack(this, key);
    }

    /// <summary>Lists the tools for a session and remembers what it saw.</summary>
    public async ValueTask<ListToolsResult> ListToolsAsync(McpServer server, CancellationToken cancellationToken)
    {
        var (result, signature) = await _catalog.ListToolsAsync(cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            if (_sessions.TryGetValue(KeyOf(server), out var session))
            {
                session.Listed = signature;
            }
        }

        return result;
    }

    public async ValueTask DisposeAsync()
    {
        await _timer.DisposeAsync().ConfigureAwait(false);
    }

    private static string KeyOf(McpServer server) => server.SessionId ?? "";

    private async Task TickAsync()
    {
        if (Interlocked.Exchange(ref _running, 1) == 1)
        {
            return;
        }

        try
        {
            lock (_gate)
            {
                if (!_sessions.Values.Any(s => s.Listed is not null))
                {
                    return;
                }
            }

            string current;
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
            {
                current = await _catalog.RefreshAsync(timeout.Token).ConfigureAwait(false);
            }

            List<McpServer> stale = [];
            lock (_gate)
            {
                foreach (var session in _sessions.Values)
                {
                    if (session.Listed is not null && !string.Equals(session.Listed, current, StringComparison.Ordinal))
                    {
                        session.Listed = current;
                        stale.Add(session.Server);
                    }
                }
            }

            if (stale.Count == 0)
            {
                return;
            }

            Log.ExposedToolsChanged(_logger, stale.Count);
            foreach (var server in stale)
            {
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await server.SendNotificationAsync(NotificationMethods.ToolListChangedNotification, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Log.NotifyFailed(_logger, ex.Message);
                }
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.ListFailed(_logger, ex.Message);
        }
        finally
        {
            Volatile.Write(ref _running, 0);
        }
    }

    private sealed class Session(McpServer server)
    {
        public McpServer Server { get; } = server;

        /// <summary>Signature of the tool set the session last listed; null until it lists.</summary>
        public string? Listed { get; set; }
    }

    private sealed class Untrack(ToolListNotifier owner, string key) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._gate)
            {
                owner._sessions.Remove(key);
            }
        }
    }
}
