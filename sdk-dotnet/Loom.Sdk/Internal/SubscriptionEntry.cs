using System.Threading.Channels;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk.Internal;

/// <summary>
/// One local subscription of a remote connection: its spec, the id the bridge gave it, and a
/// bounded queue drained by one pump task that calls the handler in order. The read loop never
/// waits on a handler: a full queue applies the subscription's policy (DROP_OLDEST, DROP_NEWEST,
/// or BLOCK up to the block timeout, then drop newest), counts the drop and logs once per episode.
/// Inline entries (the inbox) run a cheap synchronous handler on the read loop instead.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "The stop source has no timer; it is cancelled, never disposed, because a late delivery may still link to it.")]
internal sealed class SubscriptionEntry
{
    private static readonly TimeSpan DefaultBlockTimeout = TimeSpan.FromSeconds(1);

    private readonly Func<Envelope, CancellationToken, Task>? _handler;
    private readonly Action<Envelope>? _inline;
    private readonly Channel<Envelope>? _queue;
    private readonly OverflowPolicy _policy;
    private readonly TimeSpan _blockTimeout;
    private readonly ILogger _logger;
    private readonly string _owner;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private Task _pump = Task.CompletedTask;
    private long _delivered;
    private long _dropped;
    private long _handlerFailures;
    private int _slow;
    private volatile string? _bridgeId;

    public SubscriptionEntry(Subscription spec, Func<Envelope, CancellationToken, Task> handler, int capacity, string owner, TimeProvider time, ILogger logger)
    {
        Spec = spec;
        _handler = handler;
        _owner = owner;
        _time = time;
        _logger = logger;
        Capacity = Math.Max(1, capacity);
        _policy = EffectivePolicy(spec);
        _blockTimeout = spec.BlockTimeoutMs > 0 ? TimeSpan.FromMilliseconds(spec.BlockTimeoutMs) : DefaultBlockTimeout;
        var options = new BoundedChannelOptions(Capacity)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = _policy switch
            {
                OverflowPolicy.DropOldest => BoundedChannelFullMode.DropOldest,
                OverflowPolicy.Block => BoundedChannelFullMode.Wait,
                _ => BoundedChannelFullMode.DropWrite,
            },
        };
        _queue = Channel.CreateBounded<Envelope>(options, _ => OnDropped());
    }

    public SubscriptionEntry(Subscription spec, Action<Envelope> inline, string owner, TimeProvider time, ILogger logger)
    {
        Spec = spec;
        _inline = inline;
        _owner = owner;
        _time = time;
        _logger = logger;
        Capacity = 0;
        _policy = EffectivePolicy(spec);
    }

    public Subscription Spec { get; }

    public string Pattern => Spec.Pattern;

    public int Capacity { get; }

    /// <summary>The bridge's id for this subscription on the current session; null until acked or registered.</summary>
    public string? BridgeId
    {
        get => _bridgeId;
        set => _bridgeId = value;
    }

    public long Delivered => Interlocked.Read(ref _delivered);

    public long Dropped => Interlocked.Read(ref _dropped);

    public long HandlerFailures => Interlocked.Read(ref _handlerFailures);

    public int Depth => _queue?.Reader.Count ?? 0;

    public bool SameBridgeSubscription(Subscription other) =>
        string.Equals(Spec.Pattern, other.Pattern, StringComparison.Ordinal) && Normalize(Spec.Qos) == Normalize(other.Qos);

    public static QosClass Normalize(QosClass qos) => qos == QosClass.Unspecified ? QosClass.Normal : qos;

    private static OverflowPolicy EffectivePolicy(Subscription spec) => spec.Overflow != OverflowPolicy.Unspecified
        ? spec.Overflow
        : Normalize(spec.Qos) switch
        {
            QosClass.Realtime => OverflowPolicy.DropOldest,
            QosClass.Batch => OverflowPolicy.Block,
            _ => OverflowPolicy.DropNewest,
        };

    public void Start()
    {
        if (_queue is not null)
        {
            // The pump must not inherit the subscriber's ambient state (e.g. the span current when it subscribed).
            using (ExecutionContext.SuppressFlow())
            {
                _pump = Task.Run(PumpAsync);
            }
        }
    }

    /// <summary>Hands a delivery to the subscription. Completes synchronously unless the BLOCK policy waits.</summary>
    public ValueTask EnqueueAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        if (_inline is not null)
        {
            Interlocked.Increment(ref _delivered);
            try
            {
                _inline(envelope);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                Interlocked.Increment(ref _handlerFailures);
                Log.HandlerFailed(_logger, _owner, Pattern, ex);
            }

            return default;
        }

        if (_queue!.Writer.TryWrite(envelope))
        {
            return default;
        }

        return _policy == OverflowPolicy.Block ? BlockAsync(envelope, cancellationToken) : default;
    }

    private async ValueTask BlockAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_blockTimeout, _time);
        using var bound = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stop.Token, timeout.Token);
        try
        {
            await _queue!.Writer.WriteAsync(envelope, bound.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            OnDropped();
        }
        catch (ChannelClosedException)
        {
            OnDropped();
        }
    }

    private void OnDropped()
    {
        Interlocked.Increment(ref _dropped);
        if (Interlocked.Exchange(ref _slow, 1) == 0)
        {
            Log.SlowSubscriber(_logger, _owner, Pattern, Capacity, _policy.ToString());
        }
    }

    private async Task PumpAsync()
    {
        var reader = _queue!.Reader;
        var token = _stop.Token;
        try
        {
            while (await reader.WaitToReadAsync(token))
            {
                while (reader.TryRead(out var envelope))
                {
                    Interlocked.Increment(ref _delivered);
                    try
                    {
                        await Tracing.RunHandlerAsync(envelope, Pattern, _handler!, token);
                    }
                    catch (OperationCanceledException) when (token.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        Interlocked.Increment(ref _handlerFailures);
                        Log.HandlerFailed(_logger, _owner, Pattern, ex);
                    }
                }

                if (Volatile.Read(ref _slow) == 1 && reader.Count < Capacity / 2)
                {
                    Volatile.Write(ref _slow, 0);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    /// <summary>Stops taking deliveries, lets the handler finish what is queued within the bound, then cancels it.</summary>
    public async Task StopAsync(TimeSpan drain)
    {
        _queue?.Writer.TryComplete();
        try
        {
            await _pump.WaitAsync(drain, _time);
        }
        catch (TimeoutException)
        {
            Log.SubscriptionDrainTimedOut(_logger, _owner, Pattern, Depth);
        }
        finally
        {
            await _stop.CancelAsync();
        }

        try
        {
            await _pump.WaitAsync(TimeSpan.FromSeconds(1), _time);
        }
        catch (TimeoutException)
        {
            // A handler that ignores cancellation; it is left behind.
        }
    }
}
