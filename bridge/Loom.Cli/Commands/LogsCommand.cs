using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Cli.Internal;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Spectre.Console;

namespace Loom.Cli.Commands;

/// <summary><c>loom logs</c>: follow the events flowing through a bridge, filtered.</summary>
internal static class LogsCommand
{
    private static readonly JsonSerializerOptions Relaxed = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private const int PreviewChars = 160;

    /// <summary>The connection options: with a token, the agent id is the token's identity (the bridge binds it), and LOOM_TLS_CA is trusted.</summary>
    private static LoomConnectionOptions LogsOptions(string? token) => new()
    {
        Name = "loom-logs",
        Sdk = "loom-cli/logs",
        Token = token,
        AgentId = token is null ? null : BridgeCredentials.SubjectOf(token),
        TlsCaFile = BridgeCredentials.CaFile,
    };

    public static Command Create()
    {
        var url = CliOptions.Url(
            "--url",
            "gRPC address of the bridge. Default: $LOOM_URL, else the bridge of a 'loom run' or 'loom dev' of this directory (its .loom/bridge.json), else http://127.0.0.1:7070.",
            "http://127.0.0.1:7070");
        var topic = CliOptions.Text("--topic", "Topic pattern to follow ('*' one token, '>' the rest).", "PATTERN", "a topic pattern such as orders.* or orders.>", ProjectFileLoader.TopicPatternReason, "a.>.b", ">");
        var agent = CliOptions.Text("--agent", "Only events sent by this agent id.", "ID", "an agent id");
        var thread = CliOptions.Text("--thread", "Only events of this thread id.", "ID", "a thread id");
        var correlation = CliOptions.Text("--correlation", "Only events with this correlation id (a request and its replies).", "ID", "a correlation id");
        var json = CliOptions.Flag("--json", "One JSON object per line instead of text.");
        var stream = CliOptions.Text("--stream", "Replay this durable stream (docs/durability.md) instead of following live events; ends at its last event.", "NAME", "a stream name (letters, digits, '-', '_')", n => n.Length > 0 && n.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? null : "not a stream name", "a b");
        var from = CliOptions.Text("--from", "With --stream: start at this sequence number or time (ISO-8601, e.g. 2026-12-03T16:00:00Z). Default: the first event held.", "SEQ|TIME", "a sequence number (1 or more) or an ISO-8601 time", FromProblem, "yesterday");
        var token = BridgeCredentials.TokenOption();
        var command = new Command("logs", "Follow events live on a running bridge, filtered by agent, thread, correlation id or topic pattern. Ctrl+C stops.")
        {
            url, topic, agent, thread, correlation, json, token, stream, from,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            string address, source;
            try
            {
                address = BridgeLocator.Resolve(parse.GetValue(url), "LOOM_URL", http: false, "http://127.0.0.1:7070", out source);
            }
            catch (AmbiguousRunException ex)
            {
                await Console.Error.WriteLineAsync($"loom logs: {ex.Message}");
                return 2;
            }

            if (!Uri.TryCreate(address, UriKind.Absolute, out var bridge) || bridge.Scheme is not ("http" or "https"))
            {
                await Console.Error.WriteLineAsync($"loom logs: the bridge address ({source}) must be an absolute http:// URL, not '{address}'");
                return 2;
            }

            var sender = parse.GetValue(agent);
            var threadId = parse.GetValue(thread);
            var correlationId = parse.GetValue(correlation);
            var asJson = parse.GetValue(json);
            var gate = new object();
            LoomConnection connection;
            try
            {
                connection = await LoomConnection.ConnectAsync(bridge, LogsOptions(BridgeCredentials.Token(parse.GetValue(token))), cancellationToken: cancellationToken);
            }
            catch (LoomException ex)
            {
                await Console.Error.WriteLineAsync($"loom logs: cannot reach the bridge at {address} ({source}): {ex.Message} (is it running? --url is its gRPC port, e.g. http://127.0.0.1:7070)");
                return 1;
            }

            await using (connection)
            {
                if (parse.GetValue(stream) is { } streamName)
                {
                    return await ReplayAsync(connection, streamName, parse.GetValue(from), parse.GetValue(topic)!, e =>
                        (sender is null || e.Sender == sender) && (threadId is null || e.ThreadId == threadId) && (correlationId is null || e.CorrelationId == correlationId), asJson, cancellationToken);
                }

                var ownInbox = $"_inbox.{connection.AgentId.Replace('.', '_')}.";
                try
                {
                    await using var subscription = await connection.SubscribeAsync(
                        parse.GetValue(topic)!,
                        (e, _) =>
                        {
                            if (e.Topic.StartsWith(ownInbox, StringComparison.Ordinal)
                                || (sender is not null && e.Sender != sender)
                                || (threadId is not null && e.ThreadId != threadId)
                                || (correlationId is not null && e.CorrelationId != correlationId))
                            {
                                return Task.CompletedTask;
                            }

                            lock (gate)
                            {
                                if (asJson)
                                {
                                    Console.WriteLine(ToJson(e));
                                }
                                else
                                {
                                    Print(e);
                                }
                            }

                            return Task.CompletedTask;
                        },
                        new SubscribeOptions { Qos = QosClass.Normal },
                        cancellationToken);
                    if (!asJson)
                    {
                        AnsiConsole.MarkupLine($"[grey]following {Markup.Escape(parse.GetValue(topic)!)} on {Markup.Escape(address)} (Ctrl+C stops)[/]");
                    }

                    await Task.Delay(Timeout.Infinite, cancellationToken);
                    return 0;
                }
                catch (OperationCanceledException)
                {
                    return 0;
                }
                catch (InvalidParamsException ex)
                {
                    await Console.Error.WriteLineAsync($"loom logs: {CliErrors.OneLine(ex.Message)}");
                    return 2;
                }
            }
        });
        return command;
    }

    private static string? FromProblem(string text) =>
        (ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0)
        || DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out _)
            ? null
            : "neither a sequence number nor a time";

    /// <summary><c>--stream NAME [--from SEQ|TIME]</c>: prints the stored events in pages of 500 up to the stream's last one.</summary>
    private static async Task<int> ReplayAsync(LoomConnection connection, string stream, string? from, string pattern, Func<Envelope, bool> keep, bool asJson, CancellationToken cancellationToken)
    {
        var request = new StreamReadRequest { Stream = stream, MaxEvents = 500 };
        if (from is not null && ulong.TryParse(from, NumberStyles.None, CultureInfo.InvariantCulture, out var sequence))
        {
            request.StartSequence = sequence;
        }
        else if (from is not null)
        {
            request.StartUnixMs = DateTimeOffset.Parse(from, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal).ToUnixTimeMilliseconds();
        }

        try
        {
            while (true)
            {
                var page = await connection.ReadStreamAsync(request, cancellationToken);
                foreach (var stored in page.Events)
                {
                    var e = stored.Envelope;
                    if (!Topics.Matches(pattern, e.Topic) || !keep(e))
                    {
                        continue;
                    }

                    if (asJson)
                    {
                        var o = JsonNode.Parse(ToJson(e))!.AsObject();
                        o["sequence"] = stored.Sequence;
                        Console.WriteLine(o.ToJsonString(Relaxed));
                    }
                    else
                    {
                        AnsiConsole.Markup($"[grey]#{stored.Sequence}[/] ");
                        Print(e);
                    }
                }

                if (page.Events.Count == 0 || page.Events[^1].Sequence >= page.LastSequence)
                {
                    return 0;
                }

                request = new StreamReadRequest { Stream = stream, MaxEvents = 500, StartSequence = page.Events[^1].Sequence + 1 };
            }
        }
        catch (OperationCanceledException)
        {
            return 0;
        }
        catch (LoomException ex)
        {
            await Console.Error.WriteLineAsync($"loom logs: {CliErrors.OneLine(ex.Message)}");
            return ex.Code == ErrorCode.InvalidParams ? 2 : 1;
        }
    }

    private static void Print(Envelope e)
    {
        var time = DateTimeOffset.FromUnixTimeMilliseconds(e.TimestampUnixMs).ToLocalTime().ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture);
        var ids = new StringBuilder();
        if (e.ThreadId.Length > 0)
        {
            ids.Append(CultureInfo.InvariantCulture, $" thread={e.ThreadId}");
        }

        if (e.CorrelationId.Length > 0)
        {
            ids.Append(CultureInfo.InvariantCulture, $" corr={e.CorrelationId}");
        }

        AnsiConsole.MarkupLine($"[grey]{time}[/] [deepskyblue1]{Markup.Escape(e.Topic)}[/] [orchid]{Markup.Escape(e.Sender)}[/][grey]{Markup.Escape(ids.ToString())}[/] {Markup.Escape(Preview(e))}");
    }

    private static string Preview(Envelope e)
    {
        if (e.Payload.IsEmpty)
        {
            return "";
        }

        string text;
        try
        {
            text = Encoding.UTF8.GetString(e.Payload.Span);
        }
        catch (ArgumentException)
        {
            return $"<{e.Payload.Length} bytes>";
        }

        text = text.ReplaceLineEndings(" ");
        return text.Length <= PreviewChars ? text : string.Concat(text.AsSpan(0, PreviewChars), "…");
    }

    private static string ToJson(Envelope e)
    {
        var o = new JsonObject
        {
            ["time_unix_ms"] = e.TimestampUnixMs,
            ["topic"] = e.Topic,
            ["sender"] = e.Sender,
            ["thread_id"] = e.ThreadId,
            ["correlation_id"] = e.CorrelationId,
            ["reply_to"] = e.ReplyTo,
            ["hop_count"] = e.HopCount,
            ["content_type"] = e.ContentType,
        };
        if (e.ContentType.Contains("json", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                o["payload"] = JsonNode.Parse(e.Payload.Span);
            }
            catch (JsonException)
            {
                o["payload_text"] = Preview(e);
            }
        }
        else
        {
            o["payload_text"] = Preview(e);
        }

        return o.ToJsonString(Relaxed);
    }
}
