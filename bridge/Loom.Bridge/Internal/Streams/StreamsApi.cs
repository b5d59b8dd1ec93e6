using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Loom.Bridge.Internal.Streams;

/// <summary>
/// <c>GET /v1/streams</c> (the streams and their consumers) and <c>GET /v1/streams/{name}/events</c>
/// (<c>?from_seq=N</c> or <c>?from_time=ISO-8601|unix-ms</c>, <c>&amp;max=N</c>): replay over HTTP for
/// <c>loom logs --from</c> and scripts; <c>GET /v1/streams/{name}</c> one stream; <c>POST /v1/streams</c>
/// (a JSON stream spec) creates one and <c>DELETE /v1/streams/{name}</c> deletes one created at run
/// time. With auth on, reads need a read-only or admin credential, changes an admin one.
/// </summary>
internal static class StreamsApi
{
    private static readonly JsonSerializerOptions Json = new(StreamsJsonContext.Default.Options)
    {
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void Map(IEndpointRouteBuilder app, Func<StreamHost?> host, BridgeOptions options)
    {
        var group = app.MapGroup("/v1/streams");
        group.MapGet("", () => Results.Json(List(host()), Json));
        group.MapGet("/{name}", (string name) => host() is { } h && h.TryGet(name, out var stream)
            ? Results.Json(ViewOf(stream), Json)
            : Problem(404, $"There is no durable stream '{name}'; GET /v1/streams lists them."));
        group.MapGet("/{name}/events", (string name, HttpContext context) => Events(host(), name, context.Request.Query, options.MaxForwardedBytes));
        var changes = app.MapGroup("/v1/streams");
        changes.MapPost("", (Delegate)((HttpContext context) => CreateAsync(host(), context)));
        changes.MapDelete("/{name}", (string name, HttpContext context) => DeleteAsync(host(), name, context.RequestAborted));
        if (options.Auth != AuthMode.Off)
        {
            group.RequireAuthorization(AdminAccess.ReadPolicy);
            changes.RequireAuthorization(AdminAccess.AdminPolicy);
        }
    }

    /// <summary>The largest stream spec accepted by POST /v1/streams.</summary>
    private const int MaxSpecBytes = 64 * 1024;

    private static async Task<IResult> CreateAsync(StreamHost? host, HttpContext context)
    {
        if (host is null)
        {
            return Problem(409, "This bridge has no data directory, so it holds no durable streams: start it with --data-dir (loom up) or data_dir: in loom.yaml.");
        }

        if (context.Request.ContentLength > MaxSpecBytes)
        {
            return Problem(413, $"A stream spec is at most {MaxSpecBytes} bytes.");
        }

        StreamSpecBody? body;
        try
        {
            using var limited = new MemoryStream();
            await context.Request.Body.CopyToAsync(limited, context.RequestAborted);
            if (limited.Length > MaxSpecBytes)
            {
                return Problem(413, $"A stream spec is at most {MaxSpecBytes} bytes.");
            }

            body = JsonSerializer.Deserialize(limited.ToArray(), StreamsJsonContext.Default.StreamSpecBody);
        }
        catch (JsonException ex)
        {
            return Problem(400, $"The body is not a stream spec ({ex.Message}); send JSON like {{\"name\": \"orders\", \"subjects\": [\"orders.>\"], \"max_age_ms\": 86400000}}.");
        }

        if (body is null || string.IsNullOrEmpty(body.Name))
        {
            return Problem(400, "A stream spec needs a name and subjects: {\"name\": \"orders\", \"subjects\": [\"orders.>\"]}.");
        }

        var spec = new StreamSpec
        {
            Name = body.Name,
            MaxAgeMs = body.MaxAgeMs,
            MaxBytes = body.MaxBytes,
            MaxEvents = body.MaxEvents,
            DuplicateWindowMs = body.DuplicateWindowMs,
        };
        spec.Subjects.AddRange(body.Subjects ?? []);
        try
        {
            var stream = await host.CreateAsync(StreamHost.ConfigFrom(spec), context.RequestAborted);
            return Results.Json(ViewOf(stream), Json, statusCode: 201);
        }
        catch (ResourceExhaustedException ex)
        {
            return Problem(429, ex.Message);
        }
        catch (LoomException ex)
        {
            return Problem(400, ex.Message);
        }
    }

    private static async Task<IResult> DeleteAsync(StreamHost? host, string name, CancellationToken token)
    {
        try
        {
            return host is not null && await host.DeleteAsync(name, token)
                ? Results.NoContent()
                : Problem(404, $"There is no durable stream '{name}'; GET /v1/streams lists them.");
        }
        catch (LoomException ex)
        {
            return Problem(409, ex.Message);
        }
    }

    private static StreamList List(StreamHost? host) => new((host?.Streams ?? []).Select(ViewOf).ToList());

    private static StreamView ViewOf(DurableStream s) => new(
        s.Name,
        s.Config.Subjects,
        s.Log.FirstSequence,
        s.Log.LastSequence,
        s.Log.Count,
        s.Log.Bytes,
        s.Consumers.Select(c =>
        {
            var info = c.Info();
            return new ConsumerView(c.Name, info.Config.Filter, (long)info.AckFloor, (long)info.NextSequence, (int)info.Pending, c.IsAttached);
        }).ToList());

    private static IResult Events(StreamHost? host, string name, IQueryCollection query, int maxBytes)
    {
        if (host is null || !host.TryGet(name, out var stream))
        {
            return Problem(404, $"There is no durable stream '{name}'; GET /v1/streams lists them.");
        }

        var request = new StreamReadRequest { Stream = name };
        if (query.TryGetValue("from_seq", out var seq))
        {
            if (!ulong.TryParse(seq, NumberStyles.None, CultureInfo.InvariantCulture, out var s) || s == 0)
            {
                return Problem(400, $"from_seq '{seq}' is not a sequence number (1 or more).");
            }

            request.StartSequence = s;
        }
        else if (query.TryGetValue("from_time", out var time))
        {
            if (long.TryParse(time, NumberStyles.None, CultureInfo.InvariantCulture, out var ms))
            {
                request.StartUnixMs = ms;
            }
            else if (DateTimeOffset.TryParse(time, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
            {
                request.StartUnixMs = at.ToUnixTimeMilliseconds();
            }
            else
            {
                return Problem(400, $"from_time '{time}' is neither an ISO-8601 time (2026-12-03T16:00:00Z) nor unix milliseconds.");
            }
        }

        if (query.TryGetValue("max", out var max))
        {
            if (!uint.TryParse(max, NumberStyles.None, CultureInfo.InvariantCulture, out var m) || m == 0 || m > StreamReads.MaxEvents)
            {
                return Problem(400, $"max '{max}' must be 1 to {StreamReads.MaxEvents}.");
            }

            request.MaxEvents = m;
        }

        var response = StreamReads.Read(stream, request, maxBytes);
        return Results.Json(new EventPage(name, (long)response.FirstSequence, (long)response.LastSequence, response.Events.Select(View).ToList()), Json);
    }

    private static EventView View(StoredEvent e)
    {
        var envelope = e.Envelope;
        string? text = null;
        string? base64 = null;
        try
        {
            text = new UTF8Encoding(false, true).GetString(envelope.Payload.Span);
        }
        catch (DecoderFallbackException)
        {
            base64 = Convert.ToBase64String(envelope.Payload.Span);
        }

        return new EventView((long)e.Sequence, DateTimeOffset.FromUnixTimeMilliseconds(e.StoredUnixMs), envelope.Id, envelope.Topic, envelope.Sender, envelope.ThreadId, envelope.ContentType, envelope.Headers.ToDictionary(h => h.Key, h => h.Value), text, base64);
    }

    private static IResult Problem(int status, string message) => Results.Json(new ApiError(message), Json, statusCode: status);
}

internal sealed record StreamList(IReadOnlyList<StreamView> Streams);

internal sealed record StreamView(string Name, IReadOnlyList<string> Subjects, long FirstSequence, long LastSequence, long Events, long Bytes, IReadOnlyList<ConsumerView> Consumers);

internal sealed record ConsumerView(string Name, string Filter, long AckFloor, long NextSequence, int Pending, bool Attached);

internal sealed record EventPage(string Stream, long FirstSequence, long LastSequence, IReadOnlyList<EventView> Events);

internal sealed record EventView(long Sequence, DateTimeOffset StoredAt, string Id, string Topic, string Sender, string ThreadId, string ContentType, Dictionary<string, string> Headers, string? Payload, string? PayloadBase64);

internal sealed record ApiError(string Error);

internal sealed record StreamSpecBody(string Name, List<string>? Subjects, ulong MaxAgeMs, ulong MaxBytes, ulong MaxEvents, ulong DuplicateWindowMs);

[JsonSerializable(typeof(StreamList))]
[JsonSerializable(typeof(EventPage))]
[JsonSerializable(typeof(ApiError))]
[JsonSerializable(typeof(StreamSpecBody))]
[JsonSerializable(typeof(StreamView))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class StreamsJsonContext : JsonSerializerContext;
