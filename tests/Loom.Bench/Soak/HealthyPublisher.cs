using System.Buffers.Binary;
using System.Diagnostics;
using Google.Protobuf;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Bench.Soak;

/// <summary>
/// The healthy publisher: a paced stream of envelopes on <see cref="Topic"/>, each carrying its send
/// timestamp and sequence number, so subscribers measure one-way latency and count gaps.
/// </summary>
internal sealed class HealthyPublisher : IAsyncDisposable
{
    public const string Topic = "soak.load";

    /// <summary>Marks the healthy envelopes, so subscribers can tell them from an offender's on the same topic.</summary>
    public const string ContentType = "application/x-loom-soak";

    private readonly LoomConnection _connection;
    private readonly int _rate;
    private readonly int _payloadBytes;
    private readonly Tally _tally;
    private long _sent;
    private long _maxLagTicks;

    private HealthyPublisher(LoomConnection connection, int rate, int payloadBytes, Tally tally)
    {
        _connection = connection;
        _rate = rate;
        _payloadBytes = Math.Max(16, payloadBytes);
        _tally = tally;
    }

    public long Sent => Interlocked.Read(ref _sent);

    public LoomConnection Connection => _connection;

    public static async Task<HealthyPublisher> StartAsync(Uri url, int rate, int payloadBytes, Tally tally, CancellationToken cancellationToken)
    {
        var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "soak-publisher", AgentId = "soak-publisher" }, cancellationToken: cancellationToken);
        return new HealthyPublisher(connection, rate, payloadBytes, tally);
    }

    /// <summary>How far the publisher fell behind its schedule since the last call, in ms: the time the bridge (or the SDK's full queue) held it.</summary>
    public double TakeMaxLagMs() => Interlocked.Exchange(ref _maxLagTicks, 0) * 1000.0 / Stopwatch.Frequency;

    /// <summary>Publishes until <paramref name="stop"/>, on a dedicated thread that sleeps between sends (no thread-pool thread held).</summary>
    public Task RunAsync(CancellationToken stop) =>
        Task.Factory.StartNew(() => Run(stop), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private void Run(CancellationToken stop)
    {
        var interval = (double)Stopwatch.Frequency / _rate;
        var origin = Stopwatch.GetTimestamp();
        long onSchedule = 0;
        long seq = 0;
        while (!stop.IsCancellationRequested)
        {
            var now = Stopwatch.GetTimestamp();
            var due = (long)((now - origin) / interval) + 1;
            if (due - onSchedule > _rate)
            {
                // More than a second behind (the publisher was held): a fresh schedule from now, not a burst of the backlog.
                Atomic.Max(ref _maxLagTicks, now - (origin + (long)(onSchedule * interval)));
                _tally.Add("publisher/schedule_restarted");
                origin = now;
                onSchedule = 0;
                due = 1;
            }

            while (onSchedule < due && !stop.IsCancellationRequested)
            {
                var lag = Stopwatch.GetTimestamp() - (origin + (long)(onSchedule * interval));
                Atomic.Max(ref _maxLagTicks, lag);
                if (Publish(seq, stop))
                {
                    seq++;
                }

                onSchedule++;
            }

            if (origin + (long)(onSchedule * interval) - Stopwatch.GetTimestamp() > Stopwatch.Frequency / 2000)
            {
                Thread.Sleep(1); // coarse pacing: latency is measured from the actual send, not the schedule
            }
        }
    }

    private bool Publish(long seq, CancellationToken stop)
    {
        var bytes = new byte[_payloadBytes];
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), seq);
        BinaryPrimitives.WriteInt64LittleEndian(bytes, Stopwatch.GetTimestamp());
        var envelope = new Envelope { Topic = Topic, Payload = UnsafeByteOperations.UnsafeWrap(bytes), Qos = QosClass.Batch, ContentType = ContentType };
        try
        {
            var pending = _connection.PublishAsync(envelope, stop);
            if (!pending.IsCompletedSuccessfully)
            {
                pending.AsTask().GetAwaiter().GetResult();
            }

            Interlocked.Increment(ref _sent);
            return true;
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            return false;
        }
        catch (Exception ex)
        {
            _tally.Add("publisher/" + Outcome.Of(ex));
            Thread.Sleep(100); // the connection is down or refusing: do not spin
            return false;
        }
    }

    public ValueTask DisposeAsync() => _connection.DisposeAsync();
}
