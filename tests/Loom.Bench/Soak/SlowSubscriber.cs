using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 2: an ordinary SDK subscriber with QoS BATCH (BLOCK at the bridge) whose handler takes
/// a few ms per event, far slower than the load. Nothing else is wrong with it.
/// </summary>
internal sealed class SlowSubscriber : IAsyncDisposable
{
    public const string Name = "slow_batch";
    private readonly LoomConnection _connection;
    private readonly TimeSpan _perEvent;
    private LoomSubscription? _subscription;
    private long _handled;

    private SlowSubscriber(LoomConnection connection, TimeSpan perEvent)
    {
        _connection = connection;
        _perEvent = perEvent;
    }

    public long Handled => Interlocked.Read(ref _handled);

    /// <summary>Envelopes the SDK dropped locally (its queue stayed full past the block timeout).</summary>
    public long DroppedLocally => _subscription?.Dropped ?? 0;

    public long Reconnects => _connection.Statistics.Reconnects;

    /// <param name="url">The bridge's gRPC address.</param>
    /// <param name="perEvent">How long the handler takes per event.</param>
    /// <param name="cancellationToken">Bounds the connect and subscribe.</param>
    /// <param name="localQueueCapacity">The SDK's local queue (null: its default, 8,192); a small one makes it fall behind sooner.</param>
    public static async Task<SlowSubscriber> StartAsync(Uri url, TimeSpan perEvent, CancellationToken cancellationToken, int? localQueueCapacity = null)
    {
        var connection = await LoomConnection.ConnectAsync(url, new LoomConnectionOptions { Name = "soak-slow", AgentId = "soak-slow" }, cancellationToken: cancellationToken);
        var slow = new SlowSubscriber(connection, perEvent);
        try
        {
            slow._subscription = await connection.SubscribeAsync(HealthyPublisher.Topic, slow.OnEventAsync, new SubscribeOptions { Qos = QosClass.Batch, LocalQueueCapacity = localQueueCapacity }, cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        return slow;
    }

    private async Task OnEventAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        await Task.Delay(_perEvent, cancellationToken);
        Interlocked.Increment(ref _handled);
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
