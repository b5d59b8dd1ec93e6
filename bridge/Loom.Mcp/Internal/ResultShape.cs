using System.Text.Json;
using System.Text.Json.Nodes;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;

namespace Loom.Mcp.Internal;

/// <summary>
/// The JSON output of an ingested MCP tool: the MCP <c>CallToolResult</c> as the server sent it,
/// without <c>isError</c> (an error result becomes a Loom error instead):
/// <code>
/// { "content": [ { "type": "text", "text": "..." },
///                { "type": "image", "data": "&lt;base64&gt;", "mimeType": "image/png" },
///                { "type": "audio", "data": "&lt;base64&gt;", "mimeType": "audio/wav" },
///                { "type": "resource", "resource": { "uri": "...", "mimeType": "...", "text": "..." | "blob": "&lt;base64&gt;" } },
///                { "type": "resource_link", "uri": "...", "name": "...", ... } ],
///   "structuredContent": { ... },   // only when the tool returned it
///   "_meta": { ... } }               // only when the tool returned it
/// </code>
/// </summary>
internal static class ResultShape
{
    private const string GenericContentSchema =
        """{"type":"array","items":{"type":"object","required":["type"],"properties":{"type":{"type":"string"}}}}""";

    /// <summary>The output schema of an ingested tool: the shape above, with the tool's own output schema for structuredContent when it has one Loom can embed.</summary>
    public static string OutputSchema(JsonElement? toolOutputSchema)
    {
        var structured = "{\"type\":\"object\"}";
        if (toolOutputSchema is { ValueKind: JsonValueKind.Object } schema)
        {
            var text = schema.GetRawText();

            // A $ref inside points into the tool's own document; embedded it would point elsewhere.
            if (!text.Contains("\"$ref\"", StringComparison.Ordinal))
            {
                structured = text;
            }
        }

        return "{\"type\":\"object\",\"required\":[\"content\"],\"properties\":{\"content\":" + GenericContentSchema + ",\"structuredContent\":" + structured + "}}";
    }

    /// <summary>Serializes a successful result in the shape above.</summary>
    public static ReadOnlyMemory<byte> Serialize(CallToolResult result)
    {
        var node = JsonSerializer.SerializeToNode(result, McpJsonUtilities.DefaultOptions) as JsonObject ?? [];
        node.Remove("isError");
        if (node["content"] is null)
        {
            node["content"] = new JsonArray();
        }

        return JsonSerializer.SerializeToUtf8Bytes(node, McpJsonUtilities.DefaultOptions);
    }

    /// <summary>Reads a result of the shape above back (for re-exposing an ingested tool to MCP clients unchanged).</summary>
    public static CallToolResult? TryDeserialize(ReadOnlyMemory<byte> output)
    {
        try
        {
            return JsonSerializer.Deserialize<CallToolResult>(output.Span, McpJsonUtilities.DefaultOptions);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
