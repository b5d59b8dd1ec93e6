using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 5b: an envelope with a 1 KB payload and three headers that make it 512 bytes under the
/// bridge's message limit (so the frame that carries it is received), published on the load topic,
/// so it would go to the healthy subscribers (and the other offenders) too: delivered, with the
/// fields the bridge adds, it would be over their limit unless the bridge checks what it forwards.
/// A refusal comes back as an error with the envelope's id; none within 2 s counts as accepted.
/// </summary>
internal sealed class OversizedHeaders : IAsyncDisposable
{
    public const string Name = "oversize_headers";
    private static readonly TimeSpan RefusalWait = TimeSpan.FromSeconds(2);
    private readonly RawSession _session;
    private readonly TimeSpan _period;
    private readonly Tally _tally;
    private readonly ByteString _payload = ByteString.CopyFrom(new byte[1024]);
    private readonly string _header;

    public OversizedHeaders(Uri url, int maxMessageBytes, TimeSpan period, Tally tally)
    {
        _period = period;
        _tally = tally;

        // Size the headers so the whole envelope is 512 bytes under the limit (two passes: varint lengths settle).
        var each = (maxMessageBytes - 4096) / 3;
        for (var pass = 0; pass < 2; pass++)
        {
            _header = new string('h', each);
            each += (maxMessageBytes - 512 - Envelope("soak-headers-00000000").CalculateSize()) / 3;
        }

        _header = new string('h', each);
        EnvelopeBytes = Envelope("soak-headers-00000000").CalculateSize();
        _session = new RawSession(url, Name, static () => new RegisterAgentRequest { AgentId = "soak-headers", Name = "soak-headers", Sdk = "loom-soak" }, read: true, tally);
    }

    /// <summary>The serialized size of each envelope (give or take its id's digits).</summary>
    public int EnvelopeBytes { get; }

    private Envelope Envelope(string id)
    {
        var envelope = new Envelope { Id = id, Topic = HealthyPublisher.Topic, Payload = _payload };
        for (var i = 0; i < 3; i++)
        {
            envelope.Headers["x-soak-" + i] = _header;
        }

        return envelope;
    }

    public Task RunAsync(CancellationToken stop) => Pace.EveryAsync(_period, PublishAsync, _tally, Name, stop);

    private async Task PublishAsync(CancellationToken stop)
    {
        var id = _session.NextId();
        var envelope = Envelope(id);
        try
        {
            var reply = await _session.RequestAsync(id, new ClientMessage { Publish = envelope }, RefusalWait, stop);
            var error = reply.Error?.Error;
            _tally.Add(Name + "/publish_" + Loom.Core.ErrorCodes.Name(error?.Code ?? ErrorCode.Unspecified), error?.Message);
        }
        catch (TimeoutException)
        {
            _tally.Add(Name + "/publish_accepted");
        }
        catch (Exception ex) when (!stop.IsCancellationRequested)
        {
            _tally.Add(Name + "/publish_" + Outcome.Of(ex));
        }
    }

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}
