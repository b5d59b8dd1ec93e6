using System.Text;
using System.Text.Json.Serialization;
using Loom.Core;
using Loom.Core.Collaboration;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal.Runs;

/// <summary>
/// One step of a thread's run record, as stored (JSON, one record of the log each) and as served
/// by <c>GET /v1/threads/{id}</c>: an event published on the thread, a capability call made
/// for it, or a collaboration operation's step (gather, barrier, contract-net cfp/bid/award...).
/// Previews are cut at <see cref="RunsOptions.PreviewBytes"/>.
/// </summary>
internal sealed class RunStep
{
    public const int MaxHeaders = 16;
    public const int MaxHeaderChars = 256;

    /// <summary>The record's sequence in the run log (set when read back).</summary>
    public long Seq { get; set; }

    /// <summary>event, call or collab.</summary>
    public string Kind { get; set; } = "event";

    public string ThreadId { get; set; } = "";

    /// <summary>The envelope id, or the call id.</summary>
    public string Id { get; set; } = "";

    /// <summary>The envelope's topic, or the capability called.</summary>
    public string Topic { get; set; } = "";

    /// <summary>The publisher, or the caller.</summary>
    public string Sender { get; set; } = "";

    /// <summary>The provider that served a call (empty for events).</summary>
    public string Target { get; set; } = "";

    public string CorrelationId { get; set; } = "";

    public string ReplyTo { get; set; } = "";

    /// <summary>When the event was published, or the call started.</summary>
    public long TimestampUnixMs { get; set; }

    public long? EndUnixMs { get; set; }

    public double? DurationMs { get; set; }

    /// <summary>A call's error as "CODE: message" (null when it succeeded).</summary>
    public string? Error { get; set; }

    public string? ErrorCode { get; set; }

    public string? ErrorMessage { get; set; }

    public string ContentType { get; set; } = "";

    /// <summary>The event's payload size, or the call's input size.</summary>
    public int PayloadBytes { get; set; }

    /// <summary>The event's payload, or the call's input (preview; "base64:..." when not UTF-8).</summary>
    public string? Payload { get; set; }

    public bool PayloadTruncated { get; set; }

    /// <summary>A call's result size.</summary>
    public int? OutputBytes { get; set; }

    /// <summary>A call's result (preview).</summary>
    public string? Output { get; set; }

    public bool? OutputTruncated { get; set; }

    /// <summary>Collaboration: gather, barrier, contract_net or reply.</summary>
    public string? Operation { get; set; }

    /// <summary>Collaboration: the step (started, request, completed, arrived, released, cfp, bid, award, fallback, result, late...).</summary>
    public string? Step { get; set; }

    /// <summary>Collaboration: the operation id.</summary>
    public string? OpId { get; set; }

    public Dictionary<string, string>? Headers { get; set; }

    // Raw previews copied on the publishing thread, decoded on the writer's.
    [JsonIgnore]
    internal byte[]? RawPayload;

    [JsonIgnore]
    internal byte[]? RawOutput;

    /// <summary>Taken on the publishing thread: strings by reference, a bounded copy of the payload and headers.</summary>
    public static RunStep FromEnvelope(Envelope e, int previewBytes)
    {
        var payload = e.Payload.Span;
        var step = new RunStep
        {
            Id = e.Id,
            ThreadId = e.ThreadId,
            Topic = e.Topic,
            Sender = e.Sender.Length == 0 ? "(bridge)" : e.Sender,
            CorrelationId = e.CorrelationId,
            ReplyTo = e.ReplyTo,
            TimestampUnixMs = e.TimestampUnixMs,
            ContentType = e.ContentType,
            PayloadBytes = payload.Length,
            PayloadTruncated = payload.Length > previewBytes,
            RawPayload = payload[..Math.Min(previewBytes, payload.Length)].ToArray(),
        };
        if (e.Headers.Count != 0)
        {
            step.Headers = new Dictionary<string, string>(Math.Min(e.Headers.Count, MaxHeaders), StringComparer.Ordinal);
            foreach (var (key, value) in e.Headers)
            {
                if (step.Headers.Count == MaxHeaders)
                {
                    break;
                }

                step.Headers[Cut(key)] = Cut(value);
            }

            if (e.Headers.TryGetValue(Coordinator.KindHeader, out var collab))
            {
                step.Kind = "collab";
                step.Step = collab;
                step.OpId = e.Headers.TryGetValue(Coordinator.OpHeader, out var op) ? op : e.CorrelationId;
                step.Operation = OperationOf(e.Topic, collab);
            }
        }

        return step;
    }

    public static RunStep FromCall(ActionRequest request, ActionOutcome outcome, TimeSpan elapsed, long endUnixMs, int previewBytes)
    {
        var input = request.InputJson.Span;
        var output = outcome.OutputJson.Span;
        return new RunStep
        {
            Kind = "call",
            Id = request.CallId ?? "",
            ThreadId = request.ThreadId,
            Topic = request.Capability ?? "",
            Sender = request.Caller.Length == 0 ? "(bridge)" : request.Caller,
            Target = outcome.AgentId ?? "",
            TimestampUnixMs = endUnixMs - (long)elapsed.TotalMilliseconds,
            EndUnixMs = endUnixMs,
            DurationMs = Math.Round(elapsed.TotalMilliseconds, 3),
            Error = outcome.Error is { } e ? ErrorCodes.Name(e.Code) + ": " + e.Message : null,
            ErrorCode = outcome.Error is { } c ? ErrorCodes.Name(c.Code) : null,
            ErrorMessage = outcome.Error?.Message,
            ContentType = "application/json",
            PayloadBytes = input.Length,
            PayloadTruncated = input.Length > previewBytes,
            RawPayload = input[..Math.Min(previewBytes, input.Length)].ToArray(),
            OutputBytes = outcome.Error is null ? output.Length : null,
            OutputTruncated = outcome.Error is null ? output.Length > previewBytes : null,
            RawOutput = outcome.Error is null ? output[..Math.Min(previewBytes, output.Length)].ToArray() : null,
        };
    }

    /// <summary>On the writer's thread: the raw previews become text.</summary>
    public void Decode()
    {
        if (RawPayload is { } p)
        {
            Payload = p.Length == 0 ? null : Text(p, PayloadTruncated);
            RawPayload = null;
        }

        if (RawOutput is { } o)
        {
            Output = o.Length == 0 ? null : Text(o, OutputTruncated == true);
            RawOutput = null;
        }
    }

    /// <summary>A step that involves an error (a failed call, a collaboration fallback or timeout).</summary>
    [JsonIgnore]
    public bool IsError => Error is not null || Step is "fallback" or "timeout" or "failed" or "no_quorum" or "no_bids" or "late";

    private static string Text(byte[] bytes, bool cut)
    {
        try
        {
            // A cut preview may end inside a character: decoded leniently then.
            return cut ? Encoding.UTF8.GetString(bytes) : new UTF8Encoding(false, true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return "base64:" + Convert.ToBase64String(bytes);
        }
    }

    private static string Cut(string text) => text.Length > MaxHeaderChars ? text[..MaxHeaderChars] : text;

    private static string OperationOf(string topic, string kind)
    {
        if (topic.StartsWith(Coordinator.EventPrefix, StringComparison.Ordinal))
        {
            var rest = topic.AsSpan(Coordinator.EventPrefix.Length);
            var dot = rest.IndexOf('.');
            var name = (dot < 0 ? rest : rest[..dot]).ToString();
            return name;
        }

        return kind switch
        {
            "cfp" or "bid" or "award" or "fallback" or "result" => "contract_net",
            "request" => "gather",
            _ => "collab",
        };
    }
}
