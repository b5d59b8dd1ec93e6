using System.Text.Json;
using System.Threading.Channels;

namespace Loom.Bridge.Internal.Dashboard;

/// <summary>
/// One live-stream client: a bounded queue of ready SSE messages. The feed offers to it and never
/// waits: a client whose queue is full is dropped (its stream ends; counted), and a live-tail
/// client gets at most its rate cap of events a second (the rest are counted as skipped and the
/// count is sent to it).
/// </summary>
internal sealed class DashboardClient(long id, EventFilter? filter, bool overview, int maxEventsPerSecond, TimeProvider time)
{
    public const int QueueCapacity = 256;

    private readonly Channel<string> _queue = Channel.CreateBounded<string>(new BoundedChannelOptions(QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly Lock _gate = new();
    private long _second;
    private int _sent;
    private long _skipped;

    public long Id { get; } = id;

    public ChannelReader<string> Reader => _queue.Reader;

    /// <summary>Events skipped for this client by its rate cap since it connected.</summary>
    public long Skipped => Volatile.Read(ref _skipped);

    public void OfferEvent(RecordedEvent e, DashboardFeed feed)
    {
        if (filter is null || !filter.Matches(e))
        {
            return;
        }

        lock (_gate)
        {
            var second = time.GetTimestamp() / time.TimestampFrequency;
            if (second != _second)
            {
                _second = second;
                _sent = 0;
            }

            if (++_sent > maxEventsPerSecond)
            {
                _skipped++;
                feed.Skipped();
                return;
            }
        }

        Offer("event: event\ndata: " + JsonSerializer.Serialize(e, DashboardJsonContext.Default.RecordedEvent) + "\n\n", feed);
    }

    public void OfferOverview(string json, DashboardFeed feed)
    {
        if (overview)
        {
            Offer("event: overview\ndata: " + json + "\n\n", feed);
        }
        else if (filter is not null && Skipped > 0)
        {
            Offer("event: skipped\ndata: " + Skipped + "\n\n", feed);
        }
    }

    private void Offer(string message, DashboardFeed feed)
    {
        if (!_queue.Writer.TryWrite(message))
        {
            Complete();
            feed.Dropped(this);
        }
    }

    public void Complete() => _queue.Writer.TryComplete();
}
