using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal.Connection;

/// <summary>
/// Local subscriptions and their routes: each local subscription is bound to the bridge's id of an
/// equal subscription (one bridge subscription serves equal local ones); deliveries are routed by
/// that id to each subscription's bounded queue. Every registration carries all subscriptions, and
/// the ids of its answer re-bind them after a reconnect.
/// </summary>
internal sealed class SubscriptionRouter
{
    private readonly ConnectionState _state;
    private readonly Writer _writer;
    private readonly PendingCalls _pending;
    private readonly Lock _gate = new();
    private readonly List<SubscriptionEntry> _entries = [];
    private Dictionary<string, SubscriptionEntry[]> _byBridgeId = new(StringComparer.Ordinal);
    private long _unrouted;

    public SubscriptionRouter(ConnectionState state, Writer writer, PendingCalls pending, SubscriptionEntry inbox)
    {
        _state = state;
        _writer = writer;
        _pending = pending;
        _entries.Add(inbox);
    }

    /// <summary>Deliveries no local subscription wanted (unsubscribed meanwhile).</summary>
    public long Unrouted => Interlocked.Read(ref _unrouted);

    /// <summary>Deliveries dropped by full local queues.</summary>
    public long Dropped
    {
        get
        {
            lock (_gate)
            {
                return _entries.Sum(e => e.Dropped);
            }
        }
    }

    public async Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(handler);
        Topics.ValidatePattern(pattern);
        options ??= SubscribeOptions.Default;
        var spec = options.ToProto(pattern);
        var entry = new SubscriptionEntry(spec, handler, options.LocalQueueCapacity ?? _state.Options.DeliveryQueueCapacity, _state.AgentId, _state.Time, _state.Logger);
        entry.Start();
        bool needsRequest;
        lock (_gate)
        {
            _entries.Add(entry);
            var twin = _entries.Find(e => !ReferenceEquals(e, entry) && e.BridgeId is not null && e.SameBridgeSubscription(spec));
            if (twin is not null)
            {
                entry.BridgeId = twin.BridgeId;
                RebuildRoutesLocked();
            }

            needsRequest = twin is null;
        }

        var handle = new LoomSubscription(pattern, () => entry.BridgeId, () => entry.Delivered, () => entry.Dropped, () => UnsubscribeAsync(entry));
        if (!needsRequest || !_state.IsConnected)
        {
            // Not connected: the next registration carries it.
            return handle;
        }

