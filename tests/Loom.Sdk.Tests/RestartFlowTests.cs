using System.Buffers.Binary;
using System.Collections.Concurrent;
using Google.Protobuf;
using Loom.Protocol.V1;
using Xunit.Abstractions;

namespace Loom.Sdk.Tests;

/// <summary>
/// The bridge killed (SIGKILL) in the middle of a flow and started again on the same port: what the
/// publisher queued during the outage reaches the subscriber, because the publisher holds it until
/// the subscriber has had time to register again; what is lost is only what was in flight at the kill.
/// </summary>
public sealed class RestartFlowTests(ITestOutputHelper output)
{
    private const int Flow = 15_000;

    [Fact]
    public async Task A_bridge_killed_mid_flow_loses_only_what_was_in_flight()
    {
        // The subscriber retries every 5 s, the publisher every 100 ms: after the restart the publisher
        // is back first, the case where what it queued during the outage reached nobody (a bridge's
        // first answers after a cold start can take a second or two, and retries that land in that
        // window all come back together, so the subscriber's delay is longer than that). The publisher
        // holds its queue for 8 s after a restart, so the subscriber is back before it is sent.
        var settle = Environment.GetEnvironmentVariable("LOOM_TEST_RESTART_SETTLE_MS") is { Length: > 0 } ms ? TimeSpan.FromMilliseconds(int.Parse(ms, System.Globalization.CultureInfo.InvariantCulture)) : TimeSpan.FromSeconds(8);
        var counts = await RestartMidFlowAsync(
            new LoomConnectionOptions { Name = "flow-pub", ReconnectInitialDelay = TimeSpan.FromMilliseconds(100), ReconnectMaxDelay = TimeSpan.FromMilliseconds(100), ReconnectJitter = 0, RestartSettle = settle },
            new LoomConnectionOptions { Name = "flow-sub", ReconnectInitialDelay = TimeSpan.FromSeconds(5), ReconnectMaxDelay = TimeSpan.FromSeconds(5), ReconnectJitter = 0 });
        output.WriteLine($"restart mid-flow, slow subscriber: {counts}");
        Assert.Equal(2, counts.Reconnects);
        Assert.True(counts.LostAfterBound == 0, $"events queued after the kill were lost: {counts}");
        Assert.True(counts.Lost <= counts.Bound, counts.ToString());
    }

    [Fact]
    public async Task A_bridge_killed_mid_flow_with_default_reconnect_settings_loses_only_what_was_in_flight()
    {
        var counts = await RestartMidFlowAsync(new LoomConnectionOptions { Name = "flow-pub" }, new LoomConnectionOptions { Name = "flow-sub" });
        output.WriteLine($"restart mid-flow, default settings: {counts}");
        Assert.True(counts.LostAfterBound == 0, $"events queued after the kill were lost: {counts}");
        Assert.True(counts.Lost <= counts.Bound, counts.ToString());
    }

