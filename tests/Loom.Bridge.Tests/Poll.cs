namespace Loom.Bridge.Tests;

internal static class Poll
{
    /// <summary>Polls a condition until it holds or the deadline passes; never a fixed sleep.</summary>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Condition not met in time: {what ?? "(unnamed)"}");
            }

            await Task.Delay(10);
        }
    }

    /// <summary>The same for a condition that must be awaited (an HTTP read, say); each check is bounded too.</summary>
    public static async Task UntilAsync(Func<CancellationToken, Task<bool>> condition, TimeSpan? timeout = null, string? what = null)
    {
        using var deadline = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            while (!await condition(deadline.Token))
            {
                await Task.Delay(10, deadline.Token);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            throw new TimeoutException($"Condition not met in time: {what ?? "(unnamed)"}");
        }
    }
}
