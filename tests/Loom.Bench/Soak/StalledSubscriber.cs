using Grpc.Core;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 1: a BLOCK subscriber (QoS BATCH, a queue of 4, the longest block timeout the bridge
/// allows) on the load topic that opens its EventStream and never reads it. It keeps writing its
/// heartbeats, as a client whose consumer is stuck but whose process is alive would, so the bridge
/// has no silence to expire it for; when its stream ends it registers again and stalls again.
/// </summary>
internal sealed class StalledSubscriber : IAsyncDisposable
{
    public const string Name = "stalled_block";

    /// <summary>The longest block timeout a subscriber may ask for (EventBusOptions.MaxBlockTimeout); refused, the soak falls back to the default.</summary>
    private const uint LongestBlockMs = 10_000;
    private readonly Tally _tally;
    private readonly RawSession _session;
    private bool _defaultTimeout;

    public StalledSubscriber(Uri url, Tally tally)
    {
        _tally = tally;
        _session = new RawSession(url, Name, Request, read: false, tally);
    }

    private RegisterAgentRequest Request()
    {
        var request = new RegisterAgentRequest { AgentId = "soak-stalled", Name = "soak-stalled", Sdk = "loom-soak" };
        request.Subscriptions.Add(new Protocol.V1.Subscription
        {
            Pattern = HealthyPublisher.Topic,
            Qos = QosClass.Batch,
            Overflow = OverflowPolicy.Block,
            QueueCapacity = 4,
            BlockTimeoutMs = _defaultTimeout ? 0 : LongestBlockMs,
        });
        return request;
    }

    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await _session.EnsureOpenAsync(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex) when (!_defaultTimeout && Outcome.Of(ex) == "INVALID_PARAMS")
            {
                _tally.Add(Name + "/register_INVALID_PARAMS");
                _defaultTimeout = true;
            }
            catch (Exception ex)
            {
                _tally.Add(Name + "/register_" + Outcome.Of(ex));
            }

            if (!await Pace.DelayAsync(TimeSpan.FromSeconds(1), stop))
            {
                return;
            }
        }
    }

    public ValueTask DisposeAsync() => _session.DisposeAsync();
}
