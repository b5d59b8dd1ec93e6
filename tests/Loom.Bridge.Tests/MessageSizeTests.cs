using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Protocol.V1;
using Loom.Tests;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// What the bridge writes to an agent never exceeds the agent's message limit: whatever would is
/// refused to its sender with RESOURCE_EXHAUSTED (and counted), and every receiver's stream stays up.
/// The limit is lowered to 256 KiB so the messages stay small.
/// </summary>
public sealed class MessageSizeTests : IAsyncLifetime, IDisposable
{
    private const int Limit = 256 * 1024;
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(20);
    private readonly HttpClient _http = new() { Timeout = Short };
    private LoomBridge _bridge = null!;

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, MaxMessageBytes = Limit, MaxPayloadBytes = 200 * 1024 }, _ => { });
        await _bridge.StartAsync();
    }

    public async Task DisposeAsync() => await _bridge.DisposeAsync();

    public void Dispose() => _http.Dispose();

    private static RegisterAgentRequest Agent(string id, params string[] patterns)
    {
        var request = new RegisterAgentRequest { AgentId = id, Name = id, Sdk = "test" };
        request.Subscriptions.Add(patterns.Select(p => new Protocol.V1.Subscription { Pattern = p }));
        return request;
    }

    /// <summary>JSON <c>{"text":"xxx…"}</c> sized so that <paramref name="measure"/> of it is exactly <paramref name="target"/> bytes.</summary>
    private static ByteString InputSized(Func<ByteString, int> measure, int target)
    {
        var length = target;
        for (var attempt = 0; attempt < 8; attempt++)
        {
            var input = ByteString.CopyFromUtf8("{\"text\":\"" + new string('x', length) + "\"}");
            var size = measure(input);
            if (size == target)
            {
                return input;
            }

            length += target - size;
        }

        throw new InvalidOperationException("Could not size the input.");
    }

    [Fact]
    public async Task Envelopes_that_together_exceed_the_limit_are_delivered_in_separate_frames()
    {
        // The subscriber opens its stream only once both are queued, so its write loop finds them together.
        await using var subscriber = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("late-reader", "bulk.>"), openStream: false);
        await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("bulk-publisher"));
        var payload = ByteString.CopyFrom(new byte[150 * 1024]);
        for (var i = 0; i < 2; i++)
        {
            await publisher.SendAsync(new ClientMessage { Publish = new Envelope { Topic = "bulk.data", Id = "bulk-" + i, Payload = payload } });
        }

        await Poll.UntilAsync(() => _bridge.Bus.Subscriptions.Single(s => s.Owner == "late-reader").Count == 2, Short, "both envelopes queued");
        await subscriber.OpenStreamAsync();
        for (var i = 0; i < 2; i++)
        {
            var delivery = await subscriber.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
            Assert.Equal("bulk-" + i, delivery.Deliver.Envelope.Id);
        }

        Assert.Null(subscriber.StreamError);
    }
}
