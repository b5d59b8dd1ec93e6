using Google.Protobuf;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Tests;

/// <summary>CreateStreamAsync / StreamInfoAsync / ListStreamsAsync / DeleteStreamAsync against a real bridge with a data directory.</summary>
public sealed class StreamAdminSdkTests : IDisposable
{
    private readonly string _data = Path.Combine(Path.GetTempPath(), "loom-admin-sdk-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_data))
        {
            Directory.Delete(_data, recursive: true);
        }
    }

    [Fact]
    public async Task A_connection_creates_describes_lists_and_deletes_a_stream()
    {
        await using var bridge = new LoomBridge(
            new BridgeOptions { GrpcPort = 0, HttpPort = 0, ShutdownTimeout = TimeSpan.FromSeconds(1), DataDirectory = _data },
            TestBridge.Logging);
        await bridge.StartAsync();
        await using var connection = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = "admin" });

        var spec = new StreamSpec { Name = "orders", Subjects = { "orders.>" } };
        var created = await connection.CreateStreamAsync(spec);
        Assert.Equal("orders", created.Spec.Name);
        Assert.Equal(120_000ul, created.Spec.DuplicateWindowMs);

        var ack = await connection.PublishDurableAsync(new Envelope { Topic = "orders.new", Payload = ByteString.CopyFromUtf8("a") });
        Assert.Equal(("orders", 1ul), (ack.Stream, ack.Sequence));

        var again = await connection.CreateStreamAsync(spec); // idempotent
        Assert.Equal(1ul, again.Events);
        var clash = await Assert.ThrowsAsync<InvalidParamsException>(() => connection.CreateStreamAsync(new StreamSpec { Name = "orders", Subjects = { "orders.eu.>" } }));
        Assert.Contains("already exists with other settings", clash.Message, StringComparison.Ordinal);

        var info = await connection.StreamInfoAsync("orders");
        Assert.Equal((1ul, 1ul), (info.LastSequence, info.Events));
        Assert.Equal(["orders"], (await connection.ListStreamsAsync()).Select(s => s.Spec.Name));

        await connection.DeleteStreamAsync("orders");
        Assert.Empty(await connection.ListStreamsAsync());
        var missing = await Assert.ThrowsAsync<InvalidParamsException>(() => connection.StreamInfoAsync("orders"));
        Assert.Contains("There is no durable stream 'orders'", missing.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidParamsException>(() => connection.DeleteStreamAsync(""));
    }
}
