using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Loom.Core;
using Microsoft.Extensions.AI;

namespace Loom.Llm.Internal;

/// <summary>One llm.chat request, parsed and checked, with the hash of its normalized form.</summary>
internal sealed class ChatCall
{
    public required string? Model { get; init; }
    public required List<ChatMessage> Messages { get; init; }
    public required ChatOptions Options { get; init; }
    public required string? StreamTopic { get; init; }
    public required bool UseCache { get; init; }
    public required bool JsonOutput { get; init; }

    /// <summary>Canonical JSON of everything that shapes the answer except the model (sorted keys, no whitespace).</summary>
    public required string Normalized { get; init; }

    public static string KeyFor(string model, string normalized) => Hash("chat\n" + model + "\n" + normalized);

    public static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    public static ChatCall Parse(ReadOnlyMemory<byte> json, int maxMessages)
    {
        using var doc = ParseObject(json);
        var root = doc.RootElement;
        var model = OptionalString(root, "model");
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            throw new InvalidParamsException("'messages' must be a non-empty array of {role, content}.", "/messages");
        }

        if (messages.GetArrayLength() > maxMessages)
        {
            throw new InvalidParamsException($"'messages' has {messages.GetArrayLength()} entries; at most {maxMessages} are accepted.", "/messages");
        }

