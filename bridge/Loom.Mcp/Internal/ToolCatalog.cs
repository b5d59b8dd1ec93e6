using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Loom.Core;
using Loom.Protocol.V1;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;

namespace Loom.Mcp.Internal;

/// <summary>
/// Loom capabilities as MCP tools, shared by the streamable-HTTP exposure in the bridge and the
/// stdio server of <c>loom mcp</c>:
/// <list type="bullet">
/// <item>tool name = capability name; description as registered; the input schema as registered
/// (an input that is not an object is wrapped as <c>{"input": ...}</c>, since MCP arguments are an object);</item>
/// <item>an object output comes back as <c>structuredContent</c> plus the same JSON as one text block
/// (with the output schema as the tool's <c>outputSchema</c>); any other output as one text block;</item>
/// <item>a capability ingested from an MCP server (tag <c>mcp</c>) passes its CallToolResult through unchanged;</item>
/// <item>a Loom error becomes <c>isError: true</c> with the text <c>CODE: message</c> and
/// <c>_meta["loom/error"] = {code, message, path, retryable}</c>; an unknown tool is a JSON-RPC
/// invalid-params error.</item>
/// </list>
/// </summary>
internal sealed class ToolCatalog
{
    private const string WrapperProperty = "input";
    private static readonly JsonElement s_objectSchema = JsonDocument.Parse("""{"type":"object"}""").RootElement.Clone();

    private readonly ICapabilitySource _source;
    private readonly McpExposeOptions _options;
    private readonly NameFilter _filter;
    private readonly Lock _gate = new();
    private Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public ToolCatalog(ICapabilitySource source, McpExposeOptions options)
    {
        _source = source;
        _options = options;
        _filter = new NameFilter(options.Include, options.Exclude);
    }

    /// <summary>Lists the exposed capabilities again; returns a signature of the set (names, descriptions, schemas) to detect changes.</summary>
    public async Task<string> RefreshAsync(CancellationToken cancellationToken)
    {
        var listed = await _source.ListAsync(cancellationToken).ConfigureAwait(false);
        var entries = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var signature = new StringBuilder();
        foreach (var capability in listed.Where(c => _filter.Matches(c.Name)).OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            entries[capability.Name] = ToEntry(capability);
            signature.Append(capability.Name).Append('\0').Append(capability.Description).Append('\0')
                .Append(capability.InputSchemaJson).Append('\0').Append(capability.OutputSchemaJson).Append('\n');
        }

        var text = signature.ToString();
        lock (_gate)
        {
            _entries = entries;
        }

        return text;
    }

    /// <summary>The exposed tools, and the signature of the set (see <see cref="RefreshAsync"/>).</summary>
    public async ValueTask<(ListToolsResult Result, string Signature)> ListToolsAsync(CancellationToken cancellationToken)
    {
        var signature = await RefreshAsync(cancellationToken).ConfigureAwait(false);
        lock (_gate)
        {
            return (new ListToolsResult { Tools = _entries.Values.Select(e => e.Tool).ToList() }, signature);
        }
    }

    public async ValueTask<CallToolResult> CallToolAsync(CallToolRequestParams request, string caller, CancellationToken cancellationToken)
    {
        var name = request.Name;
        Entry? entry;
        lock (_gate)
        {
            _entries.TryGetValue(name, out entry);
        }

        if (entry is null)
        {
            // Maybe registered since the last listing.
            await RefreshAsync(cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                _entries.TryGetValue(name, out entry);
            }
        }

        if (entry is null)
        {
            throw new McpProtocolException($"Unknown tool '{name}': no exposed Loom capability has that name.", McpErrorCode.InvalidParams);
        }

        ReadOnlyMemory<byte> input;
        if (entry.Wrapped)
        {
            input = request.Arguments is not null && request.Arguments.TryGetValue(WrapperProperty, out var inner)
                ? JsonSerializer.SerializeToUtf8Bytes(inner, McpJsonUtilities.DefaultOptions)
                : "null"u8.ToArray();
        }
        else
        {
            var arguments = new JsonObject();
            foreach (var (key, value) in request.Arguments ?? new Dictionary<string, JsonElement>())
            {
                arguments[key] = JsonNode.Parse(value.GetRawText());
            }

            input = JsonSerializer.SerializeToUtf8Bytes(arguments, McpJsonUtilities.DefaultOptions);
        }

        var (output, error) = await _source.InvokeAsync(name, input, _options.CallTimeout, caller, cancellationToken).ConfigureAwait(false);
        if (error is not null)
        {
            if (error.Code == ErrorCode.CapabilityNotFound)
            {
                throw new McpProtocolException($"Unknown tool '{name}': {error.Message}", McpErrorCode.InvalidParams);
            }

            if (error.Code == ErrorCode.Cancelled)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            return ErrorResult(error);
        }

        if (entry.PassThrough && ResultShape.TryDeserialize(output) is { } passed)
        {
            return passed;
        }

        var text = output.IsEmpty ? "null" : Encoding.UTF8.GetString(output.Span);
        var result = new CallToolResult { Content = [new TextContentBlock { Text = text }] };
        if (!output.IsEmpty)
        {
            using var document = JsonDocument.Parse(output);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                result.StructuredContent = document.RootElement.Clone();
            }
        }

