namespace Loom.Sdk.Tests;

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

    /// <summary>Retries an async operation until it succeeds or the deadline passes.</summary>
    public static async Task<T> UntilSucceedsAsync<T>(Func<Task<T>> operation, TimeSpan? timeout = null, string? what = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            try
            {
                return await operation();
            }
            catch (Exception ex) when (DateTime.UtcNow < deadline && ex is not OutOfMemoryException)
            {
                await Task.Delay(20);
            }
        }
    }
}
