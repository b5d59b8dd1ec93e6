using System.Diagnostics.CodeAnalysis;
using Loom.Core.Internal;
using Loom.Protocol.V1;

namespace Loom.Core;

/// <summary>
/// One subscription of an <see cref="EventBus"/>: a bounded queue of envelopes whose topic
/// matches <see cref="Pattern"/>, filled by publishers and drained by one reader (several
/// readers are safe too). Dispose to unsubscribe.
/// </summary>
public sealed class EventSubscription : IDisposable
{
    private const int Open = 0;
    private const int Closed = 1;

    private readonly EventBus _bus;
    private readonly BoundedQueue<QueuedEnvelope> _queue;
    private readonly long _maxBytes;
    private long _bytes;
    private readonly ISubscriptionSignal? _signal;
    private readonly int _highMark; // depth at or above which the queue is 80% full
    private readonly int _lowMark;  // depth below which it is under 50% full
    private readonly long[] _dropped = new long[DropReasons.Count];

    private int _count;
    private int _armed = 1; // a reader found the queue empty: the next enqueue signals
    private int _state;
    private long _delivered;
    private long _slowEpisodes;
    private int _slow;
    private long _highSinceTicks;
    private int _dropEpisode;
    private long _lastDropLogTicks = long.MinValue;
    private int _blockedWriters;
    private int _stalled; // a publisher waited a whole block timeout: until the reader drains to half, nobody waits again
    private TaskCompletionSource<bool>? _readWaiter;
    private TaskCompletionSource? _spaceWaiter;

    internal EventSubscription(EventBus bus, string id, string pattern, QosClass qos, OverflowPolicy overflow, int capacity, TimeSpan blockTimeout, string? owner, ISubscriptionSignal? signal)
    {
        _bus = bus;
        Id = id;
        Pattern = pattern;
        Qos = qos;
        Overflow = overflow;
        Owner = owner;
        BlockTimeout = blockTimeout;
        _signal = signal;
        _queue = new BoundedQueue<QueuedEnvelope>(capacity);
        _maxBytes = bus.Options.MaxQueueBytesPerSubscription;
        _highMark = (int)Math.Max(1, ((4L * capacity) + 4) / 5);
        _lowMark = (int)((capacity + 1L) / 2);
    }

    /// <summary>Unique id (assigned by the bus).</summary>
    public string Id { get; }

    /// <summary>The topic pattern.</summary>
    public string Pattern { get; }

    /// <summary>QoS class (never Unspecified).</summary>
    public QosClass Qos { get; }

    /// <summary>Full-queue policy in force (never Unspecified).</summary>
    public OverflowPolicy Overflow { get; }

    /// <summary>Queue capacity.</summary>
    public int Capacity => _queue.Capacity;

    /// <summary>The metrics label of <see cref="Pattern"/> (see <see cref="TopicGroups"/>).</summary>
    public string MetricGroup { get; internal init; } = TopicGroups.Other;

    /// <summary>Who holds the subscription, if given.</summary>
    public string? Owner { get; }

    /// <summary>How long a publisher waits for room under the Block policy.</summary>
    public TimeSpan BlockTimeout { get; }

    /// <summary>Envelopes in the queue now.</summary>
    public int Count => Math.Clamp(Volatile.Read(ref _count), 0, Capacity);

    /// <summary>Bytes queued now (see <see cref="EventBus.WeightOf"/>).</summary>
    public long QueuedBytes => Volatile.Read(ref _bytes);

    /// <summary>True once the subscription is disposed (unsubscribed).</summary>
    public bool IsDisposed => Volatile.Read(ref _state) == Closed;

