using System.Net;
using Grpc.Core;
using Loom.Bridge.Internal;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>What clients can make the bridge write to its log: bounded in rate and length, never raw control bytes.</summary>
public sealed class LogHygieneTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(20);

    private static async Task<(LoomBridge Bridge, LogCapture Log)> StartAsync(string host = "127.0.0.1")
    {
        var capture = new LogCapture();
        var bridge = new LoomBridge(new BridgeOptions { Host = host, GrpcPort = 0, HttpPort = 0, Insecure = host != "127.0.0.1" }, logging => logging.AddProvider(capture));
        await bridge.StartAsync();
        return (bridge, capture);
    }

    private static void AssertClean(IEnumerable<LogCapture.Entry> lines, int maxLength)
    {
        foreach (var line in lines)
        {
            Assert.DoesNotContain(line.Message, c => char.IsControl(c) || c == '\u202E');
            Assert.True(line.Message.Length <= maxLength, $"a line of {line.Message.Length} characters: {line.Message[..Math.Min(200, line.Message.Length)]}");
        }
    }

    [Fact]
    public async Task Rejected_registrations_are_logged_at_a_bounded_rate_escaped_and_cut()
    {
        var (bridge, log) = await StartAsync();
        await using var _ = bridge;
        using var channel = Grpc.Net.Client.GrpcChannel.ForAddress(bridge.GrpcAddress);
        var client = new Protocol.V1.Bridge.BridgeClient(channel);
        var hostile = "\u001b[31mred\r\n12:00:00.000 info: forged line\u202E" + new string('x', 200_000);
        for (var i = 0; i < 30; i++)
        {
            var request = new RegisterAgentRequest { AgentId = i % 2 == 0 ? hostile : "ok-" + i, Name = "n", Sdk = "test" };
            request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = i % 2 == 0 ? "fine" : "bad pattern " + hostile });
            var ex = await Assert.ThrowsAsync<RpcException>(() => client.RegisterAgentAsync(request, RawAgent.Options()).ResponseAsync);
            Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        }

        var rejected = log.Of("SessionRegistry", 8);
        Assert.Equal(LogLimiter.DefaultBurst, rejected.Count);
        Assert.Contains(@"\x1B[31mred\r\n12:00:00.000 info: forged line\u202E", rejected[0].Message, StringComparison.Ordinal);
        Assert.Contains("more characters)", rejected[0].Message, StringComparison.Ordinal);
        AssertClean(log.Entries.Where(e => e.Category.StartsWith("Loom.", StringComparison.Ordinal)), 2_000);

        // A registration that succeeds is logged with its client-chosen name and sdk escaped too.
        var named = new RegisterAgentRequest { AgentId = "named", Name = "two\nlines", Sdk = "sdk\u001b]0;title\u0007" + new string('s', 10_000) };
        await using var agent = await RawAgent.RegisterAsync(bridge.GrpcAddress, named, openStream: false);
        var registered = Assert.Single(log.Of("SessionRegistry", 1), e => e.Message.Contains("named", StringComparison.Ordinal));
        Assert.Contains(@"two\nlines", registered.Message, StringComparison.Ordinal);
        Assert.Contains(@"sdk\x1B]0;title\x07", registered.Message, StringComparison.Ordinal);
        AssertClean([registered], 1_000);
    }

    [Fact]
    public async Task A_queue_of_one_does_not_log_a_slow_consumer_warning_for_every_event()
    {
        var (bridge, log) = await StartAsync();
        await using var _ = bridge;
        var subscriberRequest = new RegisterAgentRequest { AgentId = "tiny", Name = "tiny", Sdk = "test" };
        subscriberRequest.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = "tiny.>", QueueCapacity = 1 });
        await using var subscriber = await RawAgent.RegisterAsync(bridge.GrpcAddress, subscriberRequest);
        await using var publisher = await RawAgent.RegisterAsync(bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "pub", Name = "pub", Sdk = "test" });

        // One at a time: each event fills the queue of one (a slow consumer episode) and is read before the next.
        const int Events = 30;
        for (var i = 0; i < Events; i++)
        {
            await publisher.PublishAsync("tiny.event", "e" + i);
            var delivery = await subscriber.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver, Short);
            Assert.Equal("e" + i, delivery.Deliver.Envelope.Payload.ToStringUtf8());
        }

        var episodes = bridge.Bus.Subscriptions.Single(s => s.Owner == "tiny").Stats.SlowEpisodes;
        Assert.True(episodes > LogLimiter.DefaultBurst, $"{episodes} slow consumer episodes");
        Assert.Equal(LogLimiter.DefaultBurst, log.Of("SessionRegistry", 7).Count);
    }

    [Fact]
    public void A_log_limiter_writes_a_burst_per_interval_then_says_how_many_it_left_out()
    {
        var time = new ManualClock();
        var capture = new LogCapture();
        var limiter = new LogLimiter(capture.CreateLogger("test"), "thing", time, burst: 2, interval: TimeSpan.FromSeconds(10));

        Assert.Equal([true, true, false, false, false], Enumerable.Range(0, 5).Select(_ => limiter.TryEnter()).ToArray());
        limiter.Flush();
        Assert.Empty(capture.Entries); // the interval is not over yet

        time.Advance(TimeSpan.FromSeconds(10));
        Assert.True(limiter.TryEnter());
        var leftOut = Assert.Single(capture.Entries);
        Assert.Equal((LogLevel.Warning, 11), (leftOut.Level, leftOut.EventId));
        Assert.StartsWith("3 more 'thing' warnings were left out of the log", leftOut.Message, StringComparison.Ordinal);

        // A flood that stops is reported by the flush after its interval.
        Assert.True(limiter.TryEnter());
        Assert.False(limiter.TryEnter());
        time.Advance(TimeSpan.FromSeconds(5));
        limiter.Flush();
        Assert.Single(capture.Entries);
        time.Advance(TimeSpan.FromSeconds(5));
        limiter.Flush();
        limiter.Flush();
        Assert.Equal(2, capture.Entries.Count);
        Assert.StartsWith("1 more 'thing' warnings", capture.Entries[1].Message, StringComparison.Ordinal);
        Assert.True(limiter.TryEnter(out var none));
        Assert.Equal(0, none);
    }

    /// <summary>A clock that moves only when told (all a <see cref="LogLimiter"/> reads is the timestamp).</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = TimeSpan.TicksPerDay;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Interlocked.Read(ref _ticks);

        public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
    }

    [Theory]
    [InlineData("plain-agent_1", 160, "plain-agent_1")]
    [InlineData("a\r\nb\tc\u001b[0m\u0000\u007f\u0085", 160, @"a\r\nb\tc\x1B[0m\x00\x7F\x85")]
    [InlineData("left\u202Eright\u2028", 160, @"left\u202Eright\u2028")]
    [InlineData("abcdefghij", 4, "abcd…(6 more characters)")]
    [InlineData("ab\U0001F600cd", 3, "ab…(4 more characters)")]
    [InlineData("", 4, "")]
    public void Client_text_is_escaped_and_cut_for_the_log(string text, int max, string expected) =>
        Assert.Equal(expected, LogText.Clean(text, max));

    [Fact]
    public void A_bridge_on_every_interface_without_auth_and_tls_refuses_to_start_unless_told_it_is_on_purpose()
    {
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new LoomBridge(new BridgeOptions { Host = "0.0.0.0", GrpcPort = 0, HttpPort = 0 }, _ => { }));
        Assert.Equal(nameof(BridgeOptions.Insecure), ex.ParamName);
        Assert.Contains("pass --insecure (insecure: true) to accept that on purpose", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bridge_on_every_interface_warns_with_its_real_address_and_prints_one_a_local_client_reaches()
    {
        var (bridge, log) = await StartAsync("0.0.0.0");
        await using (bridge)
        {
            Assert.Equal(IPAddress.Any, bridge.GrpcEndPoint.Address);
            Assert.Equal(IPAddress.Any, bridge.HttpEndPoint.Address);
            Assert.Equal(new Uri($"http://127.0.0.1:{bridge.GrpcEndPoint.Port}"), bridge.GrpcAddress);
            var warning = Assert.Single(log.Of("LoomBridge", 13));
            Assert.Equal(LogLevel.Warning, warning.Level);
            Assert.Contains($"0.0.0.0:{bridge.GrpcEndPoint.Port} (gRPC) and 0.0.0.0:{bridge.HttpEndPoint.Port} (HTTP), every IPv4 interface", warning.Message, StringComparison.Ordinal);
            Assert.Contains("does not require authentication and TLS (--auth required, --tls-cert)", warning.Message, StringComparison.Ordinal);

            using var http = new HttpClient { Timeout = Short };
            Assert.Contains("\"ok\"", await http.GetStringAsync(new Uri(bridge.HttpAddress, "/healthz")), StringComparison.Ordinal);
        }

        var (local, quiet) = await StartAsync();
        await using (local)
        {
            Assert.Equal(IPAddress.Loopback, local.GrpcEndPoint.Address);
            Assert.Empty(quiet.Of("LoomBridge", 13));
        }
    }
}
