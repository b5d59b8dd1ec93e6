namespace Loom.Core.Collaboration;

/// <summary>Settings of a <see cref="Coordinator"/>.</summary>
public sealed class CoordinatorOptions
{
    /// <summary>Deadline of a gather or barrier that names none (timeout_ms = 0). Default 30 s.</summary>
    public TimeSpan DefaultTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Deadline of a contract-net exchange that names none. Default 60 s.</summary>
    public TimeSpan DefaultContractNetTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>How long bids are collected when the request names no bid timeout. Default 2 s.</summary>
    public TimeSpan DefaultBidTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>The longest deadline any operation may ask for. Default 10 min.</summary>
    public TimeSpan MaxTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Replies one operation may hold before it reads them; more are dropped and counted. Default 4096.</summary>
    public int MaxPendingReplies { get; init; } = 4096;

    /// <summary>Queue capacity of the coordinator's reply subscription (<c>_loom.reply.*</c>). Default 65536.</summary>
    public int ReplyQueueCapacity { get; init; } = 65_536;

    /// <summary>Barriers alive at once (waiting or holding arrivals). Default 10000.</summary>
    public int MaxBarriers { get; init; } = 10_000;

    /// <summary>Gathers and contract-nets waiting for replies at once. Default 10000.</summary>
    public int MaxOperations { get; init; } = 10_000;
}

/// <summary>Counters of a <see cref="Coordinator"/>.</summary>
/// <param name="Started">Operations started (gather, barrier, contract-net).</param>
/// <param name="InFlight">Gathers and contract-nets waiting for replies now.</param>
/// <param name="LateReplies">Replies that arrived after their operation ended: counted and dropped.</param>
/// <param name="DuplicateReplies">Second and later replies of one responder to one operation: counted and dropped.</param>
/// <param name="OverflowReplies">Replies dropped because an operation held too many unread ones.</param>
/// <param name="Barriers">Barriers alive now.</param>
public sealed record CoordinatorStats(long Started, int InFlight, long LateReplies, long DuplicateReplies, long OverflowReplies, int Barriers);
