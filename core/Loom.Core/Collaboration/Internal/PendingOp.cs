using System.Threading.Channels;
using Loom.Protocol.V1;

namespace Loom.Core.Collaboration.Internal;

/// <summary>An operation waiting for replies: a bounded queue the reply pump (or the calls) fill and the operation reads.</summary>
internal sealed class PendingOp(string id, int capacity, long start)
{
    private readonly Channel<Reply> _queue = Channel.CreateBounded<Reply>(new BoundedChannelOptions(Math.Max(1, capacity))
    {
        FullMode = BoundedChannelFullMode.Wait, // TryWrite fails when full: the caller counts the drop
        SingleReader = true,
    });

    private int _completed;

    public string Id { get; } = id;

    /// <summary>Timestamp (TimeProvider) of the start, for latencies.</summary>
    public long Start { get; } = start;

    /// <summary>True once a reply was refused because the queue was full (not because the operation ended).</summary>
    public bool Overflowed { get; private set; }

    public bool TryOffer(Reply reply)
    {
        if (_queue.Writer.TryWrite(reply))
        {
            return true;
        }

        Overflowed = Volatile.Read(ref _completed) == 0;
        return false;
    }

    public ValueTask<bool> WaitAsync(CancellationToken cancellationToken) => _queue.Reader.WaitToReadAsync(cancellationToken);

    public bool TryRead(out Reply reply) => _queue.Reader.TryRead(out reply!);

    public void Complete()
    {
        Volatile.Write(ref _completed, 1);
        _queue.Writer.TryComplete();
    }
}
