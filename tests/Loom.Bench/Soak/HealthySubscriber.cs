using System.Buffers.Binary;
using System.Diagnostics;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Bench.Soak;

/// <summary>A healthy subscriber on the load topic: one-way latency of every healthy envelope, and gaps in its sequence.</summary>
internal sealed class HealthySubscriber : IAsyncDisposable
{
    private readonly LoomConnection _connection;
    private readonly LatencyRecorder _latencies;
    private LoomSubscription? _subscription;
    private long _received;
    private long _nextSeq;
    private long _gaps;
    private long _foreign;

    private HealthySubscriber(string name, LoomConnection connection, LatencyRecorder latencies)
    {
        Name = name;
        _connection = connection;
        _latencies = latencies;
    }

    public string Name { get; }

    public long Received => Interlocked.Read(ref _received);

    /// <summary>Healthy envelopes skipped in the sequence so far (lost on the way, or dropped by a queue).</summary>
    public long Gaps => Interlocked.Read(ref _gaps);

    /// <summary>Envelopes on the topic that were not the healthy publisher's (an offender's).</summary>
    public long Foreign => Interlocked.Read(ref _foreign);

    public long Reconnects => _connection.Statistics.Reconnects;

    public static async Task<HealthySubscriber> StartAsync(Uri url, string name, QosClass qos, LatencyRecorder latencies, CancellationToken cancellationToken)
    {
        var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = name, AgentId = name }, cancellationToken: cancellationToken);
        var subscriber = new HealthySubscriber(name, connection, latencies);
        try
        {
            subscriber._subscription = await connection.SubscribeAsync(HealthyPublisher.Topic, subscriber.OnEventAsync, new SubscribeOptions { Qos = qos }, cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        return subscriber;
    }

    // The SDK runs a subscription's handler in order, one envelope at a time: no races on the sequence.
    private Task OnEventAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        var now = Stopwatch.GetTimestamp();
        if (envelope.ContentType != HealthyPublisher.ContentType || envelope.Payload.Length < 16)
        {
            Interlocked.Increment(ref _foreign);
            return Task.CompletedTask;
        }

        var span = envelope.Payload.Span;
        _latencies.RecordTicks(now - BinaryPrimitives.ReadInt64LittleEndian(span));
        var seq = BinaryPrimitives.ReadInt64LittleEndian(span[8..]);
        if (seq > _nextSeq)
        {
            Interlocked.Add(ref _gaps, seq - _nextSeq);
        }

        _nextSeq = Math.Max(_nextSeq, seq + 1);
        Interlocked.Increment(ref _received);
        return Task.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        if (_subscription is not null)
        {
            await _subscription.DisposeAsync();
        }

        await _connection.DisposeAsync();
    }
}
