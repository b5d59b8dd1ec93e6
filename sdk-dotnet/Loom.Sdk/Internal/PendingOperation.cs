using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

internal enum PendingKind
{
    Call,
    Subscribe,
    Unsubscribe,
    Memory,
    Durable,
}

/// <summary>
/// A request sent on the stream that waits for its answer (ActionResult, Ack, MemoryResponse or
/// ErrorReply with the same correlation id). The waiter applies the deadline.
/// </summary>
internal sealed class PendingOperation(PendingKind kind, SubscriptionEntry? entry = null)
    : TaskCompletionSource<ServerMessage>(TaskCreationOptions.RunContinuationsAsynchronously)
{
    public PendingKind Kind { get; } = kind;

    /// <summary>For subscribe: the local subscription that the ack binds to a bridge id.</summary>
    public SubscriptionEntry? Entry { get; } = entry;

    /// <summary>The waiter gave up (timeout, cancel); a late subscribe ack is then undone.</summary>
    public bool Abandoned { get; set; }
}
