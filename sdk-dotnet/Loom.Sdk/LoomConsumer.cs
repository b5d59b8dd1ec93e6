using System.Threading.Channels;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal.Connection;

namespace Loom.Sdk;

/// <summary>
/// A durable consumer attached through a <see cref="LoomConnection"/> (<see cref="LoomConnection.ConsumeAsync"/>).
/// Deliveries wait in a queue as long as the consumer's max_ack_pending (the bridge sends no
/// more than that unacknowledged), and the handler runs for them one at a time.
/// </summary>
public sealed class LoomConsumer : IAsyncDisposable
{
    private readonly DurableStreams _streams;
    private readonly Func<ConsumerMessage, CancellationToken, Task> _handler;
    private readonly Channel<Delivery> _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _handled;
    private long _failed;

    internal LoomConsumer(DurableStreams streams, ConsumerConfig config, Func<ConsumerMessage, CancellationToken, Task> handler)
    {
        _streams = streams;
        Config = config;
        _handler = handler;
        var capacity = (int)(config.MaxAckPending == 0 ? 1000 : Math.Min(config.MaxAckPending, 100_000));
        _queue = Channel.CreateBounded<Delivery>(new BoundedChannelOptions(capacity + 16) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _loop = Task.Run(RunAsync);
    }

    /// <summary>The configuration attached with.</summary>
    public ConsumerConfig Config { get; }

    /// <summary>The consumer's state when it was attached (position, pending).</summary>
    public ConsumerInfo Info { get; internal set; } = new();

    /// <summary>Deliveries the handler finished without throwing.</summary>
    public long Handled => Interlocked.Read(ref _handled);

    /// <summary>Deliveries whose handler threw (each was nak'ed).</summary>
    public long Failed => Interlocked.Read(ref _failed);

    internal ValueTask EnqueueAsync(Delivery delivery, CancellationToken token) => _queue.Writer.WriteAsync(delivery, token);

    private async Task RunAsync()
    {
        try
        {
            await foreach (var delivery in _queue.Reader.ReadAllAsync(_stop.Token))
            {
                var message = new ConsumerMessage(this, delivery);
                try
                {
                    await _handler(message, _stop.Token);
                    Interlocked.Increment(ref _handled);
                    if (!message.Settled)
                    {
                        message.Ack();
                    }
                }
                catch (OperationCanceledException) when (_stop.IsCancellationRequested)
                {
                    return; // stopping: not settled, so delivered again
                }
                catch (Exception)
                {
                    Interlocked.Increment(ref _failed);
                    if (!message.Settled)
                    {
                        message.Nak();
                    }
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    internal void Settle(ulong sequence, AckKind kind, uint delayMs) => _streams.SendAck(Config.Stream, Config.Name, sequence, kind, delayMs);

    internal async Task StopAsync()
    {
        await _stop.CancelAsync();
        _queue.Writer.TryComplete();
        await _loop.WaitAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Stops receiving; the consumer's position stays in the bridge (<paramref name="delete"/> removes it).</summary>
    public async Task DetachAsync(bool delete = false)
    {
        await _streams.DetachAsync(this, delete);
        await StopAsync();
    }

    public async ValueTask DisposeAsync()
    {
        await DetachAsync();
        _stop.Dispose();
    }
}

/// <summary>One delivery of a durable consumer: the event, its stream sequence, how often it was delivered, and how to settle it.</summary>
public sealed class ConsumerMessage
{
    private readonly LoomConsumer _consumer;
    private int _settled;

    internal ConsumerMessage(LoomConsumer consumer, Delivery delivery)
    {
        _consumer = consumer;
        Envelope = delivery.Envelope;
        Sequence = delivery.StreamSequence;
        DeliveryCount = delivery.DeliveryCount;
        Stream = delivery.Stream;
    }

    public Envelope Envelope { get; }

    public ulong Sequence { get; }

    /// <summary>1 on the first delivery; more when it is a redelivery.</summary>
    public uint DeliveryCount { get; }

    public string Stream { get; }

    internal bool Settled => Volatile.Read(ref _settled) == 1;

    /// <summary>Done: never delivered again.</summary>
    public void Ack() => Settle(AckKind.Ack, 0);

    /// <summary>Failed: delivered again after <paramref name="delay"/> (counts toward max_deliver).</summary>
    public void Nak(TimeSpan delay = default) => Settle(AckKind.Nak, (uint)Math.Clamp(delay.TotalMilliseconds, 0, uint.MaxValue));

    /// <summary>Still working: the ack wait starts again (may be sent more than once).</summary>
    public void InProgress() => _consumer.Settle(Sequence, AckKind.InProgress, 0);

    /// <summary>Never deliver again, and do not dead-letter it.</summary>
    public void Terminate() => Settle(AckKind.Terminate, 0);

    private void Settle(AckKind kind, uint delayMs)
    {
        if (Interlocked.Exchange(ref _settled, 1) == 0)
        {
            _consumer.Settle(Sequence, kind, delayMs);
        }
    }
}
