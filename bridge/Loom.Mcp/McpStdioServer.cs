using Loom.Mcp.Internal;
using Loom.Sdk;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;
using SdkServerOptions = ModelContextProtocol.Server.McpServerOptions;

namespace Loom.Mcp;

/// <summary>
/// <c>loom mcp</c>: an MCP server on stdin/stdout that serves the capabilities of a running
/// bridge. It connects to the bridge as an agent (a <see cref="LoomConnection"/> over gRPC) for
/// calls, which take the ActionBroker path to the providing agent whatever its language, and
/// lists capabilities from the bridge's <c>GET /v1/capabilities</c>.
/// </summary>
public static class McpStdioServer
{
    /// <summary>Serves until the input ends or <paramref name="cancellationToken"/> fires.</summary>
    /// <param name="grpcAddress">The bridge's gRPC address, e.g. <c>http://127.0.0.1:7070</c>.</param>
    /// <param name="httpAddress">The bridge's HTTP/1.1 address, e.g. <c>http://127.0.0.1:7071</c>.</param>
    /// <param name="options">Which capabilities to expose, and the call deadline (<see cref="McpExposeOptions.Enabled"/> and <see cref="McpExposeOptions.Path"/> do not apply).</param>
    /// <param name="input">MCP messages in (stdin).</param>
    /// <param name="output">MCP messages out (stdout; nothing else may be written there).</param>
    /// <param name="loggerFactory">Logging (to stderr); null for none.</param>
    /// <param name="time">Clock; null for the system clock.</param>
    /// <param name="token">
    /// A token for a bridge with auth on (its agent id is the token's identity, <paramref name="agentId"/>);
    /// null: <c>LOOM_TOKEN</c>, as every SDK connection. Sent on the gRPC calls; <paramref name="http"/> sends its own.
    /// </param>
    /// <param name="agentId">The agent id to register (the token's identity with auth on); null: the SDK's default.</param>
    /// <param name="http">The client for <c>GET /v1/capabilities</c> (with the credential and CA it needs); null: a plain one.</param>
    /// <param name="cancellationToken">Stops the server.</param>
    /// <exception cref="Loom.Core.LoomException">UNAVAILABLE when the bridge cannot be reached; UNAUTHENTICATED when it refuses the credential.</exception>
    public static async Task RunAsync(Uri grpcAddress, Uri httpAddress, McpExposeOptions options, Stream input, Stream output, ILoggerFactory? loggerFactory = null, TimeProvider? time = null, string? token = null, string? agentId = null, HttpClient? http = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(grpcAddress);
        ArgumentNullException.ThrowIfNull(httpAddress);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        loggerFactory ??= NullLoggerFactory.Instance;
        await using var connection = await LoomConnection.ConnectAsync(
            grpcAddress,
            token is null
                ? new LoomConnectionOptions { Name = "loom-mcp", LoggerFactory = loggerFactory, TimeProvider = time, AgentId = agentId }
                : new LoomConnectionOptions { Name = "loom-mcp", LoggerFactory = loggerFactory, TimeProvider = time, AgentId = agentId, Token = token },
            cancellationToken: cancellationToken).ConfigureAwait(false);
        using var ownHttp = http is null ? new HttpClient { Timeout = TimeSpan.FromSeconds(10) } : null;
        http ??= ownHttp!;
        var catalog = new ToolCatalog(new RemoteCapabilitySource(connection, http, httpAddress), options);
        ToolListNotifier? notifier = null;
        var serverOptions = new SdkServerOptions
        {
            ServerInfo = new Implementation { Name = McpHttpExposure.ServerName, Version = "0.1.0" },
            Capabilities = new ServerCapabilities { Tools = new ToolsCapability { ListChanged = true } },
            Handlers = new McpServerHandlers
            {
                ListToolsHandler = (request, ct) => notifier!.ListToolsAsync(request.Server, ct),
                CallToolHandler = (request, ct) => catalog.CallToolAsync(request.Params!, McpHttpExposure.CallerOf(request.Server), ct),
            },
        };

        var transport = new StreamServerTransport(input, output, McpHttpExposure.ServerName, loggerFactory);
        await using var server = McpServer.Create(transport, serverOptions, loggerFactory);
        notifier = new ToolListNotifier(catalog, options, time ?? TimeProvider.System, loggerFactory.CreateLogger("Loom.Mcp.Stdio"));
        await using var notifierLifetime = notifier;
        using (notifier.Track(server))
        {
            await server.RunAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
