namespace Loom.Sdk.Internal;

/// <summary>Jittered exponential backoff: initial * 2^attempt, capped, spread by +/- jitter.</summary>
internal static class Backoff
{
    public static TimeSpan Delay(int attempt, TimeSpan initial, TimeSpan max, double jitter, Random? random = null)
    {
        if (initial <= TimeSpan.Zero)
        {
            return TimeSpan.Zero;
        }

        var exponent = Math.Clamp(attempt, 0, 30);
        var ms = Math.Min(max.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, exponent));
        var spread = Math.Clamp(jitter, 0, 1);
        if (spread > 0)
        {
            var r = (random ?? Random.Shared).NextDouble();
            ms *= 1 + (spread * ((2 * r) - 1));
        }

        return TimeSpan.FromMilliseconds(Math.Max(0, ms));
    }
}
