using System.Text;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 5a: a ForwardAction (unary, no session) whose request is one byte under the bridge's
/// message limit, to soak.sink, which several healthy agents provide. The call the bridge pushes
/// to a provider carries a little more than the request did (a deadline, framing), so it is over
/// the provider's limit unless the bridge checks what it forwards.
/// </summary>
internal sealed class OversizedForward : IDisposable
{
    public const string Name = "oversize_forward";
    private static readonly TimeSpan CallBound = TimeSpan.FromSeconds(15);
    private readonly GrpcChannel _channel;
    private readonly ForwardActionRequest _request;
    private readonly TimeSpan _period;
    private readonly Tally _tally;
    private int _calls;

    public OversizedForward(Uri url, int maxMessageBytes, TimeSpan period, Tally tally)
    {
        _channel = GrpcChannel.ForAddress(url, new GrpcChannelOptions { MaxSendMessageSize = null });
        _period = period;
        _tally = tally;
        _request = new ForwardActionRequest { Call = new ActionCall { CallId = CallId(0), Capability = SinkProviders.Capability, TimeoutMs = 10_000 } };

        // Size the blob so the whole request is one byte under the limit (two passes: varint lengths settle).
        var blob = maxMessageBytes - 256;
        for (var pass = 0; pass < 2; pass++)
        {
            _request.Call.InputJson = Input(blob);
            blob += maxMessageBytes - 1 - _request.CalculateSize();
        }

        _request.Call.InputJson = Input(blob);
        RequestBytes = _request.CalculateSize();
    }

    /// <summary>The serialized size of each forward.</summary>
    public int RequestBytes { get; }

    private static string CallId(int n) => "soak-forward-" + n.ToString("D8", System.Globalization.CultureInfo.InvariantCulture);

    private static ByteString Input(int blobChars)
    {
        var json = new byte[blobChars + 12];
        var prefix = "{\"blob\":\""u8;
        prefix.CopyTo(json);
        json.AsSpan(prefix.Length, blobChars).Fill((byte)'a');
        "\"}"u8.CopyTo(json.AsSpan(prefix.Length + blobChars));
        return UnsafeByteOperations.UnsafeWrap(json.AsMemory(0, prefix.Length + blobChars + 2));
    }

    public Task RunAsync(CancellationToken stop) => Pace.EveryAsync(_period, ForwardAsync, _tally, Name, stop);

    private async Task ForwardAsync(CancellationToken stop)
    {
        var client = new Protocol.V1.Bridge.BridgeClient(_channel);
        _request.Call.CallId = CallId(Interlocked.Increment(ref _calls));
        try
        {
            await client.ForwardActionAsync(_request, new CallOptions(deadline: DateTime.UtcNow + CallBound, cancellationToken: stop));
            _tally.Add(Name + "/" + Outcome.Ok);
        }
        catch (RpcException ex) when (!stop.IsCancellationRequested)
        {
            _tally.Add(Name + "/" + Outcome.Of(ex), ex.Status.Detail);
        }
    }

    public void Dispose() => _channel.Dispose();
}