    /// <summary>A snapshot of the counters.</summary>
    public SubscriptionStats Stats
    {
        get
        {
            var dropped = DropReasons.Snapshot(_dropped, out var total);
            var delivered = Volatile.Read(ref _delivered);
            var depth = Count;
            return new SubscriptionStats
            {
                // Everything that went in came out (read, evicted, expired) or is still queued;
                // deriving it saves an interlocked increment per envelope.
                Enqueued = delivered + dropped[DropReason.QueueFullDropOldest] + dropped[DropReason.TtlExpired] + depth,
                Delivered = delivered,
                Depth = depth,
                SlowEpisodes = Volatile.Read(ref _slowEpisodes),
                Dropped = dropped,
                DroppedTotal = total,
            };
        }
    }

    internal long DroppedTotal
    {
        get
        {
            long total = 0;
            for (var i = 0; i < _dropped.Length; i++)
            {
                total += Volatile.Read(ref _dropped[i]);
            }

            return total;
        }
    }

    /// <summary>
    /// Takes the next envelope. Envelopes whose deadline has passed are skipped and counted as
    /// dropped (TtlExpired). Returns false when the queue is empty; the signal (if any) fires on
    /// the next envelope after that.
    /// </summary>
    public bool TryRead([MaybeNullWhen(false)] out Envelope envelope)
    {
        long now = 0;
        while (true)
        {
            if (!_queue.TryDequeue(out var queued))
            {
                // Arm first, then look again: a publisher that enqueued before it saw the flag
                // is caught by the second look, one that enqueues after it sees the flag.
                Interlocked.Exchange(ref _armed, 1);
                if (!_queue.TryDequeue(out queued))
                {
                    envelope = null;
                    return false;
                }

                Volatile.Write(ref _armed, 0);
            }

            var next = queued.Envelope;
            ReleaseBytes(queued.Weight);
            OnDequeued(byReader: true);
            var deadline = next.DeadlineUnixMs;
            if (deadline != 0)
            {
                if (now == 0)
                {
                    now = _bus.NowUnixMs();
                }

                if (deadline <= now)
                {
                    CountDrop(DropReason.TtlExpired);
                    _bus.CountTopicDrop(next.Topic, DropReason.TtlExpired);
                    continue;
                }
            }

            Interlocked.Increment(ref _delivered);
            envelope = next;
            return true;
        }
    }

