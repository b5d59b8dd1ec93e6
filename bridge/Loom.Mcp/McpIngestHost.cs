using Loom.Core;
using Loom.Mcp.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Mcp;

/// <summary>
/// Ingests MCP servers' tools as Loom capabilities: one provider per server (<c>mcp:{name}</c>)
/// registers each tool with the <see cref="ActionBroker"/> as <c>{name}:{tool}</c>, so every
/// agent calls it like any capability (routing, input validation, deadlines, cancellation).
/// Servers connect in the background: <see cref="Start"/> does not wait for them.
/// </summary>
public sealed class McpIngestHost : IAsyncDisposable
{
    private readonly McpServerConnection[] _servers;
    private int _started;
    private int _stopped;

    /// <summary>Validates the settings; nothing starts until <see cref="Start"/>.</summary>
    /// <exception cref="ArgumentException">A server's settings are wrong, or two servers share a name.</exception>
    public McpIngestHost(IEnumerable<McpServerOptions> servers, ActionBroker broker, AgentDirectory? agents = null, TimeProvider? time = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(servers);
        ArgumentNullException.ThrowIfNull(broker);
        var list = servers.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var server in list)
        {
            ArgumentNullException.ThrowIfNull(server);
            server.Validate();
            if (!names.Add(server.Name))
            {
                throw new ArgumentException($"Two MCP servers are named '{server.Name}'; give each a distinct name.", nameof(servers));
            }
        }

        _servers = list.Select(s => new McpServerConnection(s, broker, agents, time ?? TimeProvider.System, loggerFactory ?? NullLoggerFactory.Instance)).ToArray();
    }

    /// <summary>The servers and their state.</summary>
    public IReadOnlyList<McpServerStatus> Servers => Array.ConvertAll(_servers, s => s.Status);

    /// <summary>Starts connecting every server (in the background; failures are retried with backoff).</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) == 1)
        {
            throw new InvalidOperationException("The MCP host is already started.");
        }

        foreach (var server in _servers)
        {
            server.Start();
        }
    }

    /// <summary>Disconnects every server (stdio processes are stopped) and unregisters their capabilities.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        await Task.WhenAll(_servers.Select(s => s.DisposeAsync().AsTask())).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await StopAsync(bound.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Past the bound: processes are left to the transport's own shutdown.
        }
    }
}
