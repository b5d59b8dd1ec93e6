using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Loom.Cli.Internal;
using Spectre.Console;

namespace Loom.Cli.Commands;

/// <summary><c>loom inspect [THREAD]</c>: a thread's run record as a timeline, or the recent threads.</summary>
internal static class InspectCommand
{
    private const int MaxPreviewChars = 120;
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var thread = CliOptions.Positional("thread", "The thread id to show. Without it: the most recent threads.", "a thread id", defaultValue: "");
        var url = CliOptions.Url(
            "--url",
            "HTTP address of the bridge (its --http-port). Default: $LOOM_HTTP_URL, else the bridge of a 'loom run' or 'loom dev' of this directory (its .loom/bridge.json), else http://127.0.0.1:7071.",
            "http://127.0.0.1:7071");
        var json = CliOptions.Flag("--json", "Print the bridge's JSON (GET /v1/threads/{id}, or GET /v1/threads) instead of a timeline.");
        var limit = CliOptions.Int("--limit", 1, 1000, 20, "Without THREAD: how many recent threads to list.", "N", "threads");
        var token = BridgeCredentials.TokenOption();
        var command = new Command("inspect", "Show a thread's run record (its events, calls and collaboration steps in order), or list recent threads.") { thread, url, json, limit, token };
        command.SetAction(async (parse, cancellationToken) =>
        {
            string baseUrl, source;
            try
            {
                baseUrl = BridgeLocator.Resolve(parse.GetValue(url), "LOOM_HTTP_URL", http: true, "http://127.0.0.1:7071", out source);
            }
            catch (AmbiguousRunException ex)
            {
                await Console.Error.WriteLineAsync($"loom inspect: {ex.Message}");
                return 2;
            }

            if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
            {
                await Console.Error.WriteLineAsync($"loom inspect: the bridge address ({source}) must be an absolute http:// URL, not '{baseUrl}'");
                return 2;
            }

            var id = parse.GetValue(thread) ?? "";
            var path = id.Length == 0
                ? "/v1/threads?limit=" + parse.GetValue(limit).ToString(CultureInfo.InvariantCulture)
                : "/v1/threads/" + Uri.EscapeDataString(id);
            using var http = BridgeCredentials.Http(BridgeCredentials.Token(parse.GetValue(token)), TimeSpan.FromSeconds(30));
            string text;
            try
            {
                using var response = await http.GetAsync(new Uri(address, path), cancellationToken);
                text = await response.Content.ReadAsStringAsync(cancellationToken);
                if (response.StatusCode == HttpStatusCode.NotFound && id.Length != 0)
                {
                    await Console.Error.WriteLineAsync($"loom inspect: {MessageOf(text) ?? $"no run record of thread '{id}'"} ('loom inspect' lists the recent threads)");
                    return 1;
                }

                if (!response.IsSuccessStatusCode)
                {
                    await Console.Error.WriteLineAsync($"loom inspect: the bridge at {baseUrl} answered {(int)response.StatusCode}: {MessageOf(text) ?? text.Trim()}");
                    return 1;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
            {
                await Console.Error.WriteLineAsync($"loom inspect: cannot read the bridge at {baseUrl} ({source}): {ex.Message} (is it running? --url is its HTTP port, e.g. http://127.0.0.1:7071; with auth on, --token or LOOM_TOKEN, and LOOM_TLS_CA for https)");
                return 1;
            }

            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(text);
            }
            catch (JsonException ex)
            {
                await Console.Error.WriteLineAsync($"loom inspect: the bridge at {baseUrl} did not answer JSON: {ex.Message}");
                return 1;
            }

            using (document)
            {
                if (parse.GetValue(json))
                {
                    Console.WriteLine(JsonSerializer.Serialize(document.RootElement, Indented));
                }
                else if (id.Length == 0)
                {
                    PrintList(document.RootElement);
                }
                else
                {
                    PrintTimeline(document.RootElement);
                }
            }

            return 0;
        });
        return command;
    }

