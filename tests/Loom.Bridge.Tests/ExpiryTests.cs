using Google.Protobuf;
using Grpc.Net.Client;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>Session expiry at scale: a registration flood goes away without stalling anyone else.</summary>
public sealed class ExpiryTests
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_registration_flood_expires_one_sweep_at_a_time_while_a_healthy_agent_and_healthz_keep_answering()
    {
        // A slow log sink (a console whose pipe is full blocks the writer just so): 50 ms per expiry line.
        var capture = new LogCapture(slowCategory: "SessionRegistry", slowEventId: 2, slowFor: TimeSpan.FromMilliseconds(50));
        var options = new BridgeOptions { GrpcPort = 0, HttpPort = 0, MinHeartbeatInterval = TimeSpan.FromMilliseconds(100), FirstContactGrace = TimeSpan.FromMilliseconds(200) };
        await using var bridge = new LoomBridge(options, logging => logging.AddProvider(capture));
        await bridge.StartAsync();

        // The healthy agent provides the capability every flooder also registers, and one of its own.
        var healthyRequest = new RegisterAgentRequest { AgentId = "healthy", Name = "healthy", Sdk = "test", HeartbeatIntervalMs = 10_000 };
        healthyRequest.Capabilities.Add(new CapabilityDescriptor { Name = "flood.shared" });
        healthyRequest.Capabilities.Add(new CapabilityDescriptor { Name = "echo" });
        await using var healthy = await RawAgent.RegisterAsync(bridge.GrpcAddress, healthyRequest);
        using var stop = new CancellationTokenSource();
        var answering = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                ServerMessage call;
                try
                {
                    call = await healthy.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call, TimeSpan.FromMilliseconds(200));
                }
                catch (TimeoutException)
                {
                    continue;
                }

                await healthy.SendAsync(new ClientMessage { Result = new ActionResult { CallId = call.Call.CallId, OutputJson = call.Call.InputJson } });
            }
        });

        // While the flood registers and expires: calls to the healthy agent and /healthz, each bounded.
        int callsOk = 0, callsDuringExpiry = 0, healthzOk = 0;
        using var callerChannel = GrpcChannel.ForAddress(bridge.GrpcAddress);
        var caller = new Protocol.V1.Bridge.BridgeClient(callerChannel);
        var calling = Task.Run(async () =>
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var input = ByteString.CopyFromUtf8($$"""{"n":{{n}}}""");
                var response = await caller.ForwardActionAsync(new ForwardActionRequest { Call = new ActionCall { CallId = "c" + n, Capability = "echo", InputJson = input } }, RawAgent.Options(Bound));
                Assert.Equal(input, response.OutputJson);
                callsOk++;
                if (bridge.SessionCount > 1)
                {
                    callsDuringExpiry++;
                }
            }
        });
        using var http = new HttpClient { BaseAddress = bridge.HttpAddress, Timeout = Bound };
        var checking = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var response = await http.GetAsync(new Uri("/healthz", UriKind.Relative));
                Assert.True(response.IsSuccessStatusCode, $"/healthz answered {response.StatusCode}");
                healthzOk++;
                await Task.Delay(20);
            }
        });

        // The flood: sessions that never open a stream nor send a heartbeat (they expire 300 ms after registering).
        const int Flooders = 3000;
        using var floodChannel = GrpcChannel.ForAddress(bridge.GrpcAddress);
        var flood = new Protocol.V1.Bridge.BridgeClient(floodChannel);
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            for (var i = Interlocked.Increment(ref next); i < Flooders; i = Interlocked.Increment(ref next))
            {
                var request = new RegisterAgentRequest { AgentId = "flood-" + i, Name = "flood", Sdk = "test", HeartbeatIntervalMs = 100 };
                request.Capabilities.Add(new CapabilityDescriptor { Name = "flood.shared" });
                request.Capabilities.Add(new CapabilityDescriptor { Name = "flood.own." + i });
                await flood.RegisterAgentAsync(request, RawAgent.Options(Bound));
            }
        }))).WaitAsync(TimeSpan.FromSeconds(120));

        await Poll.UntilAsync(() => bridge.SessionCount == 1 || calling.IsFaulted || checking.IsFaulted, TimeSpan.FromSeconds(60), "every flooder expired");
        await stop.CancelAsync();
        await Task.WhenAll(answering, calling, checking).WaitAsync(TimeSpan.FromSeconds(30));

        // Every flooder is gone from the registry, the directory and the broker; the healthy agent stays whole.
        Assert.Equal(1, bridge.SessionCount);
        Assert.Equal("healthy", Assert.Single(bridge.Agents.All()).AgentId);
        Assert.Equal(["echo", "flood.shared"], bridge.Broker.Capabilities.Select(c => c.Name));
        Assert.Equal("healthy", Assert.Single(bridge.Broker.FindProviders("flood.shared")).Provider.AgentId);
        Assert.Null(healthy.StreamError);

        // Calls and health checks answered throughout, also while flooders were being expired.
        Assert.True(callsDuringExpiry > 0, $"{callsOk} calls answered, none while the flood was live");
        Assert.True(healthzOk > 0, "/healthz was checked");

        // One sweep at a time, and a bounded number of expiry lines (the rest are counted).
        Assert.Equal(1, capture.MaxConcurrentSlowWrites);
        var expiryLines = capture.Of("SessionRegistry", 2).Count;
        Assert.InRange(expiryLines, 1, 50);
    }
}