        var timeout = _state.Options.RequestTimeout;
        var correlationId = _state.Ids.Next();
        var op = new PendingOperation(PendingKind.Subscribe, entry);
        _pending.Add(correlationId, op);
        ServerMessage reply;
        try
        {
            await _writer.EnqueueAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = correlationId, Subscription = spec } }, cancellationToken);
            reply = await op.Task.WaitAsync(timeout, _state.Time, cancellationToken);
        }
        catch (LoomException ex) when (ex.Code == ErrorCode.Unavailable && !_state.IsDisposed)
        {
            // The stream broke meanwhile; the re-registration carries the subscription.
            return handle;
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or ObjectDisposedException)
        {
            // Left in the map: if the ack still comes, the read loop unsubscribes what nobody wants.
            op.Abandoned = true;
            await RemoveEntryAsync(entry);
            if (ex is TimeoutException)
            {
                throw new LoomTimeoutException($"The bridge did not acknowledge the subscription to '{pattern}' within {timeout.TotalMilliseconds:0} ms.", ex);
            }

            throw;
        }

        if (reply.KindCase == ServerMessage.KindOneofCase.Error)
        {
            await RemoveEntryAsync(entry);
            throw LoomException.FromError(reply.Error.Error);
        }

        return handle;
    }

    private async Task RemoveEntryAsync(SubscriptionEntry entry)
    {
        lock (_gate)
        {
            _entries.Remove(entry);
            RebuildRoutesLocked();
        }

        await entry.StopAsync(TimeSpan.Zero);
    }

    private async ValueTask UnsubscribeAsync(SubscriptionEntry entry)
    {
        string? bridgeId;
        bool last;
        lock (_gate)
        {
            _entries.Remove(entry);
            bridgeId = entry.BridgeId;
            last = !_entries.Exists(e => e.SameBridgeSubscription(entry.Spec));
            RebuildRoutesLocked();
        }

        var timeout = _state.Options.RequestTimeout;
        await entry.StopAsync(_state.Options.DisposeTimeout);
        if (!last || bridgeId is null || _state.IsDisposed || !_state.IsConnected)
        {
            // Not connected: the next registration leaves it out (and drops it if the bridge kept it).
            return;
        }

        var correlationId = _state.Ids.Next();
        var op = new PendingOperation(PendingKind.Unsubscribe);
        _pending.Add(correlationId, op);
        try
        {
            await _writer.EnqueueAsync(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = correlationId, SubscriptionId = bridgeId } }, CancellationToken.None)
                .AsTask().WaitAsync(timeout, _state.Time);
            var reply = await op.Task.WaitAsync(timeout, _state.Time);
            if (reply.KindCase == ServerMessage.KindOneofCase.Error)
            {
                Log.UnsubscribeFailed(_state.Logger, _state.AgentId, entry.Pattern, reply.Error.Error?.Message ?? "");
            }
        }
        catch (Exception ex) when (ex is TimeoutException or LoomException or ObjectDisposedException)
        {
            Log.UnsubscribeFailed(_state.Logger, _state.AgentId, entry.Pattern, ex.Message);
        }
        finally
        {
            _pending.TryRemove(correlationId, out _);
        }
    }

    /// <summary>Adds every subscription (once per bridge subscription) to a registration.</summary>
    public void AddTo(RegisterAgentRequest request)
    {
        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                if (!request.Subscriptions.Any(entry.SameBridgeSubscription))
                {
                    request.Subscriptions.Add(entry.Spec);
                }
            }
        }
    }

    /// <summary>True when a registration's answer confirms every local subscription.</summary>
    public bool CoveredBy(RegisterAgentResponse response)
    {
        lock (_gate)
        {
            return _entries.TrueForAll(e => response.Subscriptions.Any(e.SameBridgeSubscription));
        }
    }

    /// <summary>Binds local subscriptions to the ids of a (re-)registration; returns bridge ids nobody here wants.</summary>
    public List<string> Bind(RegisterAgentResponse response)
    {
        var stale = new List<string>();
        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                entry.BridgeId = null;
            }

            foreach (var held in response.Subscriptions)
            {
                var wanted = false;
                foreach (var entry in _entries)
                {
                    if (entry.SameBridgeSubscription(held))
                    {
                        entry.BridgeId = held.SubscriptionId;
                        wanted = true;
                    }
                }

                if (!wanted)
                {
                    stale.Add(held.SubscriptionId);
                }
            }

            RebuildRoutesLocked();
        }

        return stale;
    }

    /// <summary>Subscribes what was added while a registration was on its way (called once the status is Connected).</summary>
    public void SubscribeMissing()
    {
        List<SubscriptionEntry> missing = [];
        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                if (entry.BridgeId is null && !missing.Exists(m => m.SameBridgeSubscription(entry.Spec)))
                {
                    missing.Add(entry);
                }
            }
        }

        foreach (var entry in missing)
        {
            var correlationId = _state.Ids.Next();
            _pending.Add(correlationId, new PendingOperation(PendingKind.Subscribe, entry));
            _writer.TryWrite(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = correlationId, Subscription = entry.Spec } });
        }
    }

    /// <summary>The stream broke: no subscription is bound until the next registration.</summary>
    public void Unbind()
    {
        lock (_gate)
        {
            foreach (var entry in _entries)
            {
                entry.BridgeId = null;
            }

            RebuildRoutesLocked();
        }
    }

    /// <summary>Routes a delivery to the queues of its subscriptions (waits while one is full and blocks).</summary>
    public async ValueTask DeliverAsync(Delivery delivery, CancellationToken token)
    {
        if (Volatile.Read(ref _byBridgeId).TryGetValue(delivery.SubscriptionId, out var entries))
        {
            foreach (var entry in entries)
            {
                await entry.EnqueueAsync(delivery.Envelope, token);
            }
        }
        else
        {
            Interlocked.Increment(ref _unrouted);
            Log.DeliveryUnrouted(_state.Logger, _state.AgentId, delivery.SubscriptionId);
        }
    }

    /// <summary>A consumer delivery for a consumer detached meanwhile (the bridge delivers it again after the ack wait).</summary>
    public void CountUnrouted() => Interlocked.Increment(ref _unrouted);

    /// <summary>The ack of a subscribe or unsubscribe: binds the subscription before any of its deliveries is read (they follow the ack).</summary>
    public void OnAck(ServerMessage message)
    {
        if (!_pending.TryRemove(message.Ack.CorrelationId, out var op))
        {
            return; // e.g. the ack of an unsubscribe for a subscription dropped while disconnected
        }

        if (op.Kind == PendingKind.Subscribe && op.Entry is { } entry)
        {
            var wanted = false;
            lock (_gate)
            {
                foreach (var e in _entries)
                {
                    if (ReferenceEquals(e, entry) || (e.BridgeId is null && e.SameBridgeSubscription(entry.Spec)))
                    {
                        e.BridgeId = message.Ack.SubscriptionId;
                    }

                    wanted |= e.BridgeId == message.Ack.SubscriptionId;
                }

                RebuildRoutesLocked();
            }

            if (!wanted && op.Abandoned)
            {
                _writer.TryWrite(new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = _state.Ids.Next(), SubscriptionId = message.Ack.SubscriptionId } });
            }
        }

        op.TrySetResult(message);
    }

    /// <summary>At close: every subscription's queue drains (within <paramref name="timeout"/>) and its handler stops.</summary>
    public Task StopAllAsync(TimeSpan timeout)
    {
        SubscriptionEntry[] entries;
        lock (_gate)
        {
            entries = [.. _entries];
        }

        return Task.WhenAll(entries.Select(e => e.StopAsync(timeout)));
    }

    private void RebuildRoutesLocked()
    {
        var routes = new Dictionary<string, SubscriptionEntry[]>(StringComparer.Ordinal);
        foreach (var entry in _entries)
        {
            if (entry.BridgeId is { } id)
            {
                routes[id] = routes.TryGetValue(id, out var existing) ? [.. existing, entry] : [entry];
            }
        }

        Volatile.Write(ref _byBridgeId, routes);
    }
}