    private static string? MessageOf(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.TryGetProperty("message", out var m) ? m.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static void PrintList(JsonElement root)
    {
        var threads = root.GetProperty("threads");
        if (threads.GetArrayLength() == 0)
        {
            Console.WriteLine("No thread recorded yet: events and calls that carry a thread id are recorded.");
            return;
        }

        var table = new Table().Title($"threads ({threads.GetArrayLength()} of {root.GetProperty("total").GetInt32()}, newest first)").AddColumns("thread", "last", "span", "agents", "events", "calls", "collab", "errors");
        foreach (var t in threads.EnumerateArray())
        {
            var first = t.GetProperty("first_unix_ms").GetInt64();
            var last = t.GetProperty("last_unix_ms").GetInt64();
            var errors = t.GetProperty("errors").GetInt32();
            table.AddRow(
                Markup.Escape(t.GetProperty("id").GetString()!) + (t.GetProperty("truncated").GetBoolean() ? " (truncated)" : ""),
                Clock(last),
                Span(last - first),
                Markup.Escape(string.Join(", ", t.GetProperty("agents").EnumerateArray().Select(a => a.GetString()))),
                Num(t, "events"),
                Num(t, "calls"),
                Num(t, "collab"),
                errors == 0 ? "0" : $"[red]{errors}[/]");
        }

        AnsiConsole.Write(table);
    }

    private static void PrintTimeline(JsonElement root)
    {
        var first = root.GetProperty("first_unix_ms").GetInt64();
        var last = root.GetProperty("last_unix_ms").GetInt64();
        var errors = root.GetProperty("errors").GetInt32();
        AnsiConsole.MarkupLine(
            $"[bold]thread {Markup.Escape(root.GetProperty("id").GetString()!)}[/]  {Clock(first)} → {Clock(last)} ({Span(last - first)})  " +
            $"{Num(root, "events")} events, {Num(root, "calls")} calls, {Num(root, "collab")} collaboration steps, " +
            (errors == 0 ? "0 errors" : $"[red]{errors} errors[/]") +
            (root.GetProperty("truncated").GetBoolean() ? "  [yellow](truncated: some steps not kept)[/]" : ""));
        AnsiConsole.MarkupLine($"agents: {Markup.Escape(string.Join(", ", root.GetProperty("agents").EnumerateArray().Select(a => a.GetString())))}");
        foreach (var step in root.GetProperty("steps").EnumerateArray())
        {
            var at = step.GetProperty("timestamp_unix_ms").GetInt64();
            var kind = step.GetProperty("kind").GetString();
            var sender = Markup.Escape(step.GetProperty("sender").GetString() ?? "");
            var topic = Markup.Escape(step.GetProperty("topic").GetString() ?? "");
            var offset = $"+{(at - first) / 1000.0,8:0.000}s";
            string line;
            if (kind == "call")
            {
                var target = Markup.Escape(Str(step, "target") is { Length: > 0 } t ? t : "?");
                var duration = step.TryGetProperty("duration_ms", out var d) ? d.GetDouble() : 0;
                var outcome = Str(step, "error_code") is { } code
                    ? $"[red]{Markup.Escape(code)}: {Markup.Escape(Cut(Str(step, "error_message") ?? ""))}[/]"
                    : "[green]ok[/] " + Markup.Escape(Cut(Str(step, "output") ?? ""));
                line = $"[blue]call  [/] {sender} → {target}  [bold]{topic}[/]  {duration:0.0} ms  in {Markup.Escape(Cut(Str(step, "payload") ?? ""))}  {outcome}";
            }
            else if (kind == "collab")
            {
                var name = $"{Str(step, "operation")} {Str(step, "step")}";
                var bad = step.GetProperty("step").GetString() is "fallback" or "timeout" or "failed" or "no_quorum" or "no_bids" or "late";
                line = $"[{(bad ? "red" : "magenta")}]collab[/] {sender}  [bold]{Markup.Escape(name)}[/] op={Markup.Escape(Str(step, "op_id") ?? "")}  {topic}  {Markup.Escape(Cut(Str(step, "payload") ?? ""))}";
            }
            else
            {
                var correlation = Str(step, "correlation_id") is { Length: > 0 } c ? $" re={Markup.Escape(c)}" : "";
                line = $"[grey]event [/] {sender}  [bold]{topic}[/]{correlation}  ({step.GetProperty("payload_bytes").GetInt32()} B) {Markup.Escape(Cut(Str(step, "payload") ?? ""))}";
            }

            AnsiConsole.MarkupLine($"{offset}  {line}");
        }
    }

    private static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static string Num(JsonElement e, string name) => e.GetProperty(name).GetInt32().ToString(CultureInfo.InvariantCulture);

    private static string Cut(string text)
    {
        text = text.ReplaceLineEndings(" ");
        return text.Length > MaxPreviewChars ? text[..MaxPreviewChars] + "…" : text;
    }

    private static string Clock(long unixMs) => DateTimeOffset.FromUnixTimeMilliseconds(unixMs).ToLocalTime().ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture);

    private static string Span(long ms) => ms < 1000 ? $"{ms} ms" : (ms / 1000.0).ToString("0.0", CultureInfo.InvariantCulture) + " s";
}