    /// <summary>
    /// Completes with true when an envelope is waiting, with false when the subscription is
    /// disposed. Throws <see cref="OperationCanceledException"/> when the token fires.
    /// </summary>
    public ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken)
    {
        if (IsDisposed)
        {
            return new ValueTask<bool>(false);
        }

        if (!_queue.IsEmpty)
        {
            return new ValueTask<bool>(true);
        }

        return WaitToReadSlowAsync(cancellationToken);
    }

    private async ValueTask<bool> WaitToReadSlowAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var waiter = Volatile.Read(ref _readWaiter);
            if (waiter is null)
            {
                var created = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                waiter = Interlocked.CompareExchange(ref _readWaiter, created, null) ?? created;
            }

            Interlocked.Exchange(ref _armed, 1);
            if (IsDisposed)
            {
                return false;
            }

            if (!_queue.IsEmpty)
            {
                return true;
            }

            if (!await waiter.Task.WaitAsync(cancellationToken).ConfigureAwait(false))
            {
                return false;
            }

            if (!_queue.IsEmpty)
            {
                return true;
            }
        }
    }

    /// <summary>Unsubscribes: no more envelopes arrive, waiting readers get false and blocked publishers stop waiting.</summary>
    public void Dispose() => _bus.Unsubscribe(Id);

    internal void Close()
    {
        if (Interlocked.Exchange(ref _state, Closed) == Closed)
        {
            return;
        }

        Interlocked.Exchange(ref _readWaiter, null)?.TrySetResult(false);
        Interlocked.Exchange(ref _spaceWaiter, null)?.TrySetResult();

        // What nobody will read leaves the bus's count of queued bytes (and the heap).
        while (_queue.TryDequeue(out var left))
        {
            ReleaseBytes(left.Weight);
        }
    }

    /// <summary>
    /// Enqueues unless the queue is full by count or by bytes (an empty queue always takes one
    /// envelope, however large, so a big envelope cannot wedge it).
    /// </summary>
    private bool TryEnqueue(Envelope envelope, int weight)
    {
        if (Volatile.Read(ref _bytes) + weight > _maxBytes && !_queue.IsEmpty)
        {
            return false;
        }

        if (!_queue.TryEnqueue(new QueuedEnvelope(envelope, weight)))
        {
            return false;
        }

        Interlocked.Add(ref _bytes, weight);
        _bus.AddQueuedBytes(weight);
        return true;
    }

    private void ReleaseBytes(int weight)
    {
        Interlocked.Add(ref _bytes, -weight);
        _bus.AddQueuedBytes(-weight);
    }

    /// <summary>Queues an envelope by the subscription's policy without waiting.</summary>
    internal OfferResult Offer(Envelope envelope, int weight)
    {
        if (Volatile.Read(ref _state) == Closed)
        {
            return OfferResult.Closed;
        }

        if (TryEnqueue(envelope, weight))
        {
            OnEnqueued();
            return OfferResult.Enqueued;
        }

        CheckSlow(Volatile.Read(ref _count));
        switch (Overflow)
        {
            case OverflowPolicy.DropOldest:
                return EnqueueEvictingOldest(envelope, weight);
            case OverflowPolicy.Block when Volatile.Read(ref _stalled) != 0:
                CountDrop(DropReason.SlowConsumer);
                return OfferResult.DroppedStalled;
            case OverflowPolicy.Block:
                return OfferResult.MustBlock;
            default:
                CountDrop(DropReason.QueueFullDropNewest);
                return OfferResult.Dropped;
        }
    }

    private OfferResult EnqueueEvictingOldest(Envelope envelope, int weight)
    {
        var spin = default(SpinWait);
        while (true)
        {
            if (_queue.TryDequeue(out var evicted))
            {
                ReleaseBytes(evicted.Weight);
                OnDequeued(byReader: false);
                CountDrop(DropReason.QueueFullDropOldest);
                _bus.CountTopicDrop(evicted.Envelope.Topic, DropReason.QueueFullDropOldest);
            }

            if (TryEnqueue(envelope, weight))
            {
                OnEnqueued();
                return OfferResult.Enqueued;
            }

            if (Volatile.Read(ref _state) == Closed)
            {
                return OfferResult.Closed;
            }

            // Another publisher took the room, or a racing reader or writer is mid-operation.
            spin.SpinOnce();
        }
    }

    /// <summary>True while the queue is full of a reader that stalled (see <see cref="DropReason.SlowConsumer"/>).</summary>
    public bool IsStalled => Volatile.Read(ref _stalled) != 0;

    /// <summary>
    /// Block policy: waits for room until the deadline, then drops the envelope and marks the
    /// subscription stalled, which releases every other waiting publisher at once: a reader that
    /// stops reading costs its publishers one block timeout per episode, not one per envelope.
    /// </summary>
    internal async ValueTask<OfferResult> EnqueueBlockingAsync(Envelope envelope, int weight, long startTimestamp, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _blockedWriters);
        try
        {
            while (true)
            {
                if (Volatile.Read(ref _state) == Closed)
                {
                    return OfferResult.Closed;
                }

                var space = Volatile.Read(ref _spaceWaiter);
                if (space is null)
                {
                    var created = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    space = Interlocked.CompareExchange(ref _spaceWaiter, created, null) ?? created;
                }

                if (TryEnqueue(envelope, weight))
                {
                    OnEnqueued();
                    return OfferResult.Enqueued;
                }

                if (Volatile.Read(ref _stalled) != 0)
                {
                    CountDrop(DropReason.SlowConsumer);
                    return OfferResult.DroppedStalled;
                }

                var remaining = BlockTimeout - _bus.Time.GetElapsedTime(startTimestamp);
                if (remaining <= TimeSpan.Zero)
                {
                    CountDrop(DropReason.BlockTimeout);
                    if (Interlocked.Exchange(ref _stalled, 1) == 0)
                    {
                        Interlocked.Exchange(ref _spaceWaiter, null)?.TrySetResult();
                    }

                    return OfferResult.Dropped;
                }

                try
                {
                    await space.Task.WaitAsync(remaining, _bus.Time, cancellationToken).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // Look once more, then drop.
                }
                catch (OperationCanceledException)
                {
                    CountDrop(DropReason.BlockTimeout);
                    throw;
                }
            }
        }
        finally
        {
            Interlocked.Decrement(ref _blockedWriters);
        }
    }

    internal void CountDrop(DropReason reason)
    {
        Interlocked.Increment(ref _dropped[(int)reason]);
        if (Volatile.Read(ref _dropEpisode) == 0 && Interlocked.Exchange(ref _dropEpisode, 1) == 0)
        {
            // One log line per episode, and not more than one per interval for flapping queues.
            var now = _bus.Time.GetTimestamp();
            var last = Volatile.Read(ref _lastDropLogTicks);
            if (last == long.MinValue || _bus.Time.GetElapsedTime(last, now) >= EventBus.DropLogInterval)
            {
                Volatile.Write(ref _lastDropLogTicks, now);
                _bus.LogDropEpisode(this, reason);
            }
        }
    }

    private void OnEnqueued()
    {
        var count = Interlocked.Increment(ref _count);
        if (count >= _highMark)
        {
            CheckSlow(count);
        }

        // The increment above is a full fence, so this read cannot move before the enqueue.
        if (Volatile.Read(ref _armed) != 0 && Interlocked.Exchange(ref _armed, 0) != 0)
        {
            NotifyAvailable();
        }
    }

    private void OnDequeued(bool byReader)
    {
        var count = Interlocked.Decrement(ref _count);
        // An eviction makes room for the next envelope at once: only a reader drains the queue.
        if (byReader && count < _highMark)
        {
            if (count < _lowMark && (Volatile.Read(ref _slow) | Volatile.Read(ref _dropEpisode) | Volatile.Read(ref _stalled)) != 0)
            {
                Volatile.Write(ref _stalled, 0);
                Volatile.Write(ref _slow, 0);
                Volatile.Write(ref _dropEpisode, 0);
                Volatile.Write(ref _highSinceTicks, 0);
            }
            else if (Volatile.Read(ref _highSinceTicks) != 0)
            {
                Volatile.Write(ref _highSinceTicks, 0);
            }
        }

        // The decrement above is a full fence: a blocked publisher that registered before it is seen.
        if (Volatile.Read(ref _blockedWriters) != 0)
        {
            Interlocked.Exchange(ref _spaceWaiter, null)?.TrySetResult();
        }
    }

    private void CheckSlow(int count)
    {
        if (count < _highMark || Volatile.Read(ref _slow) != 0)
        {
            return;
        }

        var threshold = _bus.SlowConsumerThreshold;
        if (threshold > TimeSpan.Zero)
        {
            var now = _bus.Time.GetTimestamp();
            var since = Volatile.Read(ref _highSinceTicks);
            if (since == 0)
            {
                Interlocked.CompareExchange(ref _highSinceTicks, now == 0 ? 1 : now, 0);
                return;
            }

            if (_bus.Time.GetElapsedTime(since, now) < threshold)
            {
                return;
            }
        }

        if (Interlocked.Exchange(ref _slow, 1) == 0)
        {
            Interlocked.Increment(ref _slowEpisodes);
            _bus.RaiseSlowConsumer(this, count);
        }
    }

    private void NotifyAvailable()
    {
        Interlocked.Exchange(ref _readWaiter, null)?.TrySetResult(true);
        if (_signal is not null)
        {
            try
            {
                _signal.OnAvailable(this);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                _bus.LogSignalFailed(this, ex);
            }
        }
    }
}