        return result;
    }

    private static CallToolResult ErrorResult(Error error)
    {
        var code = ErrorCodes.Name(error.Code);
        var text = string.IsNullOrEmpty(error.Path) ? $"{code}: {error.Message}" : $"{code}: {error.Message} (at {error.Path})";
        return new CallToolResult
        {
            IsError = true,
            Content = [new TextContentBlock { Text = text }],
            Meta = new JsonObject
            {
                ["loom/error"] = new JsonObject
                {
                    ["code"] = code,
                    ["message"] = error.Message,
                    ["path"] = error.Path,
                    ["retryable"] = error.Retryable,
                },
            },
        };
    }

    private static Entry ToEntry(ExposedCapability capability)
    {
        var passThrough = capability.Tags.Contains("mcp", StringComparer.Ordinal);
        var (input, wrapped) = InputSchema(capability.InputSchemaJson);
        var tool = new Tool
        {
            Name = capability.Name,
            Description = capability.Description,
            InputSchema = input,
        };

        if (!passThrough && ObjectSchema(capability.OutputSchemaJson) is { } output)
        {
            tool.OutputSchema = output;
        }

        return new Entry(tool, wrapped, passThrough);
    }

    /// <summary>The tool's input schema: an object schema as it is (with <c>"type": "object"</c> added when absent), anything else wrapped.</summary>
    private static (JsonElement Schema, bool Wrapped) InputSchema(string json)
    {
        var node = ParseSchema(json);
        if (node is null)
        {
            return (s_objectSchema, false);
        }

        if (node is JsonObject obj)
        {
            var type = obj["type"];
            if (type is null)
            {
                obj["type"] = "object";
                return (ToElement(obj), false);
            }

            if (type is JsonValue value && value.TryGetValue<string>(out var single) && single == "object")
            {
                return (ToElement(obj), false);
            }
        }

        // Not an object: {"type":"object","properties":{"input": <schema>},"required":["input"]}, with its $defs hoisted.
        var wrapper = new JsonObject { ["type"] = "object" };
        if (node is JsonObject inner)
        {
            foreach (var key in (ReadOnlySpan<string>)["$defs", "definitions"])
            {
                if (inner[key] is { } defs)
                {
                    inner.Remove(key);
                    wrapper[key] = defs;
                }
            }
        }

        wrapper["properties"] = new JsonObject { [WrapperProperty] = node };
        wrapper["required"] = new JsonArray(WrapperProperty);
        return (ToElement(wrapper), true);
    }

    private static JsonElement? ObjectSchema(string json) =>
        ParseSchema(json) is JsonObject obj && obj["type"] is JsonValue type && type.TryGetValue<string>(out var single) && single == "object"
            ? ToElement(obj)
            : null;

    /// <summary>The schema as a node, or null when it accepts anything (empty, <c>{}</c>, <c>true</c>) or is not JSON.</summary>
    private static JsonNode? ParseSchema(string json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return null;
        }

        try
        {
            var node = JsonNode.Parse(json);
            return node switch
            {
                JsonObject { Count: 0 } => null,
                JsonValue value when value.TryGetValue<bool>(out var b) && b => null,
                _ => node,
            };
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static JsonElement ToElement(JsonNode node) => JsonSerializer.SerializeToElement(node, McpJsonUtilities.DefaultOptions);

    private sealed record Entry(Tool Tool, bool Wrapped, bool PassThrough);
}
