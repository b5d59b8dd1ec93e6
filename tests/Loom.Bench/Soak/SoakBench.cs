using System.Diagnostics;
using System.Globalization;

namespace Loom.Bench.Soak;

/// <summary>
/// The soak: a steady mixed healthy load through the .NET SDK with one misbehaving client of each
/// kind attached for the whole run, against a bridge in a child process (or at --url). One progress
/// line per sample interval; at the end, figures for the whole run. Nothing an offender or the
/// bridge does ends the soak early: failures are counted, and it stops by itself after --minutes.
/// </summary>
internal static class SoakBench
{
    private static readonly TimeSpan SetupBound = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan StopBound = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan DrainBound = TimeSpan.FromSeconds(15);

    /// <summary>
    /// The child bridge runs with background GC, as `loom up` does (Loom.Cli.csproj); this program's own
    /// setting (blocking GC, for steadier bench figures) would make its pauses longer than a real bridge's.
    /// </summary>
    private static readonly Dictionary<string, string> LikeLoomUp = new(StringComparer.Ordinal) { ["DOTNET_gcConcurrent"] = "1" };

    public static async Task<IReadOnlyList<Figure>> RunAsync(BenchOptions options, TextWriter progress)
    {
        var settings = SoakSettings.From(options);
        await using var bridge = options.Url is null ? await BridgeProcess.StartAsync(LikeLoomUp) : null;
        var grpc = bridge?.GrpcUrl ?? options.Url!;
        var http = bridge?.HttpUrl ?? options.HttpUrl ?? throw new ArgumentException("soak with --url needs --http-url for the bridge's /metrics.");
        progress.WriteLine($"soak: bridge {(bridge is null ? "at " + grpc : $"in a child process (pid {bridge.ProcessId}, {grpc})")}; {settings.Describe()}");
        using var scraper = new BridgeScraper(http);

        SoakParts parts;
        SoakMonitor monitor;
        using (var setup = new CancellationTokenSource(SetupBound))
        {
            parts = await SoakParts.CreateAsync(grpc, settings, setup.Token);
            monitor = new SoakMonitor(parts, scraper, bridge, progress);
            try
            {
                await monitor.BaselineAsync(setup.Token);
            }
            catch
            {
                await parts.DisposeAsync();
                throw;
            }
        }

        await using (parts)
        {
            using var stop = new CancellationTokenSource();
            var clock = Stopwatch.StartNew();
            var loops = parts.Start(settings, stop.Token);
            try
            {
                var duration = TimeSpan.FromMinutes(settings.Minutes);
                for (var next = settings.Interval; ; next += settings.Interval)
                {
                    if (next > duration)
                    {
                        next = duration;
                    }

                    var wait = next - clock.Elapsed;
                    if (wait > TimeSpan.Zero)
                    {
                        await Task.Delay(wait);
                    }

                    using var sampleBound = new CancellationTokenSource(BridgeScraper.Timeout * 2);
                    await monitor.SampleAsync(clock.Elapsed.TotalSeconds, sampleBound.Token);
                    if (next >= duration)
                    {
                        break;
                    }
                }
            }
            finally
            {
                await stop.CancelAsync();
                await StopAsync(loops, progress);
            }

            var lastSent = parts.Publisher.Sent;
            await DrainAsync(parts, lastSent);
            using (var collectBound = new CancellationTokenSource(TimeSpan.FromSeconds(90)))
            {
                await monitor.CollectAtEndAsync(collectBound.Token);
            }

            return SoakSummary.Build(settings, parts, monitor, clock.Elapsed.TotalSeconds);
        }
    }

    /// <summary>Waits for the loops to notice the stop; one that does not within the bound is reported and left behind.</summary>
    private static async Task StopAsync(List<Task> loops, TextWriter progress)
    {
        try
        {
            await Task.WhenAll(loops).WaitAsync(StopBound);
        }
        catch (TimeoutException)
        {
            progress.WriteLine($"soak: {loops.Count(l => !l.IsCompleted)} loops did not stop within {StopBound.TotalSeconds:N0} s");
        }
        catch (Exception ex)
        {
            progress.WriteLine($"soak: a loop failed: {ex.GetType().Name}: {ex.Message}");
        }
    }

    /// <summary>Lets the healthy subscribers receive what is still on its way, until all arrived or nothing moves for 3 s.</summary>
    private static async Task DrainAsync(SoakParts parts, long sent)
    {
        var deadline = Stopwatch.StartNew();
        var seen = parts.Received;
        var quiet = Stopwatch.StartNew();
        while (deadline.Elapsed < DrainBound && parts.Subscribers.Any(s => s.Received < sent) && quiet.Elapsed < TimeSpan.FromSeconds(3))
        {
            await Task.Delay(100);
            var now = parts.Received;
            if (now != seen)
            {
                seen = now;
                quiet.Restart();
            }
        }
    }

    internal static string Seconds(double s) => s.ToString("N1", CultureInfo.InvariantCulture) + " s";
}
