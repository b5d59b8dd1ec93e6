using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 6: writes 1 MiB values under fresh keys at a steady rate until the store refuses, and
/// keeps trying at the same rate after. Paced, not as fast as it can: on a shared machine the soak
/// must not itself be what runs it out of memory.
/// </summary>
internal sealed class MemoryFiller : IAsyncDisposable
{
    public const string Name = "memory_fill";
    private const string Namespace = "soak-fill";
    private static readonly TimeSpan AnswerBound = TimeSpan.FromSeconds(10);
    private readonly RawSession _session;
    private readonly TimeSpan _period;
    private readonly Tally _tally;
    private readonly ByteString _value = ByteString.CopyFrom(new byte[1024 * 1024]);
    private long _key;
    private long _stored;

    public MemoryFiller(Uri url, int writesPerSecond, Tally tally)
    {
        _period = TimeSpan.FromSeconds(1.0 / writesPerSecond);
        _tally = tally;
        _session = new RawSession(url, Name, static () => new RegisterAgentRequest { AgentId = "soak-filler", Name = "soak-filler", Sdk = "loom-soak" }, read: true, tally);
    }

    /// <summary>Bytes the store accepted from the filler.</summary>
    public long StoredBytes => Interlocked.Read(ref _stored);

    public Task RunAsync(CancellationToken stop) => Pace.EveryAsync(_period, WriteAsync, _tally, Name, stop);

    private async Task WriteAsync(CancellationToken stop)
    {
        var request = new MemoryRequest { CorrelationId = _session.NextId(), Namespace = Namespace, Set = new MemorySet { Key = "fill-" + Interlocked.Increment(ref _key), Value = _value } };
        string outcome;
        string? detail = null;
        try
        {
            var reply = await _session.RequestAsync(request.CorrelationId, new ClientMessage { Memory = request }, AnswerBound, stop);
            var error = reply.KindCase == ServerMessage.KindOneofCase.Error ? reply.Error.Error : reply.Memory.Error;
            outcome = error is null || error.Code == ErrorCode.Unspecified ? Outcome.Ok : Loom.Core.ErrorCodes.Name(error.Code);
            detail = error?.Message;
        }
        catch (Exception ex) when (!stop.IsCancellationRequested)
        {
            outcome = Outcome.Of(ex);
        }

        if (outcome == Outcome.Ok)
        {
            Interlocked.Add(ref _stored, _value.Length);
        }

        _tally.Add(Name + "/set_" + outcome, detail);
    }

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}
