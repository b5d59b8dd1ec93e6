using Loom.Protocol.V1;

namespace Loom.Bridge.Internal.Streams;

/// <summary>Reads of a stream from a sequence or a time, shared by the gRPC read and GET /v1/streams/{name}/events.</summary>
internal static class StreamReads
{
    public const int DefaultMax = 100;
    public const int MaxEvents = 1000;

    public static StreamReadResponse Read(DurableStream stream, StreamReadRequest request, int maxBytes)
    {
        var log = stream.Log;
        var from = request.StartSequence > 0 ? (long)request.StartSequence
            : request.StartUnixMs > 0 ? log.SequenceAt(request.StartUnixMs)
            : log.FirstSequence;
        var max = request.MaxEvents == 0 ? DefaultMax : (int)Math.Min(request.MaxEvents, MaxEvents);
        var response = new StreamReadResponse
        {
            CorrelationId = request.CorrelationId,
            FirstSequence = (ulong)log.FirstSequence,
            LastSequence = (ulong)log.LastSequence,
        };

        // What fits in one message, less room for the response's own fields.
        long budget = maxBytes - 256;
        foreach (var e in stream.ReadEvents(from, max, budget))
        {
            var size = e.CalculateSize() + 8;
            if (budget - size < 0 && response.Events.Count > 0)
            {
                break;
            }

            budget -= size;
            response.Events.Add(e);
        }

        return response;
    }
}
