using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Bridge.Internal.Runs;

/// <summary>
/// <c>GET /v1/threads</c> (<c>?limit=N&amp;offset=N</c>, newest first) and <c>GET /v1/threads/{id}</c>
/// (the thread's steps in order) from the run records. With auth on they need a read-only or
/// admin credential, like every /v1 read.
/// </summary>
internal static class RunsApi
{
    public const int DefaultLimit = 100;
    public const int MaxLimit = 1000;

    private static readonly JsonSerializerOptions Json = new(RunsJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Map(IEndpointRouteBuilder app, Func<RunRecorder?> runs, BridgeOptions options)
    {
        var group = app.MapGroup("/v1/threads");
        group.MapGet("", (HttpContext c) =>
        {
            if (runs() is not { } recorder)
            {
                return Off();
            }

            if (!Number(c.Request.Query, "limit", 1, MaxLimit, DefaultLimit, out var limit, out var bad) || !Number(c.Request.Query, "offset", 0, int.MaxValue, 0, out var offset, out bad))
            {
                return bad!;
            }

            return Results.Json(recorder.List(offset, limit), Json);
        });
        group.MapGet("/{id}", (string id) =>
        {
            if (runs() is not { } recorder)
            {
                return Off();
            }

            return recorder.Get(id) is { } thread
                ? Results.Json(thread, Json)
                : Error(StatusCodes.Status404NotFound, "NOT_FOUND", $"No run record of thread '{id}': no event or call carried this thread id, or retention removed it (GET /v1/threads lists the threads held).");
        });
        if (options.Auth != AuthMode.Off)
        {
            group.RequireAuthorization(AdminAccess.ReadPolicy);
        }
    }

    private static IResult Off() =>
        Error(StatusCodes.Status404NotFound, "NOT_FOUND", "Run records are off on this bridge (loom.yaml runs: enabled: false).");

    private static bool Number(IQueryCollection query, string key, int min, int max, int fallback, out int value, out IResult? bad)
    {
        bad = null;
        value = fallback;
        if (!query.TryGetValue(key, out var text))
        {
            return true;
        }

        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value >= min && value <= max)
        {
            return true;
        }

        bad = Error(StatusCodes.Status400BadRequest, "INVALID_PARAMS", $"{key} '{text}' is not a number from {min} to {max}.");
        return false;
    }

    private static IResult Error(int status, string code, string message) =>
        Results.Json(new RunsError(code, message), RunsJsonContext.Default.RunsError, statusCode: status);
}
