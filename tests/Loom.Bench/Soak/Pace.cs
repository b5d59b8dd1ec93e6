namespace Loom.Bench.Soak;

/// <summary>Runs an action every period until stopped; the action counts its own outcomes, and nothing it throws ends the loop.</summary>
internal static class Pace
{
    public static async Task EveryAsync(TimeSpan period, Func<CancellationToken, Task> action, Tally tally, string name, CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            var started = DateTime.UtcNow;
            try
            {
                await action(stop);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                tally.Add(name + "/" + Outcome.Of(ex));
            }

            var wait = period - (DateTime.UtcNow - started);
            if (wait > TimeSpan.Zero && !await DelayAsync(wait, stop))
            {
                return;
            }
        }
    }

    /// <summary>False when stopped during the delay.</summary>
    public static async Task<bool> DelayAsync(TimeSpan delay, CancellationToken stop)
    {
        try
        {
            await Task.Delay(delay, stop);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
