using System.Net;
using System.Net.Sockets;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>Connections that send nothing, and more connections than the bridge allows, with the limits lowered for the test.</summary>
public sealed class ConnectionLimitTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(15);

    private static async Task<LoomBridge> StartAsync(BridgeOptions options)
    {
        var bridge = new LoomBridge(options, _ => { });
        await bridge.StartAsync();
        return bridge;
    }

    /// <summary>A TCP connection to the gRPC port that sends nothing, from the given loopback address.</summary>
    private static async Task<Socket> SilentAsync(LoomBridge bridge, string from = "127.0.0.1")
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Parse(from), 0));
        await socket.ConnectAsync(new IPEndPoint(IPAddress.Loopback, bridge.GrpcAddress.Port)).WaitAsync(Short);
        return socket;
    }

    /// <summary>True when the bridge closed the connection (a read returns end of stream or a reset) within the deadline.</summary>
    private static async Task<bool> ClosedByServerAsync(Socket socket, TimeSpan within)
    {
        using var deadline = new CancellationTokenSource(within);
        var buffer = new byte[256];
        try
        {
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, SocketFlags.None, deadline.Token);
                if (n == 0)
                {
                    return true;
                }
            }
        }
        catch (SocketException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private static async Task AssertAgentWorksAsync(LoomBridge bridge, string id)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "ping.>" });
        await using var agent = await RawAgent.RegisterAsync(bridge.GrpcAddress, request);
        await agent.PublishAsync("ping." + id, "hello");
        var delivery = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
        Assert.Equal("hello", delivery.Deliver.Envelope.Payload.ToStringUtf8());
    }

    private static double OpenConnections(string metrics) =>
        double.Parse(metrics.Split('\n').Single(l => l.StartsWith("loom_connections_open ", StringComparison.Ordinal))["loom_connections_open ".Length..], System.Globalization.CultureInfo.InvariantCulture);

    private static async Task<string> MetricsAsync(LoomBridge bridge)
    {
        using var http = new HttpClient { Timeout = Short };
        return await http.GetStringAsync(new Uri(bridge.HttpAddress, "/metrics"));
    }

    [Fact]
    public async Task Connections_over_the_per_address_limit_are_closed_and_other_addresses_are_served()
    {
        await using var bridge = await StartAsync(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MaxConnectionsPerAddress = 5, HandshakeTimeout = TimeSpan.FromSeconds(60) });
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 5; i++)
            {
                held.Add(await SilentAsync(bridge, "127.0.0.2"));
            }

            // Five silent ones and the scrape's own connection.
            await Poll.UntilAsync(async () => OpenConnections(await MetricsAsync(bridge)) >= 6, Short, "five silent connections held open");
            using var sixth = await SilentAsync(bridge, "127.0.0.2");
            Assert.True(await ClosedByServerAsync(sixth, Short), "the sixth connection from 127.0.0.2 was closed");
            Assert.All(held, s => Assert.True(s.Connected));

            // Another address is not affected.
            await AssertAgentWorksAsync(bridge, "neighbour");
            Assert.Contains("loom_connections_refused_total{reason=\"per_address_limit\"} 1", await MetricsAsync(bridge), StringComparison.Ordinal);
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }
    }

    [Fact]
    public async Task Connections_over_the_total_limit_are_closed_until_some_go_away()
    {
        await using var bridge = await StartAsync(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MaxConnections = 8, HandshakeTimeout = TimeSpan.FromSeconds(60) });
        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 8; i++)
            {
                held.Add(await SilentAsync(bridge));
            }

            // Kestrel accepts connections before it hands them to the gate, not always in connect order.
            await Poll.UntilAsync(() => bridge.OpenConnections == 8, Short, "the eight held connections counted");
            var extra = new List<Socket>();
            for (var i = 0; i < 4; i++)
            {
                extra.Add(await SilentAsync(bridge));
            }

            foreach (var socket in extra)
            {
                Assert.True(await ClosedByServerAsync(socket, Short), "a connection over the limit was closed");
                socket.Dispose();
            }
        }
        finally
        {
            held.ForEach(s => s.Dispose());
        }

        // Room again: agents connect (the closes reach the server asynchronously, so retry until they have).
        await Poll.UntilSucceedsAsync(async () => { await AssertAgentWorksAsync(bridge, "after-flood"); return true; }, Short, "an agent connects once the silent connections are gone");
        Assert.Contains("loom_connections_refused_total{reason=\"limit\"}", await MetricsAsync(bridge), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_connection_that_sends_nothing_is_closed_after_the_handshake_timeout()
    {
        await using var bridge = await StartAsync(new BridgeOptions { GrpcPort = 0, HttpPort = 0, HandshakeTimeout = TimeSpan.FromMilliseconds(300) });
        using var silent = await SilentAsync(bridge);
        Assert.True(await ClosedByServerAsync(silent, Short), "the silent connection was closed");
        await AssertAgentWorksAsync(bridge, "prompt");
        Assert.Contains("loom_connections_refused_total{reason=\"handshake_timeout\"} 1", await MetricsAsync(bridge), StringComparison.Ordinal);
    }
}
