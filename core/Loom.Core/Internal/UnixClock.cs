namespace Loom.Core.Internal;

/// <summary>
/// Wall-clock milliseconds for TTL checks on the hot path. With the system clock it reads the
/// cheap monotonic tick count and re-anchors to the wall clock once a second (a system
/// GetUtcNow costs about 30 ns here, the tick count about 5 ns; TTLs need no better than a few
/// milliseconds). Any other TimeProvider (tests) is asked every time.
/// </summary>
internal sealed class UnixClock(TimeProvider time)
{
    private const long ResyncMs = 1000;

    private readonly bool _coarse = ReferenceEquals(time, TimeProvider.System);
    private Anchor _anchor = new(Environment.TickCount64, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());

    public TimeProvider Time { get; } = time;

    public long NowUnixMs()
    {
        if (!_coarse)
        {
            return Time.GetUtcNow().ToUnixTimeMilliseconds();
        }

        var tick = Environment.TickCount64;
        var anchor = Volatile.Read(ref _anchor);
        var elapsed = tick - anchor.Tick;
        if ((ulong)elapsed < ResyncMs)
        {
            return anchor.UnixMs + elapsed;
        }

        anchor = new Anchor(tick, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        Volatile.Write(ref _anchor, anchor);
        return anchor.UnixMs;
    }

    private sealed record Anchor(long Tick, long UnixMs);
}
