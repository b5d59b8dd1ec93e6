using System.Net;
using Microsoft.AspNetCore.Http;

namespace Loom.Bridge.Internal;

/// <summary>
/// DNS-rebinding protection for <c>/mcp</c> (issue 16, defect 5), as the MCP specification asks of
/// HTTP servers: the <c>Host</c> header must name a loopback host (localhost, 127.0.0.1, ::1), the
/// address the bridge is bound to, or one of <see cref="BridgeOptions.McpAllowedHosts"/>; an
/// <c>Origin</c> header, when sent, must name such a host too. Anything else is 403 with a message
/// saying which header and how to allow it.
/// </summary>
internal static class McpOriginGuard
{
    public static Func<HttpContext, RequestDelegate, Task> For(BridgeOptions options) => (context, next) =>
    {
        if (!context.Request.Path.StartsWithSegments(options.Mcp.Path, StringComparison.OrdinalIgnoreCase))
        {
            return next(context);
        }

        var problem = Check(context.Request.Host.Host, context.Request.Headers.Origin.ToString(), options);
        if (problem is null)
        {
            return next(context);
        }

        context.Response.StatusCode = StatusCodes.Status403Forbidden;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(problem + "\n");
    };

    /// <summary>Why a request with this Host and Origin is refused; null when it is let through.</summary>
    internal static string? Check(string host, string origin, BridgeOptions options)
    {
        if (!Allowed(host, options))
        {
            return $"{options.Mcp.Path} refuses Host '{LogText.Clean(host, 100)}': only loopback hosts (localhost, 127.0.0.1, ::1) and the hosts in mcp_allowed_hosts may reach it (DNS-rebinding protection). Add the host to bridge.mcp_allowed_hosts if it is yours.";
        }

        if (origin.Length == 0)
        {
            return null;
        }

        if (!Uri.TryCreate(origin, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || !Allowed(uri.Host, options))
        {
            return $"{options.Mcp.Path} refuses Origin '{LogText.Clean(origin, 100)}': a browser page may reach it only from a loopback origin or a host in mcp_allowed_hosts (DNS-rebinding protection). Add the page's host to bridge.mcp_allowed_hosts if it is yours.";
        }

        return null;
    }

    private static bool Allowed(string host, BridgeOptions options)
    {
        var bare = host.Trim('[', ']');
        if (bare.Equals("localhost", StringComparison.OrdinalIgnoreCase) || (IPAddress.TryParse(bare, out var ip) && IPAddress.IsLoopback(ip)))
        {
            return true;
        }

        if (!IsWildcard(options.Host) && bare.Equals(options.Host.Trim('[', ']'), StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        return options.McpAllowedHosts.Contains(bare, StringComparer.OrdinalIgnoreCase);
    }

    private static bool IsWildcard(string host) => host is "*" or "0.0.0.0" or "::";
}
