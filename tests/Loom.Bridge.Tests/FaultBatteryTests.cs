using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using Loom.Bench;
using Loom.Bench.Soak;
using Loom.Protocol.V1;
using Loom.Sdk;
using Xunit;
using Xunit.Abstractions;

namespace Loom.Bridge.Tests;

/// <summary>The fault battery runs alone: each case is a bridge process under load, and two at once would fight for the CPU.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FaultBatteryCollection
{
    public const string Name = "fault battery";
}

/// <summary>
/// The fault battery (issue 15): each case runs `loom up` in a child process (limits lowered where the
/// case needs them), attaches the soak's healthy load through the .NET SDK (a publisher at
/// <see cref="Rate"/> events/s to a NORMAL and a BATCH subscriber, two callers of an echo capability),
/// then one of the soak's offenders (tests/Loom.Bench/Soak) for <see cref="OffenderTime"/>, sampling
/// the bridge's /metrics all along. Every case asserts: the bridge process is alive and answered
/// every scrape, its RSS stayed under the case's bound (measured on a 2-core machine, with headroom;
/// docs/performance.md, "Fault battery"), the healthy subscribers received every envelope sent (no
/// gap, no reconnect), the calls all answered, and the offender got its clear error or a counted drop.
/// </summary>
[Collection(FaultBatteryCollection.Name)]
public sealed class FaultBatteryTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Rate = 500;
    private const int PayloadBytes = 256;
    private const int Callers = 2;
    private const int CallRate = 100;
    private const long MiB = 1024 * 1024;
    private static readonly TimeSpan OffenderTime = TimeSpan.FromSeconds(6);
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(15);
    private readonly List<Func<ValueTask>> _owned = [];
    private readonly Tally _healthy = new();
    private readonly Tally _offenders = new();
    private readonly LatencyRecorder _oneWay = new();
    private readonly List<HealthySubscriber> _subscribers = [];
    private LoomProcess? _bridge;
    private BridgeScraper? _scraper;
    private HealthyPublisher _publisher = null!;
    private HealthyCallers _callers = null!;
    private int _rate = Rate;
    private double _maxRssMb;
    private double _baselineRssMb;
    private int _scrapes;

    public Task InitializeAsync() => Task.CompletedTask;

    [Fact]
    public async Task A_stalled_BLOCK_subscriber_is_dropped_as_a_slow_consumer_and_holds_no_publisher()
    {
        // The stalled subscriber asks for a 10 s block timeout: refused (INVALID_PARAMS) under the lowered maximum, it takes the default.
        await StartAsync("--max-block-timeout-ms", "1000");
        var stalled = Own(new StalledSubscriber(_bridge!.GrpcUrl, _offenders), s => s.DisposeAsync());
        var result = await RunAsync(stalled.RunAsync, drops => drops.GetValueOrDefault("slow_consumer") > 0 && drops.GetValueOrDefault("block_timeout") > 0);

        Assert.True(_offenders.Get(StalledSubscriber.Name + "/register_INVALID_PARAMS") >= 1, Describe("the 10 s block timeout was refused"));
        // RSS measured at 108 MB peak (81 MB idle, 2 cores): bound 250 MB.
        AssertHealthy(result, rssBoundMb: 250);
    }

    [Fact]
    public async Task A_slow_BATCH_subscriber_loses_its_own_envelopes_and_nobody_elses()
    {
        // Its bridge-side queue may hold 1 MiB (about 2,300 of these envelopes): full within about 5 s, then it holds the publisher
        // for one block timeout (lowered to 1 s) and is dropped as a slow consumer. The healthy subscribers' queues have the same bound.
        await StartAsync("--max-block-timeout-ms", "1000", "--max-queue-bytes-per-subscription", "1MiB");
        SlowSubscriber slow;
        using (var setup = new CancellationTokenSource(Deadline))
        {
            // 20 ms per event (50/s against 500/s) behind a local queue of 256: it falls behind within a second.
            slow = Own(await SlowSubscriber.StartAsync(_bridge!.GrpcUrl, TimeSpan.FromMilliseconds(20), setup.Token, localQueueCapacity: 256), s => s.DisposeAsync());
        }

        var result = await RunAsync(_ => Task.CompletedTask, drops => drops.Where(d => d.Key is "block_timeout" or "slow_consumer").Sum(d => d.Value) + slow.DroppedLocally > 0);

        Assert.True(slow.Handled > 0, "the slow subscriber handled some");
        // RSS measured at 116 MB peak (81 MB idle, 2 cores): bound 250 MB.
        AssertHealthy(result, rssBoundMb: 250);
    }

    [Fact]
    public async Task Silent_connections_past_the_connection_limit_are_refused_and_timed_out()
    {
        // 400 silent connections (from 127.0.0.2) against a limit of 256 with a 2 s handshake timeout.
        await StartAsync("--max-connections", "256", "--handshake-timeout-ms", "2000");
        var silent = new SilentConnections(_bridge!.GrpcUrl, 400, _offenders);
        var result = await RunAsync(silent.RunAsync, _ => true, refusalsAt: metrics =>
        {
            var refused = metrics.SumBy("loom_connections_refused_total", "reason");
            return refused.GetValueOrDefault("limit") > 0 && refused.GetValueOrDefault("handshake_timeout") > 0;
        });

        Assert.True(_offenders.Get(SilentConnections.Name + "/opened") > 256, Describe("the offender opened more than the limit"));
        Assert.True(result.Last.Value("loom_connections_open") <= 256, "open connections within the limit");
        // RSS measured at 122 MB peak (81 MB idle, 2 cores): bound 250 MB.
        AssertHealthy(result, rssBoundMb: 250);
    }

    [Fact]
    public async Task A_registration_flood_past_the_session_limit_is_refused_and_expired()
    {
        // Bursts of 600 registrations (8 capabilities each, never a stream) every second against 1,000 sessions; 1 s heartbeats expire them in ~3 s.
        await StartAsync("--max-sessions", "1000", "--heartbeat-ms", "1000");
        var flood = Own(new RegistrationFlood(_bridge!.GrpcUrl, 600, TimeSpan.FromSeconds(1), _offenders), f => { f.Dispose(); return ValueTask.CompletedTask; });
        var result = await RunAsync(flood.RunAsync, _ => true, refusalsAt: metrics =>
            metrics.SumBy("loom_registrations_total", "result").GetValueOrDefault("rejected") > 0 &&
            metrics.SumBy("loom_sessions_ended_total", "reason").GetValueOrDefault("heartbeat_timeout") > 0);

        Assert.True(_offenders.Get(RegistrationFlood.Name + "/RESOURCE_EXHAUSTED") > 0, Describe("registrations past max_sessions refused"));
        // RSS measured at 139–154 MB peak (81 MB idle, 2 cores): bound 350 MB.
        AssertHealthy(result, rssBoundMb: 350);
    }

    [Fact]
    public async Task An_oversized_forward_is_refused_to_its_caller_and_every_provider_stays_up()
    {
        await StartAsync();
        SinkProviders sinks;
        using (var setup = new CancellationTokenSource(Deadline))
        {
            sinks = Own(await SinkProviders.StartAsync(_bridge!.GrpcUrl, 3, setup.Token), s => s.DisposeAsync());
        }

        var forward = Own(new OversizedForward(_bridge.GrpcUrl, (int)_publisher.Connection.Limits.MaxMessageBytes, TimeSpan.FromSeconds(1), _offenders), f => { f.Dispose(); return ValueTask.CompletedTask; });
        var result = await RunAsync(forward.RunAsync, _ => true, refusalsAt: metrics =>
            metrics.Value("loom_control_messages_dropped_total", ("kind", "call"), ("reason", "too_large")) > 0);

        Assert.True(_offenders.Get(OversizedForward.Name + "/RESOURCE_EXHAUSTED") > 0, Describe("the forward refused with RESOURCE_EXHAUSTED"));
        Assert.Equal(0, _offenders.Get(OversizedForward.Name + "/ok"));
        Assert.Equal(0, sinks.Reconnects);
        // RSS measured at 148 MB peak (81 MB idle, 2 cores): bound 300 MB.
        AssertHealthy(result, rssBoundMb: 300);
    }

    [Fact]
    public async Task An_envelope_with_oversized_headers_is_refused_to_its_publisher_and_every_subscriber_stays_up()
    {
        await StartAsync();
        var headers = Own(new OversizedHeaders(_bridge!.GrpcUrl, (int)_publisher.Connection.Limits.MaxMessageBytes, TimeSpan.FromSeconds(1), _offenders), h => h.DisposeAsync());
        var result = await RunAsync(headers.RunAsync, _ => true, refusalsAt: metrics =>
            metrics.SumBy("loom_events_refused_total", "reason").GetValueOrDefault("too_large") > 0);

        Assert.True(_offenders.Get(OversizedHeaders.Name + "/publish_RESOURCE_EXHAUSTED") > 0, Describe("the envelope refused with RESOURCE_EXHAUSTED"));
        Assert.Equal(0, _offenders.Get(OversizedHeaders.Name + "/publish_accepted"));
        Assert.Equal(0, _subscribers.Sum(s => s.Foreign));
        AssertStreamKept(OversizedHeaders.Name);
        // RSS measured at 147–173 MB peak (81 MB idle, 2 cores): bound 300 MB.
        AssertHealthy(result, rssBoundMb: 300);
    }

    [Fact]
    public async Task A_memory_list_too_large_to_send_is_refused_and_the_requester_stays_up()
    {
        await StartAsync();
        var list = Own(new OversizedList(_bridge!.GrpcUrl, TimeSpan.FromSeconds(1), _offenders), l => l.DisposeAsync());
        var result = await RunAsync(list.RunAsync, _ => true, refusalsAt: metrics =>
            metrics.Value("loom_control_messages_dropped_total", ("kind", "memory"), ("reason", "too_large")) > 0);

        Assert.True(_offenders.Get(OversizedList.Name + "/list_RESOURCE_EXHAUSTED") > 0, Describe("the list refused with RESOURCE_EXHAUSTED"));
        AssertStreamKept(OversizedList.Name);
        // RSS measured at 112 MB peak (81 MB idle, 2 cores): bound 250 MB.
        AssertHealthy(result, rssBoundMb: 250);
    }

    [Fact]
    public async Task Queues_of_1_MiB_envelopes_are_bounded_in_bytes_and_the_healthy_subscribers_get_every_one()
    {
        // The healthy publisher sends 1 MiB payloads (20/s); a NORMAL subscriber that never reads may queue 16 MiB.
        await StartAsync(["--max-queue-bytes-per-subscription", "16MiB"], rate: 20, payloadBytes: (int)MiB);
        var hoarder = Own(new RawSession(_bridge!.GrpcUrl, "hoarder", HoarderRequest, read: false, _offenders), h => h.DisposeAsync());
        using (var setup = new CancellationTokenSource(Deadline))
        {
            await hoarder.EnsureOpenAsync(setup.Token);
        }

        var result = await RunAsync(_ => Task.CompletedTask, drops => drops.GetValueOrDefault("queue_full_drop_newest") > 0, sent: 60, queuedBytesBound: 40 * MiB);

        // Its one subscription holds at most its 16 MiB (plus one envelope) however much is published.
        Assert.True(_publisher.Sent * MiB > 50 * MiB, "more was published than the hoarder may queue");
        // RSS measured at 163–172 MB peak (81 MB idle, 2 cores): bound 450 MB.
        AssertHealthy(result, rssBoundMb: 450);
    }

    [Fact]
    public async Task A_client_filling_the_memory_store_is_refused_at_the_limit()
    {
        // 1 MiB writes at 20/s into a store of 32 MiB, where a healthy agent already keeps 4 MB in its own namespace: full within two seconds, then refused.
        await StartAsync("--memory-max-total-bytes", "32MiB", "--memory-max-bytes-per-namespace", "32MiB");
        using (var setup = new CancellationTokenSource(Deadline))
        {
            for (var i = 0; i < 4; i++)
            {
                var stored = await _publisher.Connection.MemoryAsync(new MemoryRequest { Namespace = "fault-healthy", Set = new MemorySet { Key = "kept-" + i, Value = Google.Protobuf.ByteString.CopyFrom(new byte[1_000_000]) } }, setup.Token);
                Assert.Null(stored.Error);
            }
        }

        var filler = Own(new MemoryFiller(_bridge!.GrpcUrl, 20, _offenders), f => f.DisposeAsync());
        var result = await RunAsync(filler.RunAsync, _ => true, refusalsAt: metrics =>
            metrics.SumBy("loom_memory_writes_refused_total", "reason").Values.Sum() > 0);

        Assert.True(_offenders.Get(MemoryFiller.Name + "/set_RESOURCE_EXHAUSTED") > 0, Describe("writes past the limit refused with RESOURCE_EXHAUSTED"));
        AssertStreamKept(MemoryFiller.Name);
        Assert.True(result.Last.Value("loom_memory_writes_refused_total", ("reason", "total_bytes")) > 0, "refused at memory.max_total_bytes: " + Tally.Format(result.Last.SumBy("loom_memory_writes_refused_total", "reason")));
        using (var after = new CancellationTokenSource(Deadline))
        {
            var kept = await _publisher.Connection.MemoryAsync(new MemoryRequest { Namespace = "fault-healthy", Get = new MemoryGet { Key = "kept-3" } }, after.Token);
            Assert.True(kept.Found, "the healthy agent's entry is still there and readable");
        }

        Assert.True(filler.StoredBytes <= 32 * MiB, $"the filler stored {filler.StoredBytes} bytes");
        Assert.True(result.Last.Value("loom_memory_bytes") <= 32 * MiB, "the store within its limit");
        // RSS measured at 186–193 MB peak (81 MB idle, 2 cores): bound 300 MB.
        AssertHealthy(result, rssBoundMb: 300);
    }

    private static RegisterAgentRequest HoarderRequest()
    {
        var request = new RegisterAgentRequest { AgentId = "fault-hoarder", Name = "fault-hoarder", Sdk = "loom-test" };
        request.Subscriptions.Add(new Protocol.V1.Subscription { Pattern = HealthyPublisher.Topic, Qos = QosClass.Normal });
        return request;
    }

    private T Own<T>(T owned, Func<T, ValueTask> dispose)
        where T : class
    {
        _owned.Add(() => dispose(owned));
        return owned;
    }

    private Task StartAsync(params string[] flags) => StartAsync(flags, Rate, PayloadBytes);

    /// <summary>Starts the bridge process and the healthy clients (connected, not yet running).</summary>
    private async Task StartAsync(string[] flags, int rate, int payloadBytes)
    {
        _rate = rate;
        _bridge = await LoomProcess.StartAsync(flags);
        _scraper = new BridgeScraper(_bridge.HttpUrl);
        using var setup = new CancellationTokenSource(Deadline);
        foreach (var (name, qos) in new[] { ("fault-sub-normal", QosClass.Normal), ("fault-sub-batch", QosClass.Batch) })
        {
            _subscribers.Add(Own(await HealthySubscriber.StartAsync(_bridge.GrpcUrl, name, qos, _oneWay, setup.Token), s => s.DisposeAsync()));
        }

        _callers = Own(await HealthyCallers.StartAsync(_bridge.GrpcUrl, _healthy, setup.Token), c => c.DisposeAsync());
        _publisher = Own(await HealthyPublisher.StartAsync(_bridge.GrpcUrl, rate, payloadBytes, _healthy, setup.Token), p => p.DisposeAsync());
        _baselineRssMb = await RssMbAsync(setup.Token);
    }

    private sealed record CaseResult(MetricsSnapshot Last, double MaxLagMs, TimeSpan Elapsed);

    /// <summary>
    /// Runs the healthy load, then the offender for <see cref="OffenderTime"/> (and until <paramref name="dropped"/>
    /// and <paramref name="refusalsAt"/> hold, within <see cref="Deadline"/>), then lets the subscribers catch up.
    /// The bridge is scraped every 200 ms from start to end.
    /// </summary>
    private async Task<CaseResult> RunAsync(Func<CancellationToken, Task> offender, Func<SortedDictionary<string, long>, bool> dropped, Func<MetricsSnapshot, bool>? refusalsAt = null, long sent = 0, long queuedBytesBound = long.MaxValue)
    {
        var clock = Stopwatch.StartNew();
        using var stopHealthy = new CancellationTokenSource();
        using var stopOffender = new CancellationTokenSource();
        List<Task> healthy = [_publisher.RunAsync(stopHealthy.Token), _callers.RunAsync(Callers, CallRate, stopHealthy.Token)];
        Task? offending = null;
        MetricsSnapshot? last = null;
        double maxLag = 0;
        try
        {
            await Poll.UntilAsync(() => _subscribers.All(s => s.Received > 0) && _callers.Ok > 0, Deadline, "the healthy load flowing before the offender");
            _publisher.TakeMaxLagMs();
            offending = Task.Run(() => offender(stopOffender.Token), CancellationToken.None);
            var started = clock.Elapsed;
            var done = false;
            while (!done)
            {
                last = await ScrapeAsync(queuedBytesBound);
                maxLag = Math.Max(maxLag, _publisher.TakeMaxLagMs());
                var ran = clock.Elapsed - started;
                done = ran >= OffenderTime && _publisher.Sent >= sent && dropped(last.SumBy("loom_events_dropped_total", "reason")) && (refusalsAt?.Invoke(last) ?? true);
                Assert.True(ran < OffenderTime + Deadline, Describe($"the offender's counted drop or refusal within {(OffenderTime + Deadline).TotalSeconds:N0} s; drops: {Tally.Format(last.SumBy("loom_events_dropped_total", "reason"))}"));
                await Task.Delay(200);
            }
        }
        finally
        {
            await stopOffender.CancelAsync();
            if (offending is not null)
            {
                await offending.WaitAsync(Deadline);
            }

            await stopHealthy.CancelAsync();
            await Task.WhenAll(healthy).WaitAsync(Deadline);
        }

        // The subscribers catch up on what is still on its way (each scrape is also an RSS sample).
        var sentTotal = _publisher.Sent;
        var drain = Stopwatch.StartNew();
        while (_subscribers.Any(s => s.Received < sentTotal) && drain.Elapsed < Deadline)
        {
            last = await ScrapeAsync(queuedBytesBound);
        }

        last = await ScrapeAsync(queuedBytesBound);
        maxLag = Math.Max(maxLag, _publisher.TakeMaxLagMs());
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RSS: {_baselineRssMb:N0} MB before the load, max {_maxRssMb:N0} MB over {_scrapes} scrapes; sent {sentTotal:N0}, received {string.Join("/", _subscribers.Select(s => s.Received))}, calls {_callers.Ok:N0} ok {_callers.Failed} failed, publisher held at most {maxLag:N0} ms; " +
            $"drops {Tally.Format(last.SumBy("loom_events_dropped_total", "reason"))}; offender {Tally.Format(_offenders.Snapshot())}; healthy incidents {Tally.Format(_healthy.Snapshot())}; {clock.Elapsed.TotalSeconds:N1} s"));
        return new CaseResult(last, maxLag, clock.Elapsed);
    }

    /// <summary>One scrape of /metrics; the bridge must answer it, and its RSS is recorded.</summary>
    private async Task<MetricsSnapshot> ScrapeAsync(long queuedBytesBound)
    {
        Assert.False(_bridge!.HasExited, Describe($"the bridge process exited ({_bridge.ExitCode})"));
        using var bound = new CancellationTokenSource(BridgeScraper.Timeout * 2);
        var result = await _scraper!.ScrapeAsync(bound.Token);
        Assert.True(result.Snapshot is not null, Describe($"/metrics answered ({result.Error} after {result.Milliseconds:N0} ms)"));
        _scrapes++;
        _maxRssMb = Math.Max(_maxRssMb, result.Snapshot.Value("process_resident_memory_bytes") / MiB);
        var queued = result.Snapshot.Value("loom_subscription_queue_bytes");
        Assert.True(double.IsNaN(queued) || queued <= queuedBytesBound, $"{queued:N0} bytes queued, over {queuedBytesBound:N0}");
        return result.Snapshot;
    }

    private async Task<double> RssMbAsync(CancellationToken cancellationToken)
    {
        var result = await _scraper!.ScrapeAsync(cancellationToken);
        return (result.Snapshot ?? throw new InvalidOperationException($"/metrics: {result.Error}")).Value("process_resident_memory_bytes") / MiB;
    }

    /// <summary>What every case asserts of the bridge and the healthy load after the offender.</summary>
    private void AssertHealthy(CaseResult result, double rssBoundMb)
    {
        Assert.False(_bridge!.HasExited, Describe("the bridge process is alive"));
        Assert.True(_maxRssMb < rssBoundMb, Describe($"the bridge's RSS peaked at {_maxRssMb:N0} MB, over the bound of {rssBoundMb:N0} MB"));

        // Publishing went on at about its rate (a BATCH publisher may be held up to one block timeout per episode).
        var expected = _rate * OffenderTime.TotalSeconds / 2;
        Assert.True(_publisher.Sent >= Math.Min(expected, 60), Describe($"the publisher sent {_publisher.Sent}"));
        Assert.DoesNotContain(_healthy.Snapshot(), kv => kv.Key.StartsWith("publisher/", StringComparison.Ordinal) && kv.Key != "publisher/schedule_restarted");

        // Every envelope sent reached both subscribers, in order, on the streams they started with.
        foreach (var subscriber in _subscribers)
        {
            Assert.True(subscriber.Received == _publisher.Sent, Describe($"{subscriber.Name} received {subscriber.Received} of {_publisher.Sent}"));
            Assert.Equal(0, subscriber.Gaps);
            Assert.Equal(0, subscriber.Reconnects);
        }

        // The calls kept answering, every one.
        Assert.True(_callers.Ok >= CallRate * OffenderTime.TotalSeconds / 2, Describe($"{_callers.Ok} calls answered"));
        Assert.Equal(0, _callers.Failed);
        Assert.Equal(0, _callers.Reconnects);
        Assert.Equal(0, _publisher.Connection.Statistics.Reconnects);
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(45), $"the case took {result.Elapsed.TotalSeconds:N0} s");
    }

    /// <summary>An offender that must keep its stream (its error comes as a reply) never saw it end.</summary>
    private void AssertStreamKept(string offender)
    {
        var ended = _offenders.Snapshot().Where(kv => kv.Key.StartsWith(offender + "/stream_ended", StringComparison.Ordinal) || kv.Key.StartsWith(offender + "/write_", StringComparison.Ordinal)).Select(kv => kv.Key).ToList();
        Assert.True(ended.Count == 0, Describe("the offender's stream ended: " + string.Join(", ", ended.Select(k => k + " (" + (_offenders.Details.TryGetValue(k, out var d) ? d : "") + ")"))));
    }

    private string Describe(string what) =>
        what + "; offender: " + Tally.Format(_offenders.Snapshot()) + "; healthy: " + Tally.Format(_healthy.Snapshot()) + "; bridge output: " + _bridge?.Tail();

    public async Task DisposeAsync()
    {
        try
        {
            for (var i = _owned.Count - 1; i >= 0; i--)
            {
                try
                {
                    await _owned[i]().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                }
                catch (Exception ex)
                {
                    output.WriteLine($"closing a client failed: {ex.GetType().Name}: {ex.Message}");
                }
            }

            _scraper?.Dispose();
        }
        finally
        {
            if (_bridge is not null)
            {
                await _bridge.DisposeAsync();
            }
        }
    }
}

