namespace Loom.Protocol.V1;

/// <summary>
/// An envelope published to several subscribers is serialized once for all of them: the bus
/// records, before queuing it, how many subscriptions it goes to (<see cref="PrepareDeliveries"/>),
/// and when that is more than one the first delivery's encoder keeps the bytes for the others
/// (<see cref="TryGetSharedEncoding"/>), until the last of them has taken them. Each publication
/// has its own bytes: publishing the same object again starts over, and an encoder still working
/// for the earlier publication cannot hand its bytes to the new one. A clone never has them.
/// </summary>
public sealed partial class Envelope
{
    /// <summary>Larger envelopes are serialized per delivery (into pooled buffers) rather than kept on the large object heap.</summary>
    private const int MaxSharedBytes = 64 * 1024;

    private SharedEncoding? _shared;

    /// <summary>
    /// Called by the bus once the envelope is final for this publication and before it is queued on
    /// <paramref name="subscriptions"/> subscriptions: forgets what an earlier publication kept.
    /// </summary>
    public void PrepareDeliveries(int subscriptions) =>
        Volatile.Write(ref _shared, subscriptions > 1 ? new SharedEncoding(subscriptions) : null);

    /// <summary>
    /// Bytes of fields this build does not know (kept and forwarded as received); zero, without any
    /// work, for an envelope that has none. Sizes that are estimated from the known fields add it.
    /// </summary>
    public int UnknownFieldsSize => _unknownFields is null ? 0 : _unknownFields.CalculateSize();

    /// <summary>No headers and no unknown fields: <see cref="EnvelopeCodec"/> writes it by hand.</summary>
    internal bool IsPlain => _unknownFields is null && headers_.Count == 0;

    /// <summary>True while bytes are kept for this publication's remaining deliveries.</summary>
    public bool HasSharedEncoding => Volatile.Read(ref _shared)?.Bytes is not null;

    /// <summary>
    /// The envelope's encoding shared by this publication's deliveries: serialized by the first caller
    /// and kept until every expected delivery has taken it, when the publication went to more than one
    /// subscription and the envelope is at most 64 KiB; false otherwise (serialize it yourself).
    /// </summary>
    public bool TryGetSharedEncoding(out byte[] encoding)
    {
        var shared = Volatile.Read(ref _shared);
        if (shared is null || shared.TooLarge)
        {
            encoding = [];
            return false;
        }

        var kept = Volatile.Read(ref shared.Bytes);
        if (kept is null)
        {
            var size = EnvelopeCodec.Size(this);
            if (size > MaxSharedBytes)
            {
                shared.TooLarge = true;
                encoding = [];
                return false;
            }

            // Two deliveries encoding at once may both serialize; one result is kept, both are the same bytes.
            var fresh = new byte[size];
            EnvelopeCodec.Write(this, size, fresh);
            kept = Interlocked.CompareExchange(ref shared.Bytes, fresh, null) ?? fresh;
        }

        if (Interlocked.Decrement(ref shared.Remaining) <= 0)
        {
            Volatile.Write(ref shared.Bytes, null); // the last expected delivery: nothing more to share
        }

        encoding = kept;
        return true;
    }

    /// <summary>One publication's shared bytes; a new publication gets a new one.</summary>
    private sealed class SharedEncoding(int deliveries)
    {
        public byte[]? Bytes;
        public int Remaining = deliveries;
        public volatile bool TooLarge;
    }
}
