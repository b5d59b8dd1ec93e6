namespace Loom.Mcp.Tests;

internal static class Poll
{
    /// <summary>Polls a condition until it holds or the deadline passes; never a fixed sleep.</summary>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Condition not met in time: {what ?? "(unnamed)"}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Retries an async check until it returns true or the deadline passes.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Condition not met in time: {what ?? "(unnamed)"}");
            }

            await Task.Delay(50);
        }
    }
}
