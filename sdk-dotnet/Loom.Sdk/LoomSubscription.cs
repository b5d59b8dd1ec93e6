namespace Loom.Sdk;

/// <summary>A live subscription. Dispose it to unsubscribe (the handler finishes what is queued, bounded).</summary>
public sealed class LoomSubscription : IAsyncDisposable
{
    private readonly Func<string?> _id;
    private readonly Func<long> _delivered;
    private readonly Func<long> _dropped;
    private readonly Func<ValueTask> _unsubscribe;
    private int _disposed;

    internal LoomSubscription(string pattern, Func<string?> id, Func<long> delivered, Func<long> dropped, Func<ValueTask> unsubscribe)
    {
        Pattern = pattern;
        _id = id;
        _delivered = delivered;
        _dropped = dropped;
        _unsubscribe = unsubscribe;
    }

    /// <summary>The subscribed pattern.</summary>
    public string Pattern { get; }

    /// <summary>The id the bridge (or the in-process bus) gave the subscription; null while not yet acknowledged.</summary>
    public string? Id => _id();

    /// <summary>Envelopes handed to the handler.</summary>
    public long Delivered => _delivered();

    /// <summary>Envelopes dropped locally because the handler did not keep up (the QoS policy applied).</summary>
    public long Dropped => _dropped();

    public ValueTask DisposeAsync() =>
        Interlocked.Exchange(ref _disposed, 1) == 0 ? _unsubscribe() : ValueTask.CompletedTask;
}
