using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace Loom.Bridge.Internal;

/// <summary>
/// Audits the HTTP port's admin surface: a 401 is a credential failure, a 403 a refusal (with auth
/// on or off: the <c>/mcp</c> Host and Origin checks too), an MCP <c>tools/call</c> an admin action
/// naming the tool, and anything on <c>/v1/*</c> that is not a GET an admin action. Successful reads
/// (<c>GET /v1/*</c>, other MCP methods) only with <see cref="AuditOptions.IncludeReads"/>;
/// <c>/metrics</c> and <c>/healthz</c> successes never (a scraper would fill the log).
/// </summary>
internal static class AdminAudit
{
    /// <summary>Largest MCP request body read to find the method and tool name.</summary>
    private const int MaxPeekBytes = 64 * 1024;

    public static Func<HttpContext, RequestDelegate, Task> For(AuditLog audit, Func<int> httpPort) => async (context, next) =>
    {
        var path = context.Request.Path;
        var mcp = path.StartsWithSegments("/mcp");
        if (context.Connection.LocalPort != httpPort() || !(mcp || path.StartsWithSegments("/v1") || path.StartsWithSegments("/metrics")))
        {
            await next(context);
            return;
        }

        string? method = null, tool = null;
        if (mcp && HttpMethods.IsPost(context.Request.Method))
        {
            (method, tool) = await PeekRpcAsync(context);
        }

        await next(context);
        var status = context.Response.StatusCode;
        string kind;
        string outcome;
        if (status == StatusCodes.Status401Unauthorized)
        {
            (kind, outcome) = (AuditRecord.Credential, "unauthenticated");
        }
        else if (status == StatusCodes.Status403Forbidden)
        {
            (kind, outcome) = (AuditRecord.Refusal, "denied");
        }
        else if ((mcp && method == "tools/call") || (!mcp && !path.StartsWithSegments("/metrics") && !HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method)))
        {
            (kind, outcome) = (AuditRecord.Admin, status < 400 ? "ok" : $"http_{status}");
        }
        else if (audit.IncludeReads && !path.StartsWithSegments("/metrics"))
        {
            (kind, outcome) = (AuditRecord.Admin, status < 400 ? "ok" : $"http_{status}");
        }
        else
        {
            return;
        }

        audit.Record(new AuditRecord(kind, mcp && method is not null ? $"mcp {method}" : $"{context.Request.Method} {path}", outcome)
        {
            Identity = AdminAccess.IdentityOf(context),
            Resource = tool ?? path.Value,
            Reason = status >= 400 ? $"HTTP {status}" : null,
            Remote = context.Connection.RemoteIpAddress is { } ip ? $"{ip}:{context.Connection.RemotePort}" : null,
        });
    };

    /// <summary>The JSON-RPC method and, for tools/call, the tool's name; the body is left for the endpoint to read.</summary>
    private static async Task<(string? Method, string? Tool)> PeekRpcAsync(HttpContext context)
    {
        if (context.Request.ContentLength is > MaxPeekBytes)
        {
            return (null, null);
        }

        context.Request.EnableBuffering(MaxPeekBytes);
        var buffer = new byte[MaxPeekBytes];
        var read = 0;
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        bound.CancelAfter(TimeSpan.FromSeconds(10));
        try
        {
            int n;
            while (read < buffer.Length && (n = await context.Request.Body.ReadAsync(buffer.AsMemory(read), bound.Token)) > 0)
            {
                read += n;
            }
        }
        catch (OperationCanceledException)
        {
            return (null, null);
        }
        finally
        {
            context.Request.Body.Position = 0;
        }

        try
        {
            using var document = JsonDocument.Parse(buffer.AsMemory(0, read));
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("method", out var m) || m.ValueKind != JsonValueKind.String)
            {
                return (null, null);
            }

            var method = m.GetString();
            var tool = method == "tools/call" && root.TryGetProperty("params", out var p) && p.ValueKind == JsonValueKind.Object && p.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
                ? name.GetString()
                : null;
            return (method, tool);
        }
        catch (JsonException)
        {
            return (null, null);
        }
    }
}
