using System.Diagnostics;

namespace Loom.Tests;

/// <summary>
/// Waits for a condition by polling it until it holds or a deadline passes (never a fixed sleep
/// followed by an assertion). Shared by the test projects (linked, not referenced).
/// </summary>
internal static class Poll
{
    private static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Polls a condition every 10 ms.</summary>
    /// <exception cref="TimeoutException">The condition did not hold within <paramref name="timeout"/> (default 10 s).</exception>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan? timeout = null, string? what = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > limit)
            {
                throw Expired(limit, what);
            }

            await Task.Delay(10);
        }
    }

    /// <summary>Polls an awaited condition (an HTTP read, say) every 50 ms; each check is bounded by the same deadline.</summary>
    /// <exception cref="TimeoutException">The condition did not hold within <paramref name="timeout"/> (default 10 s).</exception>
    public static async Task UntilAsync(Func<CancellationToken, Task<bool>> condition, TimeSpan? timeout = null, string? what = null)
    {
        var limit = timeout ?? DefaultTimeout;
        using var deadline = new CancellationTokenSource(limit);
        try
        {
            while (!await condition(deadline.Token))
            {
                await Task.Delay(50, deadline.Token);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            throw Expired(limit, what);
        }
    }

    /// <summary>The same for a condition that takes no token (it must bound its own waits).</summary>
    /// <exception cref="TimeoutException">The condition did not hold within <paramref name="timeout"/> (default 10 s).</exception>
    public static Task UntilAsync(Func<Task<bool>> condition, TimeSpan? timeout = null, string? what = null) =>
        UntilAsync(_ => condition(), timeout, what);

    /// <summary>Retries an operation until it succeeds (its last failure is thrown after the deadline).</summary>
    public static async Task<T> UntilSucceedsAsync<T>(Func<Task<T>> operation, TimeSpan? timeout = null, string? what = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return await operation();
            }
            catch (Exception ex) when (clock.Elapsed < limit && ex is not OutOfMemoryException)
            {
                await Task.Delay(20);
            }
        }
    }

    private static TimeoutException Expired(TimeSpan limit, string? what) =>
        new($"Condition not met within {limit.TotalSeconds:0.#} s: {what ?? "(unnamed)"}");
}
