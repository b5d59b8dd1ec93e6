using System.Text;
using System.Text.Json;
using Loom.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Dashboard;

/// <summary>
/// The dashboard's HTTP surface on the bridge's HTTP port: the page itself at <c>/</c> (static
/// files built from bridge/Loom.Dashboard, in the <c>dashboard</c> folder beside the bridge's
/// assembly), JSON snapshots under <c>/v1/</c>, live Server-Sent Events under <c>/v1/stream/</c>,
/// and <c>POST /v1/capabilities/{name}/call</c>. With auth on, the views need a read-only or admin
/// credential and the call an admin one (<see cref="AdminAccess"/>); the page itself holds no data.
/// </summary>
internal static class DashboardApi
{
    /// <summary>Where the built page is looked for.</summary>
    public static string DefaultRoot => Path.Combine(AppContext.BaseDirectory, "dashboard");

    public const int DefaultEventsPerSecond = 50;
    public const int MaxEventsPerSecond = 1000;
    public const int MaxFilterLength = 256;
    private static readonly TimeSpan KeepAlive = TimeSpan.FromSeconds(15);

    public static void UseStaticPage(WebApplication app, string root)
    {
        if (!File.Exists(Path.Combine(root, "index.html")))
        {
            app.MapGet("/", () => Results.Text(
                "The dashboard was not built into this bridge (no " + Path.Combine(root, "index.html") + "). Build the bridge with Node.js and npm on the PATH (dotnet build runs npm ci and vite build in bridge/Loom.Dashboard), or see docs/dashboard.md.\n",
                "text/plain; charset=utf-8", statusCode: StatusCodes.Status404NotFound));
            return;
        }

        var files = new PhysicalFileProvider(root);
        app.UseDefaultFiles(new DefaultFilesOptions { FileProvider = files });
        app.UseStaticFiles(new StaticFileOptions
        {
            FileProvider = files,
            OnPrepareResponse = r =>
            {
                // Vite names assets by their hash: cache them; the page itself is always revalidated.
                r.Context.Response.Headers.CacheControl = r.File.Name == "index.html" ? "no-cache" : "public, max-age=31536000, immutable";
                r.Context.Response.Headers.XContentTypeOptions = "nosniff";
            },
        });
    }

    /// <summary>With the dashboard off (<see cref="BridgeOptions.Dashboard"/> false), <c>/</c> says so and how to turn it on.</summary>
    public static void MapOff(IEndpointRouteBuilder app) =>
        app.MapGet("/", () => Results.Text(
            "The dashboard is off on this bridge (loom up --no-dashboard, or bridge.dashboard: false in loom.yaml). Start it without them to see it here; see docs/dashboard.md.\n",
            "text/plain; charset=utf-8", statusCode: StatusCodes.Status404NotFound));

