using System.Buffers.Binary;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Loom.LlmFake;

/// <summary>A scripted answer (POST /control/script).</summary>
public sealed record ScriptRule(string? Contains, string? Content);

/// <summary>One request the fake received.</summary>
public sealed record RecordedRequest(string Path, string Model, bool Stream, string Body);

/// <summary>
/// A fake LLM server on 127.0.0.1 (port 0): OpenAI-compatible <c>/v1/chat/completions</c> and
/// <c>/v1/embeddings</c>, Anthropic-compatible <c>/v1/messages</c>, both with streaming (SSE).
/// It answers by the model name: a name containing <c>fail</c> answers 500, <c>badreq</c> 400,
/// <c>gated</c> holds its answer until <see cref="Release"/> (or POST /control/release), <c>slow</c>
/// answers after 50 ms (a model's latency, for the coalescing benchmark).
/// With tools (and no tool result yet) it calls the first tool with <c>{"city":"Oslo"}</c>; with
/// a JSON response format it answers <c>{"answer": LAST_USER_TEXT}</c>; otherwise
/// <c>echo: LAST_USER_TEXT</c>; unless a script matches (<see cref="Script"/>, or POST /control/script
/// with <c>{"contains": "...", "content": "..."}</c>): then the content of the first script whose
/// text the request's messages contain (the raw JSON body) is the answer, JSON format or not. Usage: input tokens = characters of all messages / 4 + 1, output
/// tokens = words of the answer. GET /control/requests lists what it received; DELETE clears it.
/// </summary>
public sealed class FakeLlmServer : IAsyncDisposable
{
    private readonly List<RecordedRequest> _requests = [];
    private readonly List<(string Contains, string Content)> _scripts = [];
    private readonly Lock _gate = new();
    private TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WebApplication? _app;

    /// <summary>e.g. http://127.0.0.1:41234 (OpenAI base URL: add /v1).</summary>
    public Uri BaseUrl { get; private set; } = new("http://127.0.0.1/");

    public IReadOnlyList<RecordedRequest> Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    public void Clear()
    {
        lock (_gate)
        {
            _requests.Clear();
        }
    }

    /// <summary>
    /// Scripts an answer: a chat request whose body contains <paramref name="contains"/> (ordinal,
    /// as it appears in the request's JSON) is answered <paramref name="content"/>; the first match wins.
    /// </summary>
    public void Script(string contains, string content)
    {
        ArgumentException.ThrowIfNullOrEmpty(contains);
        lock (_gate)
        {
            _scripts.Add((contains, content));
        }
    }

    private string? Scripted(string body)
    {
        lock (_gate)
        {
            foreach (var (contains, content) in _scripts)
            {
                if (body.Contains(contains, StringComparison.Ordinal))
                {
                    return content;
                }
            }
        }

        return null;
    }

    /// <summary>Lets every held (gated) answer go, and the next ones too until <see cref="Hold"/>.</summary>
    public void Release() => _release.TrySetResult();

    /// <summary>Holds gated answers again.</summary>
    public void Hold()
    {
        lock (_gate)
        {
            if (_release.Task.IsCompleted)
            {
                _release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
    }

    public async Task StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.MapPost("/v1/chat/completions", (Delegate)OpenAIChat);
        app.MapPost("/v1/embeddings", (Delegate)OpenAIEmbeddings);
        app.MapPost("/v1/messages", (Delegate)AnthropicMessages);
        app.MapGet("/control/requests", () => Results.Json(Requests));
        app.MapDelete("/control/requests", () => { Clear(); return Results.NoContent(); });
        app.MapPost("/control/release", () => { Release(); return Results.NoContent(); });
        app.MapPost("/control/hold", () => { Hold(); return Results.NoContent(); });
        app.MapPost("/control/script", (ScriptRule rule) =>
        {
            if (string.IsNullOrEmpty(rule.Contains) || rule.Content is null)
            {
                return Results.BadRequest(new { error = "a script needs 'contains' (non-empty) and 'content'" });
            }

            Script(rule.Contains, rule.Content);
            return Results.NoContent();
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BaseUrl = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
        _app = app;
    }

    private async Task<JsonObject> ReadAsync(HttpContext context, string path)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var body = await reader.ReadToEndAsync(context.RequestAborted);
        var json = JsonNode.Parse(body)!.AsObject();
        var model = (string?)json["model"] ?? "";
        lock (_gate)
        {
            _requests.Add(new RecordedRequest(path, model, (bool?)json["stream"] ?? false, body));
        }

        if (model.Contains("slow", StringComparison.Ordinal))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(50), context.RequestAborted);
        }

        if (model.Contains("gated", StringComparison.Ordinal))
        {
            Task release;
            lock (_gate)
            {
                release = _release.Task;
            }

            await release.WaitAsync(TimeSpan.FromSeconds(60), context.RequestAborted);
        }

        return json;
    }

