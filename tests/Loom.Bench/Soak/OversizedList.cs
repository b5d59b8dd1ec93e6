using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 5c: a memory namespace holding more than 4 MiB (five values of 1 MiB, written once),
/// listed whole, so the answer is larger than a client's (and the bridge's) message limit.
/// </summary>
internal sealed class OversizedList : IAsyncDisposable
{
    public const string Name = "oversize_list";
    private const string Namespace = "soak-list";
    private const int Values = 5;
    private static readonly TimeSpan AnswerBound = TimeSpan.FromSeconds(10);
    private readonly RawSession _session;
    private readonly TimeSpan _period;
    private readonly Tally _tally;
    private readonly ByteString _value = ByteString.CopyFrom(new byte[1024 * 1024]);
    private int _stored;

    public OversizedList(Uri url, TimeSpan period, Tally tally)
    {
        _period = period;
        _tally = tally;
        _session = new RawSession(url, Name, static () => new RegisterAgentRequest { AgentId = "soak-lister", Name = "soak-lister", Sdk = "loom-soak" }, read: true, tally);
    }

    public Task RunAsync(CancellationToken stop) => Pace.EveryAsync(_period, TickAsync, _tally, Name, stop);

    private async Task TickAsync(CancellationToken stop)
    {
        // Fill the namespace first (again after a refusal), then list it.
        while (_stored < Values)
        {
            var set = new MemoryRequest { Namespace = Namespace, Set = new MemorySet { Key = "big-" + _stored, Value = _value } };
            if (await AskAsync("prefill", set, stop) != Outcome.Ok)
            {
                return;
            }

            _stored++;
        }

        await AskAsync("list", new MemoryRequest { Namespace = Namespace, List = new MemoryList { Prefix = "" } }, stop);
    }

    private async Task<string> AskAsync(string op, MemoryRequest request, CancellationToken stop)
    {
        request.CorrelationId = _session.NextId();
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

        _tally.Add(Name + "/" + op + "_" + outcome, detail);
        return outcome;
    }

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}