    public static void Map(IEndpointRouteBuilder app, DashboardFeed feed, ActionBroker broker, BridgeOptions options, ILogger logger)
    {
        var group = app.MapGroup("/v1");
        group.MapGet("/whoami", (HttpContext c) =>
        {
            var level = AdminAccess.Of(c, options);
            var name = options.Auth == AuthMode.Off ? "admin" : level.ToString().ToLowerInvariant();
            return Results.Json(new WhoAmI(options.Auth != AuthMode.Off, name, AdminAccess.IdentityOf(c)), DashboardJsonContext.Default.WhoAmI);
        });
        group.MapGet("/overview", () => Results.Text(feed.OverviewJson, "application/json"));
        group.MapGet("/overview/history", () => Results.Json(new HistoryList(feed.History()), DashboardJsonContext.Default.HistoryList));
        group.MapGet("/overview/agents", (HttpContext c) =>
            Limit(c, DashboardFeed.OverviewAgents, 2000, out var limit) ?? Query(c, out var q)
            ?? Results.Json(feed.AgentsView(q, limit), DashboardJsonContext.Default.AgentList));
        group.MapGet("/topology", (HttpContext c) =>
            Limit(c, DashboardFeed.TopologyNodes, 200, out var limit) ?? Results.Json(feed.Topology(limit), DashboardJsonContext.Default.Topology));
        group.MapGet("/topics", (HttpContext c) =>
            Limit(c, DashboardFeed.TopicsShown, 2000, out var limit) ?? Query(c, out var q)
            ?? Results.Json(feed.TopicsView(q, limit), DashboardJsonContext.Default.TopicList));
        group.MapGet("/capabilities/stats", () => Results.Json(feed.CapabilityStats(), DashboardJsonContext.Default.CapabilityStatsList));
        // /v1/threads and /v1/threads/{id} come from the run records (Internal/Runs/RunsApi).
        group.MapGet("/events", (HttpContext c) =>
        {
            if (ParseFilter(c.Request.Query, out var filter) is { } bad)
            {
                return bad;
            }

            var limit = int.TryParse(c.Request.Query["limit"], out var l) ? Math.Clamp(l, 1, DashboardFeed.RecentEvents) : 200;
            return Results.Json(new EventList(feed.Recent(filter, limit)), DashboardJsonContext.Default.EventList);
        });
        group.MapGet("/stream/overview", (HttpContext c) => StreamAsync(c, feed, null, overview: true, 0));
        group.MapGet("/stream/events", async (HttpContext c) =>
        {
            if (ParseFilter(c.Request.Query, out var filter) is { } bad)
            {
                await bad.ExecuteAsync(c);
                return;
            }

            var rate = DefaultEventsPerSecond;
            if (c.Request.Query.TryGetValue("rate", out var r) && (!int.TryParse(r, out rate) || rate < 1 || rate > MaxEventsPerSecond))
            {
                await Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"rate '{r}' is not a number from 1 to {MaxEventsPerSecond} (events a second sent to this client).").ExecuteAsync(c);
                return;
            }

            await StreamAsync(c, feed, filter, overview: false, rate);
        });
        var call = group.MapPost("/capabilities/{name}/call", (HttpContext c, string name) => CallAsync(c, name, broker, options, logger));
        if (options.Auth != AuthMode.Off)
        {
            group.RequireAuthorization(AdminAccess.ReadPolicy);
            call.RequireAuthorization(AdminAccess.AdminPolicy);
        }
    }

    private static IResult Error(int status, string code, string message) =>
        Results.Json(new DashboardError(code, message), DashboardJsonContext.Default.DashboardError, statusCode: status);

    /// <summary>The <c>limit</c> query parameter: from 1 to <paramref name="max"/>, <paramref name="fallback"/> when absent; an error otherwise.</summary>
    internal static IResult? Limit(HttpContext context, int fallback, int max, out int limit)
    {
        limit = fallback;
        if (!context.Request.Query.TryGetValue("limit", out var text))
        {
            return null;
        }

        return int.TryParse(text, out limit) && limit >= 1 && limit <= max
            ? null
            : Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"limit '{text}' is not a number from 1 to {max}.");
    }

    /// <summary>The <c>q</c> query parameter (a search text, at most <see cref="MaxFilterLength"/> characters).</summary>
    internal static IResult? Query(HttpContext context, out string query)
    {
        query = context.Request.Query["q"].ToString().Trim();
        return query.Length > MaxFilterLength
            ? Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"The search q is {query.Length} characters; at most {MaxFilterLength} are allowed.")
            : null;
    }

    internal static IResult? ParseFilter(IQueryCollection query, out EventFilter filter)
    {
        string Get(string key) => query[key].ToString().Trim();
        filter = new EventFilter(Get("topic"), Get("agent"), Get("thread"), Get("correlation"));
        foreach (var (key, value) in new[] { ("topic", filter.Topic), ("agent", filter.Agent), ("thread", filter.Thread), ("correlation", filter.Correlation) })
        {
            if (value.Length > MaxFilterLength)
            {
                return Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"The {key} filter is {value.Length} characters; at most {MaxFilterLength} are allowed.");
            }
        }

        if (filter.Topic.Length != 0 && !Topics.IsValidPattern(filter.Topic))
        {
            return Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"The topic filter '{filter.Topic}' is not a valid topic pattern: use dot-separated tokens with * for one token and > for one or more at the end, e.g. thread.*.reply or thread.>.");
        }

        return null;
    }

    private static async Task StreamAsync(HttpContext context, DashboardFeed feed, EventFilter? filter, bool overview, int rate)
    {
        var stopping = context.RequestServices.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping;
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, stopping);
        var token = linked.Token;
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        var client = feed.Connect(filter, overview, rate);
        try
        {
            // What there is already: the charts' history, or the recent events that match.
            var first = overview
                ? "event: history\ndata: " + JsonSerializer.Serialize(new HistoryList(feed.History()), DashboardJsonContext.Default.HistoryList) + "\n\nevent: overview\ndata: " + feed.OverviewJson + "\n\n"
                : "event: backlog\ndata: " + JsonSerializer.Serialize(new EventList(feed.Recent(filter!, 200)), DashboardJsonContext.Default.EventList) + "\n\n";
            await response.WriteAsync(first, token);
            feed.Sent(Encoding.UTF8.GetByteCount(first));

            await response.Body.FlushAsync(token);
            var reader = client.Reader;
            while (!token.IsCancellationRequested)
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(token);
                wait.CancelAfter(KeepAlive);
                bool more;
                try
                {
                    more = await reader.WaitToReadAsync(wait.Token);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    await response.WriteAsync(": keep-alive\n\n", token);
                    await response.Body.FlushAsync(token);
                    continue;
                }

                if (!more)
                {
                    break; // dropped as too slow, or the bridge is stopping
                }

                while (reader.TryRead(out var message))
                {
                    await response.WriteAsync(message, token);
                    feed.Sent(Encoding.UTF8.GetByteCount(message));
                }

                await response.Body.FlushAsync(token);
            }
        }
        catch (OperationCanceledException)
        {
            // The client left or the bridge is stopping.
        }
        catch (IOException)
        {
            // The connection broke.
        }
        finally
        {
            feed.Disconnect(client);
            client.Complete();
        }
    }

    private static async Task<IResult> CallAsync(HttpContext context, string name, ActionBroker broker, BridgeOptions options, ILogger logger)
    {
        // A page from another origin may not call through a browser that trusts this one.
        var origin = context.Request.Headers.Origin.ToString();
        if (origin.Length != 0 && (!Uri.TryCreate(origin, UriKind.Absolute, out var o) || !string.Equals(o.Authority, context.Request.Host.Value, StringComparison.OrdinalIgnoreCase)))
        {
            return Error(StatusCodes.Status403Forbidden, "PERMISSION_DENIED", $"Calls from origin '{origin}' are refused: only the dashboard served by this bridge may call.");
        }

        if (context.Request.ContentType?.StartsWith("application/json", StringComparison.OrdinalIgnoreCase) != true)
        {
            return Error(StatusCodes.Status415UnsupportedMediaType, "INVALID_PARAMS", "Send the capability's input as a JSON body with 'Content-Type: application/json'.");
        }

        var limit = broker.Options.MaxInputBytes;
        if (context.Request.ContentLength > limit)
        {
            return Error(StatusCodes.Status413PayloadTooLarge, "RESOURCE_EXHAUSTED", $"The input is {context.Request.ContentLength} bytes; the limit is {limit}.");
        }

        TimeSpan? timeout = null;
        if (context.Request.Query.TryGetValue("timeout_ms", out var t))
        {
            if (!int.TryParse(t, out var ms) || ms < 1 || ms > broker.Options.MaxTimeout.TotalMilliseconds)
            {
                return Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"timeout_ms '{t}' is not a number from 1 to {broker.Options.MaxTimeout.TotalMilliseconds:0}.");
            }

            timeout = TimeSpan.FromMilliseconds(ms);
        }

        var body = new MemoryStream();
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0)
        {
            body.Write(buffer, 0, read);
            if (body.Length > limit)
            {
                return Error(StatusCodes.Status413PayloadTooLarge, "RESOURCE_EXHAUSTED", $"The input is over the {limit}-byte limit.");
            }
        }

        try
        {
            using var _ = JsonDocument.Parse(body.ToArray());
        }
        catch (JsonException ex)
        {
            return Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"The body is not JSON: {ex.Message}");
        }

        var identity = AdminAccess.IdentityOf(context);
        var outcome = await broker.InvokeAsync(new ActionRequest
        {
            Capability = name,
            Version = context.Request.Query["version"].ToString() is { Length: > 0 } v ? v : null,
            InputJson = body.ToArray(),
            Timeout = timeout,
            Caller = "dashboard" + (identity is null ? "" : ":" + identity),
        }, context.RequestAborted);
        Log.DashboardCall(logger, name, identity ?? "(anonymous)", outcome.Error is { } e ? ErrorCodes.Name(e.Code) : "ok");
        if (outcome.Error is { } error)
        {
            return Results.Json(new CallResult(false, null, ErrorCodes.Name(error.Code), error.Message, outcome.AgentId, Math.Round(outcome.Duration.TotalMilliseconds, 3)), DashboardJsonContext.Default.CallResult);
        }

        JsonElement output;
        using (var document = JsonDocument.Parse(outcome.OutputJson.IsEmpty ? "null"u8.ToArray() : outcome.OutputJson))
        {
            output = document.RootElement.Clone();
        }

        return Results.Json(new CallResult(true, output, null, null, outcome.AgentId, Math.Round(outcome.Duration.TotalMilliseconds, 3)), DashboardJsonContext.Default.CallResult);
    }
}