    private static bool Fails(string model, HttpContext context, out IResult? failure)
    {
        failure = model.Contains("fail", StringComparison.Ordinal)
            ? Results.Json(new { error = new { message = "fake upstream failure", type = "server_error" } }, statusCode: 500)
            : model.Contains("badreq", StringComparison.Ordinal)
                ? Results.Json(new { error = new { message = "fake bad request", type = "invalid_request_error" } }, statusCode: 400)
                : null;
        return failure is not null;
    }

    private async Task<IResult> OpenAIChat(HttpContext context)
    {
        var json = await ReadAsync(context, "/v1/chat/completions");
        var model = (string?)json["model"] ?? "";
        if (Fails(model, context, out var failure))
        {
            return failure!;
        }

        var messages = json["messages"]!.AsArray();
        var inputTokens = InputTokens(messages);
        var tool = PendingTool(messages, json["tools"] as JsonArray, (string?)json["tools"]?[0]?["function"]?["name"]);
        var format = (string?)json["response_format"]?["type"];
        var text = tool is null ? Scripted(messages.ToJsonString()) ?? Answer(LastUserText(messages), format is "json_schema" or "json_object") : null;
        var outputTokens = text is null ? 5 : Words(text);
        var usage = new JsonObject { ["prompt_tokens"] = inputTokens, ["completion_tokens"] = outputTokens, ["total_tokens"] = inputTokens + outputTokens };
        if ((bool?)json["stream"] == true)
        {
            await StartSse(context);
            if (tool is not null)
            {
                await Sse(context, null, Chunk(model, new JsonObject { ["role"] = "assistant", ["tool_calls"] = new JsonArray(new JsonObject { ["index"] = 0, ["id"] = "call_1", ["type"] = "function", ["function"] = new JsonObject { ["name"] = tool, ["arguments"] = "{\"city\":\"Oslo\"}" } }) }, null));
                await Sse(context, null, Chunk(model, new JsonObject(), "tool_calls"));
            }
            else
            {
                var first = true;
                foreach (var piece in Pieces(text!))
                {
                    var delta = new JsonObject { ["content"] = piece };
                    if (first)
                    {
                        delta["role"] = "assistant";
                        first = false;
                    }

                    await Sse(context, null, Chunk(model, delta, null));
                }

                await Sse(context, null, Chunk(model, new JsonObject(), "stop"));
            }

            var usageChunk = new JsonObject { ["id"] = "chatcmpl-fake", ["object"] = "chat.completion.chunk", ["created"] = 1700000000, ["model"] = model, ["choices"] = new JsonArray(), ["usage"] = usage };
            await Sse(context, null, usageChunk.ToJsonString());
            await context.Response.WriteAsync("data: [DONE]\n\n");
            return Results.Empty;
        }

        var message = new JsonObject { ["role"] = "assistant", ["content"] = text };
        if (tool is not null)
        {
            message["tool_calls"] = new JsonArray(new JsonObject { ["id"] = "call_1", ["type"] = "function", ["function"] = new JsonObject { ["name"] = tool, ["arguments"] = "{\"city\":\"Oslo\"}" } });
        }

        var response = new JsonObject
        {
            ["id"] = "chatcmpl-fake",
            ["object"] = "chat.completion",
            ["created"] = 1700000000,
            ["model"] = model,
            ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["message"] = message, ["finish_reason"] = tool is null ? "stop" : "tool_calls" }),
            ["usage"] = usage,
        };
        return Results.Text(response.ToJsonString(), "application/json");
    }

    private static string Chunk(string model, JsonObject delta, string? finish) => new JsonObject
    {
        ["id"] = "chatcmpl-fake",
        ["object"] = "chat.completion.chunk",
        ["created"] = 1700000000,
        ["model"] = model,
        ["choices"] = new JsonArray(new JsonObject { ["index"] = 0, ["delta"] = delta, ["finish_reason"] = finish }),
    }.ToJsonString();

    private async Task<IResult> OpenAIEmbeddings(HttpContext context)
    {
        var json = await ReadAsync(context, "/v1/embeddings");
        var model = (string?)json["model"] ?? "";
        if (Fails(model, context, out var failure))
        {
            return failure!;
        }

        var inputs = json["input"] is JsonArray array ? array.Select(n => (string?)n ?? "").ToList() : [(string?)json["input"] ?? ""];
        var base64 = (string?)json["encoding_format"] == "base64";
        var data = new JsonArray();
        var tokens = 0;
        for (var i = 0; i < inputs.Count; i++)
        {
            var vector = Vector(inputs[i]);
            tokens += (inputs[i].Length / 4) + 1;
            JsonNode embedding;
            if (base64)
            {
                var bytes = new byte[vector.Length * 4];
                for (var j = 0; j < vector.Length; j++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(j * 4), vector[j]);
                }

                embedding = Convert.ToBase64String(bytes);
            }
            else
            {
                embedding = new JsonArray(vector.Select(v => (JsonNode)v).ToArray());
            }

            data.Add(new JsonObject { ["object"] = "embedding", ["index"] = i, ["embedding"] = embedding });
        }

        var response = new JsonObject { ["object"] = "list", ["data"] = data, ["model"] = model, ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["total_tokens"] = tokens } };
        return Results.Text(response.ToJsonString(), "application/json");
    }

    /// <summary>A deterministic 4-dimensional vector of a text (its length and letter sums).</summary>
    public static float[] Vector(string text) =>
        [text.Length, text.Count(char.IsAsciiLetterLower), text.Count(char.IsAsciiLetterUpper), text.Sum(c => c % 7)];

    private async Task<IResult> AnthropicMessages(HttpContext context)
    {
        var json = await ReadAsync(context, "/v1/messages");
        var model = (string?)json["model"] ?? "";
        if (model.Contains("fail", StringComparison.Ordinal) || model.Contains("badreq", StringComparison.Ordinal))
        {
            var status = model.Contains("fail", StringComparison.Ordinal) ? 500 : 400;
            return Results.Json(new { type = "error", error = new { type = status == 500 ? "api_error" : "invalid_request_error", message = "fake upstream failure" } }, statusCode: status);
        }

        var messages = json["messages"]!.AsArray();
        var inputTokens = InputTokens(messages) + ((json["system"]?.ToJsonString().Length ?? 0) / 4);
        var lastUser = LastUserText(messages);
        var toolName = (string?)json["tools"]?[0]?["name"];
        var hasToolResult = messages.Any(m => m?["content"] is JsonArray blocks && blocks.Any(b => (string?)b?["type"] == "tool_result"));
        var tool = toolName is not null && !hasToolResult ? toolName : null;
        var jsonFormat = json["output_format"] is not null || json["output_config"] is not null;
        var text = tool is null ? Scripted(messages.ToJsonString() + (json["system"]?.ToJsonString() ?? "")) ?? Answer(lastUser, jsonFormat) : null;
        var outputTokens = text is null ? 5 : Words(text);
        if ((bool?)json["stream"] == true)
        {
            await StartSse(context);
            await Sse(context, "message_start", new JsonObject
            {
                ["type"] = "message_start",
                ["message"] = new JsonObject { ["id"] = "msg_fake", ["type"] = "message", ["role"] = "assistant", ["model"] = model, ["content"] = new JsonArray(), ["stop_reason"] = null, ["stop_sequence"] = null, ["usage"] = new JsonObject { ["input_tokens"] = inputTokens, ["output_tokens"] = 1 } },
            }.ToJsonString());
            if (tool is not null)
            {
                await Sse(context, "content_block_start", new JsonObject { ["type"] = "content_block_start", ["index"] = 0, ["content_block"] = new JsonObject { ["type"] = "tool_use", ["id"] = "toolu_1", ["name"] = tool, ["input"] = new JsonObject() } }.ToJsonString());
                await Sse(context, "content_block_delta", new JsonObject { ["type"] = "content_block_delta", ["index"] = 0, ["delta"] = new JsonObject { ["type"] = "input_json_delta", ["partial_json"] = "{\"city\":\"Oslo\"}" } }.ToJsonString());
            }
            else
            {
                await Sse(context, "content_block_start", new JsonObject { ["type"] = "content_block_start", ["index"] = 0, ["content_block"] = new JsonObject { ["type"] = "text", ["text"] = "" } }.ToJsonString());
                foreach (var piece in Pieces(text!))
                {
                    await Sse(context, "content_block_delta", new JsonObject { ["type"] = "content_block_delta", ["index"] = 0, ["delta"] = new JsonObject { ["type"] = "text_delta", ["text"] = piece } }.ToJsonString());
                }
            }

            await Sse(context, "content_block_stop", new JsonObject { ["type"] = "content_block_stop", ["index"] = 0 }.ToJsonString());
            await Sse(context, "message_delta", new JsonObject { ["type"] = "message_delta", ["delta"] = new JsonObject { ["stop_reason"] = tool is null ? "end_turn" : "tool_use", ["stop_sequence"] = null }, ["usage"] = new JsonObject { ["output_tokens"] = outputTokens } }.ToJsonString());
            await Sse(context, "message_stop", new JsonObject { ["type"] = "message_stop" }.ToJsonString());
            return Results.Empty;
        }

        var content = tool is not null
            ? new JsonArray(new JsonObject { ["type"] = "tool_use", ["id"] = "toolu_1", ["name"] = tool, ["input"] = new JsonObject { ["city"] = "Oslo" } })
            : new JsonArray(new JsonObject { ["type"] = "text", ["text"] = text });
        var response = new JsonObject
        {
            ["id"] = "msg_fake",
            ["type"] = "message",
            ["role"] = "assistant",
            ["model"] = model,
            ["content"] = content,
            ["stop_reason"] = tool is null ? "end_turn" : "tool_use",
            ["stop_sequence"] = null,
            ["usage"] = new JsonObject { ["input_tokens"] = inputTokens, ["output_tokens"] = outputTokens },
        };
        return Results.Text(response.ToJsonString(), "application/json");
    }

    private static string? PendingTool(JsonArray messages, JsonArray? tools, string? first)
    {
        if (tools is null || tools.Count == 0)
        {
            return null;
        }

        return messages.Any(m => (string?)m?["role"] == "tool") ? null : first;
    }

    private static string Answer(string lastUser, bool json) =>
        json ? new JsonObject { ["answer"] = lastUser }.ToJsonString() : "echo: " + lastUser;

    private static string LastUserText(JsonArray messages)
    {
        foreach (var m in messages.Reverse())
        {
            if ((string?)m?["role"] != "user")
            {
                continue;
            }

            var text = m["content"] switch
            {
                JsonValue v => (string?)v ?? "",
                JsonArray parts => string.Concat(parts.Where(p => (string?)p?["type"] == "text").Select(p => (string?)p?["text"])),
                _ => "",
            };
            if (text.Length > 0)
            {
                return text; // (an Anthropic tool result is a user message without text: look further back)
            }
        }

        return "";
    }

    private static int InputTokens(JsonArray messages) => (messages.ToJsonString().Length / 4) + 1;

    private static int Words(string text) => Math.Max(1, text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length);

    /// <summary>The text in pieces of a word (with its following space), as a model streams it.</summary>
    private static IEnumerable<string> Pieces(string text)
    {
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == ' ')
            {
                yield return text[start..(i + 1)];
                start = i + 1;
            }
        }

        if (start < text.Length)
        {
            yield return text[start..];
        }
    }

    private static async Task StartSse(HttpContext context)
    {
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        await context.Response.Body.FlushAsync();
    }

    private static async Task Sse(HttpContext context, string? name, string data)
    {
        var text = name is null ? $"data: {data}\n\n" : $"event: {name}\ndata: {data}\n\n";
        await context.Response.WriteAsync(text);
        await context.Response.Body.FlushAsync();
    }

    public async ValueTask DisposeAsync()
    {
        Release();
        if (_app is not null)
        {
            using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _app.StopAsync(bound.Token);
            await _app.DisposeAsync();
        }
    }
}
