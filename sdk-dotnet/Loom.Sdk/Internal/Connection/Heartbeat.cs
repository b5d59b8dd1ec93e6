using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// The heartbeat timer and liveness of a session: a ping when the stream has been quiet for half an
/// interval, and the end of the session when nothing arrived from the bridge for three intervals.
/// </summary>
internal sealed class Heartbeat(ConnectionState state, Writer writer, TestGate gate)
{
    private ulong _sequence;

    public async Task RunAsync(StreamSession session)
    {
        var interval = session.HeartbeatInterval;
        var token = session.Token;
        var time = state.Time;
        try
        {
            using var timer = new PeriodicTimer(interval, time);
            while (await timer.WaitForNextTickAsync(token))
            {
                if (gate.IsFrozen)
                {
                    continue;
                }

                var silent = time.GetElapsedTime(session.LastReceived);
                if (silent > interval * 3)
                {
                    session.End(new LoomException(ErrorCode.Unavailable, $"Nothing arrived from the bridge for {silent.TotalMilliseconds:0} ms (3 heartbeat intervals of {interval.TotalMilliseconds:0} ms)."));
                    return;
                }

                // Any frame keeps the session alive; ping only when the stream has been quiet.
                if (time.GetElapsedTime(writer.LastWriteTimestamp) >= interval / 2)
                {
                    var ping = new HeartbeatPing { Sequence = Interlocked.Increment(ref _sequence), SentUnixMs = time.GetUtcNow().ToUnixTimeMilliseconds() };
                    writer.TryWrite(new ClientMessage { Heartbeat = ping });
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The session ended.
        }
    }
}
