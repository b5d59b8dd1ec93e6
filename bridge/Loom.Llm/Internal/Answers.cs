using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Llm.Internal;

/// <summary>A tool call the model asked for; arguments as JSON text.</summary>
internal sealed record ToolCall(string Id, string Name, string ArgumentsJson);

/// <summary>A chat answer as the gateway keeps it (cached and shared by coalesced callers).</summary>
internal sealed record ChatAnswer(string Model, string Provider, string Text, string? FinishReason, IReadOnlyList<ToolCall> ToolCalls, long InputTokens, long OutputTokens, double Cost, int Attempts, string? FallbackFrom)
{
    /// <summary>Approximate bytes held (for the cache's byte bound).</summary>
    public long Size => 256 + (2L * Text.Length) + ToolCalls.Sum(c => 64 + (2L * (c.Id.Length + c.Name.Length + c.ArgumentsJson.Length)));
}

/// <summary>Publishes a streamed answer's events on the caller's stream topic.</summary>
internal sealed class StreamPublisher(EventBus bus, string topic, ActionInvocation invocation, ILogger logger)
{
    private int _sequence;

    /// <summary>Deltas published so far.</summary>
    public int Sent { get; private set; }

    public ValueTask DeltaAsync(string text, CancellationToken cancellationToken)
    {
        Sent++;
        return PublishAsync(w => { w.WriteString("type", "delta"); w.WriteString("text", text); }, cancellationToken);
    }

    /// <summary>What was streamed so far is void: another attempt or model starts over.</summary>
    public ValueTask RestartAsync(string model, CancellationToken cancellationToken) =>
        PublishAsync(w => { w.WriteString("type", "restart"); w.WriteString("model", model); }, cancellationToken);

    public ValueTask DoneAsync(CancellationToken cancellationToken) =>
        PublishAsync(w => w.WriteString("type", "done"), cancellationToken);

    private async ValueTask PublishAsync(Action<Utf8JsonWriter> body, CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteNumber("seq", _sequence++);
            w.WriteString("call_id", invocation.CallId);
            body(w);
            w.WriteEndObject();
        }

        var envelope = new Envelope
        {
            Topic = topic,
            Sender = "llm-gateway",
            ThreadId = invocation.ThreadId,
            CorrelationId = invocation.CallId,
            ContentType = "application/json",
            Payload = ByteString.CopyFrom(buffer.GetBuffer(), 0, (int)buffer.Length),
            Traceparent = invocation.Traceparent,
        };
        try
        {
            var result = await bus.PublishAsync(envelope, cancellationToken).ConfigureAwait(false);
            if (result.Status != PublishStatus.Accepted)
            {
                Log.StreamPublishFailed(logger, topic, result.Status.ToString());
            }
        }
        catch (LoomException ex)
        {
            // The answer still comes back as the call's result; only the partial view is lost.
            Log.StreamPublishFailed(logger, topic, ex.Message);
        }
    }
}

/// <summary>The capabilities' input schemas.</summary>
internal static class Schemas
{
    public const string ChatInput = """
        {"type":"object","required":["messages"],"properties":{
          "model":{"type":"string"},
          "messages":{"type":"array","items":{"type":"object","required":["role"],"properties":{"role":{"type":"string","enum":["system","user","assistant","tool"]},"content":{"type":"string"},"tool_call_id":{"type":"string"},"tool_calls":{"type":"array"}}}},
          "tools":{"type":"array","items":{"type":"object","required":["name"],"properties":{"name":{"type":"string"},"description":{"type":"string"},"parameters":{"type":"object"}}}},
          "tool_choice":{"type":"string","enum":["auto","none","required"]},
          "response_format":{"type":"object"},
          "temperature":{"type":"number"},
          "max_tokens":{"type":"integer"},
          "stop":{"type":"array","items":{"type":"string"}},
          "stream_topic":{"type":"string"},
          "cache":{"type":"boolean"}}}
        """;

    public const string EmbedInput = """
        {"type":"object","required":["input"],"properties":{"model":{"type":"string"},"cache":{"type":"boolean"}}}
        """;

    public const string UsageInput = """
        {"type":"object","properties":{"thread_id":{"type":"string"}}}
        """;
}
