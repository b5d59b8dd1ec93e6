using Google.Protobuf;
using Loom.Bridge;
using Loom.Protocol.V1;
using Loom.Sdk;
using Loom.Tests;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>`loom logs --stream NAME --from SEQ|TIME` against a real bridge with a durable stream.</summary>
public sealed class LogsStreamTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-logs-stream-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public async Task Logs_replays_a_stream_from_a_sequence_or_a_time()
    {
        await using var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                DataDirectory = Path.Combine(_temp, "data"),
                Streams = [new StreamConfig { Name = "orders", Subjects = ["orders.>"] }],
            },
            _ => { });
        using var startup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await bridge.StartAsync(startup.Token);
        await using var publisher = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { AgentId = "shop" }, cancellationToken: startup.Token);
        for (var i = 1; i <= 3; i++)
        {
            await publisher.PublishDurableAsync(new Envelope { Topic = "orders.created", Payload = ByteString.CopyFromUtf8($"order-number-{i}") }, startup.Token);
        }

        // Every event stored from here on is at or after `since`.
        var since = DateTimeOffset.UtcNow.AddMilliseconds(2);
        await Poll.UntilAsync(() => DateTimeOffset.UtcNow > since.AddMilliseconds(2), TimeSpan.FromSeconds(5), "the clock passed the cut");
        for (var i = 4; i <= 5; i++)
        {
            await publisher.PublishDurableAsync(new Envelope { Topic = "orders.created", Payload = ByteString.CopyFromUtf8($"order-number-{i}") }, startup.Token);
        }

        var url = bridge.GrpcAddress.ToString();
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "logs", "--url", url, "--stream", "orders", "--from", "3", "--json");
        Assert.True(code == 0, output);
        Assert.Equal(["order-number-3", "order-number-4", "order-number-5"], Shown(output));

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "logs", "--url", url, "--stream", "orders", "--from", since.ToString("O", System.Globalization.CultureInfo.InvariantCulture), "--json");
        Assert.True(code == 0, output);
        Assert.Equal(["order-number-4", "order-number-5"], Shown(output));

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "logs", "--url", url, "--stream", "orders", "--json");
        Assert.True(code == 0, output);
        Assert.Equal(5, Shown(output).Count);

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "logs", "--url", url, "--stream", "orders", "--from", "yesterday");
        Assert.Equal(2, code);
        Assert.Contains("--from", output, StringComparison.Ordinal);

        (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "logs", "--url", url, "--stream", "nosuch");
        Assert.NotEqual(0, code);
        Assert.Contains("nosuch", output, StringComparison.Ordinal);
    }

    private static List<string> Shown(string output) =>
        [.. output.Split('\n').SelectMany(line => System.Text.RegularExpressions.Regex.Matches(line, "order-number-[0-9]").Select(m => m.Value))];
}
