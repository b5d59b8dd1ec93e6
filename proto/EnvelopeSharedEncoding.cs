namespace Loom.Protocol.V1;

/// <summary>
/// An envelope published to several subscribers is serialized once for all of them: the bus
/// records, before queuing it, how many subscriptions it goes to (<see cref="PrepareDeliveries"/>),
/// and when that is more than one the first delivery's encoder keeps the bytes for the others
/// (<see cref="TryGetSharedEncoding"/>). The bytes are those of the envelope as published;
/// publishing the same object again forgets them. A clone never has them.
/// </summary>
public sealed partial class Envelope
{
    private byte[]? _sharedEncoding;
    private int _expectedDeliveries;

    /// <summary>
    /// Called by the bus once the envelope is final for this publication and before it is queued on
    /// <paramref name="subscriptions"/> subscriptions: forgets bytes kept for an earlier publication.
    /// </summary>
    public void PrepareDeliveries(int subscriptions)
    {
        Volatile.Write(ref _sharedEncoding, null);
        Volatile.Write(ref _expectedDeliveries, subscriptions);
    }

    /// <summary>True when the envelope's encoding is kept for its deliveries.</summary>
    public bool HasSharedEncoding => Volatile.Read(ref _sharedEncoding) is not null;

    /// <summary>
    /// The envelope's encoding shared by its deliveries: serialized by the first caller and kept, when
    /// the publication went to more than one subscription; false otherwise (serialize it yourself).
    /// </summary>
    public bool TryGetSharedEncoding(out byte[] encoding)
    {
        if (Volatile.Read(ref _expectedDeliveries) <= 1)
        {
            encoding = [];
            return false;
        }

        var kept = Volatile.Read(ref _sharedEncoding);
        if (kept is null)
        {
            // Two deliveries encoding at once may both serialize; one result is kept, both are the same bytes.
            var fresh = Google.Protobuf.MessageExtensions.ToByteArray(this);
            kept = Interlocked.CompareExchange(ref _sharedEncoding, fresh, null) ?? fresh;
        }

        encoding = kept;
        return true;
    }
}