/// <summary>`loom up` in a child process (the CLI built beside this test project), on free ports; killed when disposed.</summary>
internal sealed partial class LoomProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Queue<string> _tail = new();

    private LoomProcess(Process process) => _process = process;

    public Uri GrpcUrl { get; private set; } = null!;

    public Uri HttpUrl { get; private set; } = null!;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.HasExited ? _process.ExitCode : 0;

    public static async Task<LoomProcess> StartAsync(IEnumerable<string> flags)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        start.ArgumentList.Add(LoomDll());
        foreach (var arg in (string[])["up", "--grpc-port", "0", "--http-port", "0", "--log-level", "Warning", .. flags])
        {
            start.ArgumentList.Add(arg);
        }

        var listening = new TaskCompletionSource<Match>(TaskCreationOptions.RunContinuationsAsynchronously);
        var process = new Process { StartInfo = start };
        var bridge = new LoomProcess(process);
        void OnLine(object sender, DataReceivedEventArgs e)
        {
            if (e.Data is not { } line)
            {
                return;
            }

            bridge.Remember(line);
            if (ListeningLine().Match(line) is { Success: true } match)
            {
                listening.TrySetResult(match);
            }
        }

        process.OutputDataReceived += OnLine;
        process.ErrorDataReceived += OnLine;
        if (!process.Start())
        {
            throw new InvalidOperationException("Could not start loom up.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            var match = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30));
            bridge.GrpcUrl = new Uri(match.Groups[1].Value);
            bridge.HttpUrl = new Uri(match.Groups[2].Value);
            return bridge;
        }
        catch (TimeoutException)
        {
            await bridge.DisposeAsync();
            throw new InvalidOperationException("loom up printed no listening line within 30 s: " + bridge.Tail());
        }
    }

    /// <summary>bridge/Loom.Cli/bin/CONFIGURATION/net10.0/loom.dll, in the configuration this test project was built in.</summary>
    private static string LoomDll()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
        {
            dir = dir.Parent;
        }

        if (dir is null)
        {
            throw new InvalidOperationException("No Loom.sln above " + AppContext.BaseDirectory);
        }

        var configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        var dll = Path.Combine(dir.FullName, "bridge", "Loom.Cli", "bin", configuration, "net10.0", "loom.dll");
        return File.Exists(dll) ? dll : throw new InvalidOperationException($"{dll} is missing: build Loom.sln in {configuration} first.");
    }

    private void Remember(string line)
    {
        lock (_tail)
        {
            _tail.Enqueue(line.Length > 300 ? line[..300] : line);
            while (_tail.Count > 20)
            {
                _tail.Dequeue();
            }
        }
    }

    /// <summary>The last lines the bridge wrote (for failure messages).</summary>
    public string Tail()
    {
        lock (_tail)
        {
            return _tail.Count == 0 ? "(nothing)" : string.Join(" | ", _tail);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex) when (ex is InvalidOperationException or TimeoutException or System.ComponentModel.Win32Exception)
        {
        }

        _process.Dispose();
    }

    [GeneratedRegex(@"listening grpc=(\S+) http=(\S+)")]
    private static partial Regex ListeningLine();
}
