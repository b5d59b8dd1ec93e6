using Loom.Core;
using Loom.Mcp.Internal;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using ModelContextProtocol.AspNetCore;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace Loom.Mcp;

/// <summary>
/// Serves the capabilities of an <see cref="ActionBroker"/> to MCP clients over streamable HTTP
/// (ModelContextProtocol.AspNetCore): <see cref="AddLoomMcp"/> before the app is built,
/// <see cref="MapLoomMcp"/> after. Calls go through the broker to the providing agent.
/// </summary>
public static class McpHttpExposure
{
    /// <summary>Server name announced to MCP clients.</summary>
    public const string ServerName = "loom";

    /// <summary>Registers the MCP server services: tools are the broker's capabilities that <paramref name="options"/> selects.</summary>
    public static IServiceCollection AddLoomMcp(this IServiceCollection services, McpExposeOptions options, ActionBroker broker, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(broker);
        options.Validate();
        var catalog = new ToolCatalog(new BrokerCapabilitySource(broker), options);

        // The MCP SDK logs every request at Information; keep the bridge's log for what matters.
        services.Configure<LoggerFilterOptions>(o => o.AddFilter("ModelContextProtocol", LogLevel.Warning));
        services.AddSingleton(sp => new ToolListNotifier(catalog, options, time ?? TimeProvider.System, sp.GetRequiredService<ILoggerFactory>().CreateLogger("Loom.Mcp.Exposure")));
        services
            .AddMcpServer(o =>
            {
                o.ServerInfo = new Implementation { Name = ServerName, Version = "0.1.0" };
                o.Capabilities = new ServerCapabilities { Tools = new ToolsCapability { ListChanged = true } };
            })
            .WithHttpTransport(t =>
            {
                // Sessions, so that clients get notifications/tools/list_changed on their GET
                // stream; clients of the sessionless 2026-07-28 revision are asked to downgrade.
                t.SessionMode = HttpServerSessionMode.Stateful;

                // Experimental in 2.3.1 (pinned): the one hook that hands us each session's server,
                // which tools/list_changed notifications need.
#pragma warning disable MCPEXP002
                t.RunSessionHandler = async (http, server, cancellationToken) =>
                {
                    var notifier = http.RequestServices.GetRequiredService<ToolListNotifier>();
                    using (notifier.Track(server))
                    {
                        await server.RunAsync(cancellationToken).ConfigureAwait(false);
                    }
                };
#pragma warning restore MCPEXP002
            })
            .WithListToolsHandler((request, cancellationToken) => request.Services!.GetRequiredService<ToolListNotifier>().ListToolsAsync(request.Server, cancellationToken))
            .WithCallToolHandler((request, cancellationToken) => catalog.CallToolAsync(request.Params!, CallerOf(request.Server), cancellationToken));
        return services;
    }

    /// <summary>Maps the streamable-HTTP endpoint at <see cref="McpExposeOptions.Path"/>.</summary>
    public static IEndpointConventionBuilder MapLoomMcp(this IEndpointRouteBuilder endpoints, McpExposeOptions options)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(options);
        return endpoints.MapMcp(options.Path);
    }

    internal static string CallerOf(McpServer server) => "mcp-client:" + (server.ClientInfo?.Name is { Length: > 0 } name ? name : "unknown");
}
