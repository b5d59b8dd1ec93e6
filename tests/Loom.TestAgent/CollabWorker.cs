using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.TestAgent;

/// <summary>The <c>worker</c> and <c>barrier</c> commands: a .NET participant of collaboration operations.</summary>
internal static class CollabWorker
{
    public static async Task<int> RunAsync(Uri url, Dictionary<string, string> o, CancellationToken stop)
    {
        var agentId = Program.Required(o, "agent-id");
        var topic = Program.Required(o, "topic");
        var answer = o.GetValueOrDefault("answer") ?? $"{{\"worker\":\"{agentId}\"}}";
        var delay = TimeSpan.FromMilliseconds(o.TryGetValue("delay-ms", out var d) ? int.Parse(d, CultureInfo.InvariantCulture) : 0);
        var work = TimeSpan.FromMilliseconds(o.TryGetValue("work-ms", out var w) ? int.Parse(w, CultureInfo.InvariantCulture) : 0);
        var fail = o.GetValueOrDefault("fail") == "true";
        var capability = o.GetValueOrDefault("capability") ?? "collab.work";
        var heartbeat = o.TryGetValue("heartbeat-ms", out var h) ? TimeSpan.FromMilliseconds(int.Parse(h, CultureInfo.InvariantCulture)) : (TimeSpan?)null;
        JsonObject? bid = null;
        if (o.TryGetValue("bid-cost", out var cost))
        {
            bid = new JsonObject { ["cost"] = double.Parse(cost, CultureInfo.InvariantCulture), ["bidder"] = agentId };
            if (o.TryGetValue("bid-latency-ms", out var latency))
            {
                bid["latency_ms"] = int.Parse(latency, CultureInfo.InvariantCulture);
            }
        }

        var descriptor = new CapabilityDescriptor { Name = capability, Description = "Collaboration test work.", InputSchemaJson = "{}", OutputSchemaJson = "{}" };
        var capabilities = new[]
        {
            new LoomCapability(descriptor, async (call, ct) =>
            {
                Console.WriteLine($"working {call.CallId}");
                await Task.Delay(work, ct);
                if (fail)
                {
                    throw new ToolErrorException($"{agentId} was told to fail.");
                }

                var output = new JsonObject { ["worker"] = agentId, ["input"] = JsonNode.Parse(call.InputJson.Span) };
                return Encoding.UTF8.GetBytes(output.ToJsonString());
            }),
        };
        await using var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { AgentId = agentId, Name = agentId, HeartbeatInterval = heartbeat }, capabilities, stop);
        await using var subscription = await connection.SubscribeAsync(
            topic,
            async (envelope, ct) =>
            {
                if (envelope.ReplyTo.Length == 0)
                {
                    return; // records (bid, award, ...) and plain events
                }

                var payload = envelope.IsCallForProposals() ? bid?.ToJsonString() : WithRequest(answer, envelope);
                if (payload is null)
                {
                    return; // no bid from this worker
                }

                if (!envelope.IsCallForProposals())
                {
                    await Task.Delay(delay, ct);
                }

                await connection.PublishAsync(
                    new Envelope
                    {
                        Topic = envelope.ReplyTo,
                        CorrelationId = envelope.CorrelationId,
                        ThreadId = envelope.ThreadId,
                        ContentType = "application/json",
                        Payload = ByteString.CopyFromUtf8(payload),
                    },
                    ct);
            },
            cancellationToken: stop);
        Console.WriteLine("ready");
        var stdinClosed = Task.Run(async () =>
        {
            using var stdin = Console.OpenStandardInput();
            var buffer = new byte[256];
            while (await stdin.ReadAsync(buffer, stop) > 0)
            {
            }
        }, stop);
        try
        {
            await Task.WhenAny(stdinClosed, Task.Delay(Timeout.Infinite, stop));
        }
        catch (OperationCanceledException)
        {
        }

        return 0;
    }

    /// <summary>The answer with the request's payload under "req" (when both are JSON objects), so callers can check pairing.</summary>
    private static string WithRequest(string answer, Envelope request)
    {
        try
        {
            if (JsonNode.Parse(answer) is JsonObject reply && JsonNode.Parse(request.Payload.ToStringUtf8()) is { } req)
            {
                reply["req"] = req;
                return reply.ToJsonString();
            }
        }
        catch (System.Text.Json.JsonException)
        {
        }

        return answer;
    }

    public static async Task<int> BarrierAsync(Uri url, Dictionary<string, string> o, CancellationToken stop)
    {
        var agentId = o.GetValueOrDefault("agent-id") ?? "dotnet-barrier";
        await using var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { AgentId = agentId, Name = agentId }, cancellationToken: stop);
        var request = new BarrierRequest
        {
            BarrierId = Program.Required(o, "barrier-id"),
            TimeoutMs = (uint)Program.Number(o, "timeout-ms", 10_000),
            Count = o.ContainsKey("count") ? (uint)Program.Number(o, "count", 1) : 0,
        };
        if (o.TryGetValue("participants", out var participants))
        {
            request.Participants.Add(participants.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        }

        Console.WriteLine("ready");
        try
        {
            var result = await connection.BarrierAsync(request, stop);
            Console.WriteLine(JsonFormatter.Default.Format(result));
        }
        catch (LoomException ex)
        {
            Console.WriteLine(new JsonObject { ["ok"] = false, ["code"] = ErrorCodes.Name(ex.Code), ["message"] = ex.Message }.ToJsonString());
        }

        return 0;
    }
}