        var list = new List<ChatMessage>(messages.GetArrayLength());
        var i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            list.Add(ParseMessage(m, $"/messages/{i}"));
            i++;
        }

        var options = new ChatOptions();
        if (root.TryGetProperty("temperature", out var t) && t.ValueKind != JsonValueKind.Null)
        {
            if (t.ValueKind != JsonValueKind.Number || t.GetDouble() is < 0 or > 2)
            {
                throw new InvalidParamsException("'temperature' must be a number from 0 to 2.", "/temperature");
            }

            options.Temperature = (float)t.GetDouble();
        }

        if (root.TryGetProperty("max_tokens", out var mt) && mt.ValueKind != JsonValueKind.Null)
        {
            if (mt.ValueKind != JsonValueKind.Number || !mt.TryGetInt32(out var max) || max < 1)
            {
                throw new InvalidParamsException("'max_tokens' must be a positive integer.", "/max_tokens");
            }

            options.MaxOutputTokens = max;
        }

        if (root.TryGetProperty("stop", out var stop) && stop.ValueKind == JsonValueKind.Array)
        {
            options.StopSequences = [.. stop.EnumerateArray().Select(s => s.ValueKind == JsonValueKind.String ? s.GetString()! : throw new InvalidParamsException("'stop' must be an array of strings.", "/stop"))];
        }

        if (root.TryGetProperty("tools", out var tools) && tools.ValueKind == JsonValueKind.Array)
        {
            options.Tools = [];
            var j = 0;
            foreach (var tool in tools.EnumerateArray())
            {
                var name = OptionalString(tool, "name");
                if (string.IsNullOrEmpty(name))
                {
                    throw new InvalidParamsException("Every tool needs a 'name'.", $"/tools/{j}/name");
                }

                var parameters = tool.TryGetProperty("parameters", out var p) && p.ValueKind == JsonValueKind.Object
                    ? p.Clone()
                    : JsonDocument.Parse("""{"type":"object","properties":{}}""").RootElement.Clone();
                options.Tools.Add(AIFunctionFactory.CreateDeclaration(name, OptionalString(tool, "description") ?? "", parameters));
                j++;
            }

            var choice = OptionalString(root, "tool_choice");
            options.ToolMode = choice switch
            {
                null or "auto" => ChatToolMode.Auto,
                "none" => ChatToolMode.None,
                "required" => ChatToolMode.RequireAny,
                _ => throw new InvalidParamsException("'tool_choice' must be auto, none or required.", "/tool_choice"),
            };
        }

        var jsonOutput = false;
        if (root.TryGetProperty("response_format", out var rf) && rf.ValueKind == JsonValueKind.Object)
        {
            var type = OptionalString(rf, "type") ?? "json_schema";
            if (type == "json_schema")
            {
                if (!rf.TryGetProperty("schema", out var schema) || schema.ValueKind != JsonValueKind.Object)
                {
                    throw new InvalidParamsException("response_format of type json_schema needs a 'schema' object.", "/response_format/schema");
                }

                options.ResponseFormat = ChatResponseFormat.ForJsonSchema(schema.Clone(), OptionalString(rf, "name") ?? "answer", OptionalString(rf, "description"));
                jsonOutput = true;
            }
            else if (type == "json")
            {
                options.ResponseFormat = ChatResponseFormat.Json;
                jsonOutput = true;
            }
            else if (type != "text")
            {
                throw new InvalidParamsException("response_format.type must be text, json or json_schema.", "/response_format/type");
            }
        }

        var streamTopic = OptionalString(root, "stream_topic");
        if (streamTopic is not null && (!streamTopic.StartsWith("llm.stream.", StringComparison.Ordinal) || !Topics.IsValidTopic(streamTopic)))
        {
            throw new InvalidParamsException("'stream_topic' must be a topic under llm.stream. (e.g. llm.stream.<agent>.<id>) without wildcards.", "/stream_topic");
        }

        var useCache = !(root.TryGetProperty("cache", out var c) && c.ValueKind == JsonValueKind.False);
        return new ChatCall
        {
            Model = model,
            Messages = list,
            Options = options,
            StreamTopic = streamTopic,
            UseCache = useCache,
            JsonOutput = jsonOutput,
            Normalized = Canonical(root, static name => name is not ("model" or "stream_topic" or "cache")),
        };
    }

    private static ChatMessage ParseMessage(JsonElement m, string path)
    {
        if (m.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidParamsException("Each message must be an object {role, content}.", path);
        }

        var role = OptionalString(m, "role") switch
        {
            "system" => ChatRole.System,
            "user" => ChatRole.User,
            "assistant" => ChatRole.Assistant,
            "tool" => ChatRole.Tool,
            var other => throw new InvalidParamsException($"role '{other}' is not one of system, user, assistant, tool.", path + "/role"),
        };
        var contents = new List<AIContent>();
        if (role == ChatRole.Tool)
        {
            var callId = OptionalString(m, "tool_call_id") ?? throw new InvalidParamsException("A tool message needs 'tool_call_id'.", path + "/tool_call_id");
            contents.Add(new FunctionResultContent(callId, OptionalString(m, "content") ?? ""));
            return new ChatMessage(role, contents);
        }

        if (OptionalString(m, "content") is { } text)
        {
            contents.Add(new TextContent(text));
        }

        if (m.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
        {
            foreach (var call in calls.EnumerateArray())
            {
                var id = OptionalString(call, "id") ?? throw new InvalidParamsException("A tool call needs an 'id'.", path + "/tool_calls");
                var name = OptionalString(call, "name") ?? throw new InvalidParamsException("A tool call needs a 'name'.", path + "/tool_calls");
                Dictionary<string, object?>? args = null;
                if (call.TryGetProperty("arguments", out var a) && a.ValueKind == JsonValueKind.Object)
                {
                    args = a.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone(), StringComparer.Ordinal);
                }

                contents.Add(new FunctionCallContent(id, name, args));
            }
        }

        if (contents.Count == 0)
        {
            throw new InvalidParamsException("A message needs 'content' (or tool_calls for an assistant).", path + "/content");
        }

        return new ChatMessage(role, contents);
    }

    internal static JsonDocument ParseObject(ReadOnlyMemory<byte> json)
    {
        try
        {
            var doc = JsonDocument.Parse(json.Length == 0 ? "{}"u8.ToArray() : json);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw new InvalidParamsException("The input must be a JSON object.", "");
            }

            return doc;
        }
        catch (JsonException ex)
        {
            throw new InvalidParamsException("The input is not valid JSON: " + ex.Message, "");
        }
    }

    internal static string? OptionalString(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>Canonical JSON: object keys sorted (ordinal), no whitespace, only the top-level keys <paramref name="keep"/> allows.</summary>
    internal static string Canonical(JsonElement root, Func<string, bool> keep)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            foreach (var p in root.EnumerateObject().Where(p => keep(p.Name)).OrderBy(p => p.Name, StringComparer.Ordinal))
            {
                writer.WritePropertyName(p.Name);
                Write(writer, p.Value);
            }

            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void Write(Utf8JsonWriter writer, JsonElement e)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var p in e.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal))
                {
                    writer.WritePropertyName(p.Name);
                    Write(writer, p.Value);
                }

                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in e.EnumerateArray())
                {
                    Write(writer, item);
                }

                writer.WriteEndArray();
                break;
            default:
                e.WriteTo(writer);
                break;
        }
    }
}