    [Fact]
    public async Task Events_still_queued_when_a_connection_closes_are_counted()
    {
        var bridge = await TestBridge.StartAsync();
        var connection = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = "unsent", ReconnectInitialDelay = TimeSpan.FromMilliseconds(200), ReconnectMaxDelay = TimeSpan.FromMilliseconds(200) });
        await bridge.DisposeAsync();
        await Poll.UntilAsync(() => connection.Status == ConnectionStatus.Reconnecting, TimeSpan.FromSeconds(20), "the connection to notice the bridge is gone");
        for (var i = 0; i < 7; i++)
        {
            await connection.PublishAsync(new Envelope { Topic = "unsent.n", Payload = ByteString.CopyFrom([(byte)i]) });
        }

        await connection.DisposeAsync();
        Assert.Equal(7, connection.Statistics.UnsentOnClose);
    }

    private sealed record FlowCounts(int Published, int Received, int Lost, int LostAfterBound, long Bound, long LostOnBreak, long Reconnects, long PubBackMs, long SubBackMs);

    /// <summary>
    /// A publisher and a subscriber (two connections, each with its own channel and reconnect loop)
    /// flow <see cref="Flow"/> numbered events; the bridge is killed in the middle and started again
    /// on the same port while the publisher goes on publishing (it queues). The bound: events
    /// numbered from it on were never written to the killed bridge, so every one must be delivered.
    /// </summary>
    private static async Task<FlowCounts> RestartMidFlowAsync(LoomConnectionOptions pubOptions, LoomConnectionOptions subOptions)
    {
        var port = BridgeProcess.FreePort();
        var first = await BridgeProcess.StartAsync(port);
        BridgeProcess? second = null;
        var topic = "flow." + Guid.NewGuid().ToString("N")[..8];
        var got = new ConcurrentDictionary<int, bool>();
        try
        {
            await using var sub = await LoomConnection.ConnectAsync(first.GrpcUrl, subOptions);
            await using var pub = await LoomConnection.ConnectAsync(first.GrpcUrl, pubOptions);
            // Batch: a large queue on the bridge that makes the publisher wait rather than drop.
            await using var subscription = await sub.SubscribeAsync(topic + ".>", (e, _) =>
            {
                got[BinaryPrimitives.ReadInt32BigEndian(e.Payload.Span)] = true;
                return Task.CompletedTask;
            }, new SubscribeOptions { Qos = QosClass.Batch });

            var published = 0;
            var flow = Task.Run(async () =>
            {
                var payload = new byte[4];
                for (var seq = 0; seq < Flow; seq++)
                {
                    BinaryPrimitives.WriteInt32BigEndian(payload, seq);
                    await pub.PublishAsync(new Envelope { Topic = topic + ".n", Payload = ByteString.CopyFrom(payload) });
                    Volatile.Write(ref published, seq + 1);
                    if (seq % 100 == 99)
                    {
                        await Task.Delay(10); // about 10,000 events/s at most
                    }
                }
            });

            await Poll.UntilAsync(() => Volatile.Read(ref published) >= Flow / 3, TimeSpan.FromSeconds(60), "a third of the flow to be published");
            var killed = System.Diagnostics.Stopwatch.StartNew();
            long pubBack = -1, subBack = -1;
            pub.StatusChanged += (_, change) => Interlocked.CompareExchange(ref pubBack, change.Status == ConnectionStatus.Connected ? killed.ElapsedMilliseconds : -1, -1);
            sub.StatusChanged += (_, change) => Interlocked.CompareExchange(ref subBack, change.Status == ConnectionStatus.Connected ? killed.ElapsedMilliseconds : -1, -1);
            await first.KillAsync();
            await Poll.UntilAsync(() => pub.Status == ConnectionStatus.Reconnecting, TimeSpan.FromSeconds(20), "the publisher to notice the kill");
            // Publishes are written in the order they were numbered: all from `bound` on never reached the killed bridge.
            var stats = pub.Statistics;
            var bound = stats.MessagesSent + stats.LostOnBreak;
            second = await BridgeProcess.StartAsync(port);
            await flow.WaitAsync(TimeSpan.FromSeconds(120));
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (DateTime.UtcNow < deadline && !Enumerable.Range((int)Math.Min(bound, Flow), Flow - (int)Math.Min(bound, Flow)).All(got.ContainsKey))
            {
                await Task.Delay(50);
            }

            await Task.Delay(200); // stragglers of the first part, if any, are counted too
            var missing = Enumerable.Range(0, Flow).Where(seq => !got.ContainsKey(seq)).ToList();
            return new FlowCounts(Flow, got.Count, missing.Count, missing.Count(seq => seq >= bound), bound, pub.Statistics.LostOnBreak, pub.Statistics.Reconnects + sub.Statistics.Reconnects, Interlocked.Read(ref pubBack), Interlocked.Read(ref subBack));
        }
        finally
        {
            await first.DisposeAsync();
            if (second is not null)
            {
                await second.DisposeAsync();
            }
        }
    }
}
