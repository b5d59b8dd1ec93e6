namespace Loom.Sdk;

/// <summary>Counters of a <see cref="LoomConnection"/> since it was created.</summary>
public sealed record LoomConnectionStatistics
{
    /// <summary>Frames written to the bridge.</summary>
    public long FramesSent { get; init; }

    /// <summary>Messages written to the bridge (a frame carries a batch).</summary>
    public long MessagesSent { get; init; }

    /// <summary>Frames read from the bridge.</summary>
    public long FramesReceived { get; init; }

    /// <summary>Messages read from the bridge.</summary>
    public long MessagesReceived { get; init; }

    /// <summary>Successful re-registrations after a broken stream.</summary>
    public long Reconnects { get; init; }

    /// <summary>Deliveries dropped locally because a handler did not keep up.</summary>
    public long DeliveriesDropped { get; init; }

    /// <summary>Deliveries for a subscription id this connection no longer knows.</summary>
    public long DeliveriesUnrouted { get; init; }

    /// <summary>Replies that arrived after their request timed out (dropped).</summary>
    public long LateReplies { get; init; }

    /// <summary>Results, acks or memory responses that arrived after their request gave up (dropped).</summary>
    public long LateResponses { get; init; }

    /// <summary>Publishes the bridge rejected (logged; the error names the envelope id).</summary>
    public long PublishErrors { get; init; }

    /// <summary>Messages taken from the outbound queue but lost with a stream that broke while writing them.</summary>
    public long LostOnBreak { get; init; }

    /// <summary>
    /// Messages nobody waits an answer for (publishes, results, unsubscribes) still queued, never
    /// written, when the connection closed: e.g. closed while reconnecting, or past its dispose bound.
    /// </summary>
    public long UnsentOnClose { get; init; }

    /// <summary>Messages waiting in the outbound queue now.</summary>
    public int OutboundQueueDepth { get; init; }
}
