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

    private Task MetricsShowAsync(string sample) => Poll.UntilAsync(
        async ct => (await _http.GetStringAsync(new Uri(_bridge.HttpAddress, "/metrics"), ct)).Contains(sample + "\n", StringComparison.Ordinal),
        Short,
        sample + " in /metrics");

    [Fact]
    public async Task An_input_too_large_for_the_providers_is_refused_to_the_caller_and_every_provider_stays_up()
    {
        var capability = new CapabilityDescriptor
        {
            Name = "big.echo",
            Version = "1.0.0",
            InputSchemaJson = """{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}""",
            OutputSchemaJson = "{}",
        };
        var providers = new List<RawAgent>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var request = Agent("provider" + i);
                request.Capabilities.Add(capability);
                providers.Add(await RawAgent.RegisterAsync(_bridge.GrpcAddress, request));
            }

            await using var caller = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("caller"));
            using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
            var client = new Protocol.V1.Bridge.BridgeClient(channel);

            // ForwardAction: a request the bridge accepts (just under its limit) whose pushed call, with the
            // deadline, caller and version the bridge adds and the frame around it, would not fit.
            ForwardActionRequest Forward(ByteString input) => new() { Call = new ActionCall { CallId = "f1", Capability = "big.echo", InputJson = input } };
            var forward = Forward(InputSized(input => Forward(input).CalculateSize(), Limit - 16));
            var refused = await Assert.ThrowsAsync<RpcException>(() => client.ForwardActionAsync(forward, RawAgent.Options(Short)).ResponseAsync);
            Assert.Equal(StatusCode.ResourceExhausted, refused.StatusCode);
            Assert.Equal("RESOURCE_EXHAUSTED", refused.Trailers.GetValue("loom-error-code"));
            Assert.Contains(Limit.ToString(System.Globalization.CultureInfo.InvariantCulture), refused.Status.Detail, StringComparison.Ordinal);

            // The same over the caller's stream: its frame fits the bridge's limit, the pushed call would not.
            ClientFrame CallFrame(ByteString input) => new() { Messages = { new ClientMessage { Call = new ActionCall { CallId = "s1", Capability = "big.echo", InputJson = input } } } };
            var streamed = CallFrame(InputSized(input => CallFrame(input).CalculateSize(), Limit - 16));
            await caller.SendAsync(streamed.Messages[0]);
            var result = await caller.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Result, Short);
            Assert.Equal("s1", result.Result.CallId);
            Assert.Equal(ErrorCode.ResourceExhausted, result.Result.Error.Code);
            Assert.Contains("input", result.Result.Error.Message, StringComparison.Ordinal);
            Assert.Null(caller.StreamError);

            // Every provider is still connected, saw neither call, and answers a normal one.
            foreach (var provider in providers)
            {
                var answering = Task.Run(async () =>
                {
                    var call = await provider.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call, Short);
                    await provider.SendAsync(new ClientMessage { Result = new ActionResult { CallId = call.Call.CallId, OutputJson = call.Call.InputJson } });
                    return call.Call.InputJson.Length;
                });
                var normal = new ForwardActionRequest { Call = new ActionCall { CallId = "n", Capability = "big.echo", TargetAgent = provider.AgentId, InputJson = ByteString.CopyFromUtf8("""{"text":"small"}""") } };
                var answer = await client.ForwardActionAsync(normal, RawAgent.Options(Short)).ResponseAsync.WaitAsync(Short);
                Assert.Equal(provider.AgentId, answer.Provider);
                Assert.Equal("""{"text":"small"}""", answer.OutputJson.ToStringUtf8());
                Assert.True(await answering.WaitAsync(Short) < 100, $"{provider.AgentId}'s first pushed call was the normal one");
                Assert.Null(provider.StreamError);
            }

            await MetricsShowAsync("loom_control_messages_dropped_total{kind=\"call\",reason=\"too_large\"} 2");
        }
        finally
        {
            foreach (var provider in providers)
            {
                await provider.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task An_envelope_with_oversized_headers_is_refused_and_counted_and_every_subscriber_stays_up()
    {
        var subscribers = new List<RawAgent>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                subscribers.Add(await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("reader" + i, "news.>")));
            }

            await using var publisher = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("publisher"));

            // A 1 KB payload and headers that fill the publisher's frame to just under the limit: the
            // bridge accepts the frame, but the envelope with its sender, timestamps and delivery wrapping would not fit.
            Envelope Big(ByteString filler)
            {
                var envelope = new Envelope { Topic = "news.big", Id = "big-1", Payload = ByteString.CopyFrom(new byte[1024]) };
                for (var h = 0; h < 3; h++)
                {
                    envelope.Headers["h" + h] = new string('v', 60 * 1024);
                }

                envelope.Headers["last"] = filler.ToStringUtf8();
                return envelope;
            }

            ClientFrame PublishFrame(ByteString filler) => new() { Messages = { new ClientMessage { Publish = Big(filler) } } };
            var frame = PublishFrame(InputSized(filler => PublishFrame(filler).CalculateSize(), Limit - 16));
            await publisher.SendAsync(frame.Messages[0]);
            var error = await publisher.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error, Short);
            Assert.Equal("big-1", error.Error.CorrelationId);
            Assert.Equal(ErrorCode.ResourceExhausted, error.Error.Error.Code);
            Assert.Contains("headers", error.Error.Error.Message, StringComparison.Ordinal);

            // Every subscriber is still connected, and the next normal event is the first thing each gets.
            await publisher.PublishAsync("news.small", "hello", e => e.Id = "small-1");
            foreach (var subscriber in subscribers)
            {
                var delivery = await subscriber.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
                Assert.Equal("small-1", delivery.Deliver.Envelope.Id);
                Assert.Null(subscriber.StreamError);
            }

            await MetricsShowAsync("loom_events_refused_total{reason=\"too_large\",topic_group=\"news.>\"} 1");
        }
        finally
        {
            foreach (var subscriber in subscribers)
            {
                await subscriber.DisposeAsync();
            }
        }
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

    [Fact]
    public async Task An_error_reply_too_large_for_the_agent_is_cut_short_and_the_stream_stays_up()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("echoed"));

        // The error echoes the correlation id and names the unknown subscription id: with its own words,
        // more than the frame that asked, which was just under the limit.
        var correlation = new string('c', 100 * 1024);
        ClientFrame Unsubscribe(ByteString id) => new() { Messages = { new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = correlation, SubscriptionId = id.ToStringUtf8() } } } };
        var frame = Unsubscribe(InputSized(id => Unsubscribe(id).CalculateSize(), Limit - 16));
        await agent.SendAsync(frame.Messages[0]);
        var error = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Error, Short);
        Assert.Equal(correlation, error.Error.CorrelationId);
        Assert.Equal(ErrorCode.InvalidParams, error.Error.Error.Code);
        Assert.Contains("cut short", error.Error.Error.Message, StringComparison.Ordinal);

        await agent.SendAsync(new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = "after", Subscription = new Protocol.V1.Subscription { Pattern = "after.>" } } });
        var ack = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Ack, Short);
        Assert.Equal("after", ack.Ack.CorrelationId);
        Assert.Null(agent.StreamError);
    }

    [Fact]
    public async Task A_memory_list_too_large_for_one_message_is_refused_and_the_requester_stays_up()
    {
        await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, Agent("lister"));
        var value = ByteString.CopyFrom(new byte[60 * 1024]);
        for (var i = 0; i < 6; i++)
        {
            await agent.SendAsync(new ClientMessage { Memory = new MemoryRequest { CorrelationId = "set" + i, Set = new MemorySet { Key = "k" + i, Value = value } } });
            var stored = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory, Short);
            Assert.Null(stored.Memory.Error);
        }

        // Six values of 60 KiB: 360 KiB, over the 256 KiB limit.
        await agent.SendAsync(new ClientMessage { Memory = new MemoryRequest { CorrelationId = "all", List = new MemoryList { Prefix = "k" } } });
        var refused = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory, Short);
        Assert.Equal("all", refused.Memory.CorrelationId);
        Assert.Equal(ErrorCode.ResourceExhausted, refused.Memory.Error.Code);
        Assert.Empty(refused.Memory.Entries);
        Assert.Contains("limit 4", refused.Memory.Error.Message, StringComparison.Ordinal);

        // The stream is up, and the limit the refusal suggested is answered.
        await agent.SendAsync(new ClientMessage { Memory = new MemoryRequest { CorrelationId = "some", List = new MemoryList { Prefix = "k", Limit = 4 } } });
        var some = await agent.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Memory, Short);
        Assert.Equal("some", some.Memory.CorrelationId);
        Assert.Null(some.Memory.Error);
        Assert.Equal(["k0", "k1", "k2", "k3"], some.Memory.Entries.Select(e => e.Key));
        Assert.Null(agent.StreamError);
        await MetricsShowAsync("loom_control_messages_dropped_total{kind=\"memory\",reason=\"too_large\"} 1");
    }
}
