using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Loom.Tests;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// kill -9 of a real `loom up` while publishers flood a durable stream with acknowledged
/// publishes and a durable consumer acks; a restart on the same data directory and ports.
/// Every acknowledged event reaches the consumer, the stream holds each message id once, and a
/// consumer that was stopped during the flood catches up from its position.
/// </summary>
public sealed class DurableCrashTests : IDisposable
{
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(60);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loom-crash-" + Guid.NewGuid().ToString("N"));

    public DurableCrashTests()
    {
        Directory.CreateDirectory(_dir);
        File.WriteAllText(Path.Combine(_dir, "loom.yaml"), """
            name: crash
            streams:
              - name: flood
                subjects: [flood.>]
                duplicate_window: 10m
            """);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // A file still held by a process being reaped; the temp directory is cleaned later.
        }
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    private CliProcess Up(int grpc, int http) =>
        CliProcess.Start(_dir, null, "up", "--config", Path.Combine(_dir, "loom.yaml"), "--grpc-port", grpc.ToString(System.Globalization.CultureInfo.InvariantCulture), "--http-port", http.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static Task<LoomConnection> Connect(string url, string name) => LoomConnection.ConnectAsync(new Uri(url), new LoomConnectionOptions
    {
        Name = name,
        ReconnectInitialDelay = TimeSpan.FromMilliseconds(50),
        ReconnectMaxDelay = TimeSpan.FromMilliseconds(500),
        RequestTimeout = TimeSpan.FromSeconds(10),
    });

    [Fact]
    public async Task Kill_9_during_a_flood_loses_no_acknowledged_event()
    {
        const int Publishers = 4;
        const int PerPublisher = 3000;
        var grpc = FreePort();
        var http = FreePort();
        var up = Up(grpc, http);
        var url = (await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup)).Groups[1].Value;
        Assert.True(Directory.Exists(Path.Combine(_dir, ".loom", "data", "streams", "flood")), "the default data directory is .loom/data beside loom.yaml");

        var epoch = 0;
        var acked = new ConcurrentDictionary<string, ulong>();
        var deliveries = new ConcurrentQueue<(string Id, uint Count, int Epoch)>();
        var late = new ConcurrentDictionary<string, int>();
        await using var consumerConnection = await Connect(url, "consumer");
        await using var consumer = await consumerConnection.ConsumeAsync(new ConsumerConfig { Name = "all", Stream = "flood", AckWaitMs = 2000 }, (m, _) =>
        {
            deliveries.Enqueue((m.Envelope.Id, m.DeliveryCount, Volatile.Read(ref epoch)));
            return Task.CompletedTask;
        });
        await using var lateConnection = await Connect(url, "late");
        var lateConsumer = await lateConnection.ConsumeAsync(new ConsumerConfig { Name = "late", Stream = "flood" }, (m, _) =>
        {
            late.AddOrUpdate(m.Envelope.Id, 1, (_, n) => n + 1);
            return Task.CompletedTask;
        });

        await using var publisherConnection = await Connect(url, "publisher");
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var publishers = Enumerable.Range(0, Publishers).Select(p => Task.Run(async () =>
        {
            for (var i = 0; i < PerPublisher; i++)
            {
                var id = $"p{p}-{i}";
                while (true)
                {
                    stop.Token.ThrowIfCancellationRequested();
                    try
                    {
                        // The same id on every retry: the bridge stores it once.
                        var ack = await publisherConnection.PublishDurableAsync(new Envelope { Id = id, Topic = $"flood.p{p}", Payload = ByteString.CopyFromUtf8(id) }, stop.Token);
                        acked[id] = ack.Sequence;
                        break;
                    }
                    catch (LoomException)
                    {
                        await Task.Delay(20, stop.Token);
                    }
                }
            }
        })).ToArray();

        // The late consumer stops early in the flood; the bridge is killed mid-flood.
        await Poll.UntilAsync(() => acked.Count >= 1000, TimeSpan.FromSeconds(60), "1000 acknowledged publishes");
        await lateConsumer.DetachAsync();
        await Poll.UntilAsync(() => acked.Count >= 4000, TimeSpan.FromSeconds(60), "4000 acknowledged publishes");
        await up.KillHardAsync();
        Interlocked.Increment(ref epoch);
        var ackedAtKill = acked.Count;
        await using var again = Up(grpc, http);
        await again.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup);

        await Task.WhenAll(publishers).WaitAsync(TimeSpan.FromMinutes(4));
        Assert.Equal(Publishers * PerPublisher, acked.Count);
        Assert.True(ackedAtKill < acked.Count, "publishing went on after the restart");

        await Poll.UntilAsync(() => acked.Keys.All(id => deliveries.Any(d => d.Id == id)) || deliveries.Count >= acked.Count && new HashSet<string>(deliveries.Select(d => d.Id)).IsSupersetOf(acked.Keys), TimeSpan.FromSeconds(90), "every acknowledged event delivered");
        var seen = deliveries.GroupBy(d => d.Id).ToDictionary(g => g.Key, g => g.ToList());
        var lost = acked.Keys.Where(id => !seen.ContainsKey(id)).ToList();
        Assert.True(lost.Count == 0, $"{lost.Count} acknowledged events never delivered, e.g. {string.Join(", ", lost.Take(5))}");

        // A duplicate is a redelivery: a second delivery counted as such, or one made again after the crash.
        foreach (var (id, list) in seen.Where(s => s.Value.Count > 1))
        {
            Assert.All(list.Skip(1), d => Assert.True(d.Count > 1 || d.Epoch > list[0].Epoch, $"{id} was delivered twice as a first delivery in one bridge run"));
        }

        // The stream holds each message id once (retries after the crash were deduplicated), in sequences 1..N.
        var stored = new List<StoredEvent>();
        ulong from = 1;
        while (true)
        {
            var page = await publisherConnection.ReadStreamAsync(new StreamReadRequest { Stream = "flood", StartSequence = from, MaxEvents = 1000 });
            if (page.Events.Count == 0)
            {
                break;
            }

            stored.AddRange(page.Events);
            from = page.Events[^1].Sequence + 1;
        }

        Assert.Equal(Publishers * PerPublisher, stored.Count);
        Assert.Equal(stored.Count, stored.Select(e => e.Envelope.Id).Distinct().Count());
        Assert.All(acked, a => Assert.Equal(a.Key, stored[(int)a.Value - 1].Envelope.Id));

        // The consumer stopped during the flood catches up from its position after the restart.
        var before = late.Count;
        await using var resumed = await lateConnection.ConsumeAsync(new ConsumerConfig { Name = "late", Stream = "flood" }, (m, _) =>
        {
            late.AddOrUpdate(m.Envelope.Id, 1, (_, n) => n + 1);
            return Task.CompletedTask;
        });
        Assert.True(resumed.Info.NextSequence > 1, $"resumed at {resumed.Info.NextSequence} after {before} events: its position was kept");
        await Poll.UntilAsync(() => late.Count == Publishers * PerPublisher, TimeSpan.FromSeconds(90), "the late consumer caught up");
    }
}
