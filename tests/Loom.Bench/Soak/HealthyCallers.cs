using System.Diagnostics;
using Loom.Sdk;

namespace Loom.Bench.Soak;

/// <summary>
/// Concurrent callers of a capability that another agent provides (<see cref="EchoAgent"/>'s
/// bench.echo), paced to a total rate: round-trip latency, and failures by error code.
/// </summary>
internal sealed class HealthyCallers : IAsyncDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private readonly RunningAgent _provider;
    private readonly RunningAgent _caller;
    private readonly Tally _tally;
    private long _ok;
    private long _failed;

    private HealthyCallers(RunningAgent provider, RunningAgent caller, Tally tally)
    {
        _provider = provider;
        _caller = caller;
        _tally = tally;
    }

    public LatencyRecorder RoundTrips { get; } = new();

    public long Ok => Interlocked.Read(ref _ok);

    public long Failed => Interlocked.Read(ref _failed);

    public long Reconnects => (_provider.Connection?.Statistics.Reconnects ?? 0) + (_caller.Connection?.Statistics.Reconnects ?? 0);

    public static async Task<HealthyCallers> StartAsync(Uri url, Tally tally, CancellationToken cancellationToken)
    {
        var provider = await LoomAgentHost.StartAsync(new EchoAgent(), url, new AgentHostOptions { AgentId = "soak-echo" }, cancellationToken);
        try
        {
            var caller = await LoomAgentHost.StartAsync(new CallerAgent(), url, new AgentHostOptions { AgentId = "soak-caller" }, cancellationToken);
            return new HealthyCallers(provider, caller, tally);
        }
        catch
        {
            await provider.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs <paramref name="callers"/> loops that together make <paramref name="ratePerSecond"/> calls/s, until <paramref name="stop"/>.</summary>
    public Task RunAsync(int callers, int ratePerSecond, CancellationToken stop) =>
        Task.WhenAll(Enumerable.Range(0, callers).Select(i => Task.Run(() => CallLoopAsync(i, TimeSpan.FromSeconds((double)callers / ratePerSecond), stop), CancellationToken.None)));

    private async Task CallLoopAsync(int caller, TimeSpan period, CancellationToken stop)
    {
        var seq = caller * 1_000_000_000;
        var next = Stopwatch.GetTimestamp();
        var periodTicks = (long)(period.TotalSeconds * Stopwatch.Frequency);
        while (!stop.IsCancellationRequested)
        {
            var n = seq++;
            var started = Stopwatch.GetTimestamp();
            try
            {
                var output = await _caller.Context.InvokeAsync<EchoOutput>("bench.echo", new EchoInput(n, "ping"), CallTimeout, cancellationToken: stop);
                if (output?.Seq == n)
                {
                    RoundTrips.RecordTicks(Stopwatch.GetTimestamp() - started);
                    Interlocked.Increment(ref _ok);
                }
                else
                {
                    Fail("wrong_answer");
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Fail(Outcome.Of(ex));
            }

            next += periodTicks;
            var wait = next - Stopwatch.GetTimestamp();
            if (wait < -Stopwatch.Frequency)
            {
                next = Stopwatch.GetTimestamp(); // more than a second behind: a fresh schedule, not a burst
            }
            else if (wait > 0)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency), stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private void Fail(string code)
    {
        Interlocked.Increment(ref _failed);
        _tally.Add("call/" + code);
    }

    public async ValueTask DisposeAsync()
    {
        await _caller.DisposeAsync();
        await _provider.DisposeAsync();
    }
}
