using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

/// <summary>
/// Bounds one kind of warning that clients can trigger at will (a rejected registration, a slow
/// consumer, an expiry in a registration flood): at most <c>burst</c> lines per interval. Lines
/// past that are counted instead, and one line says how many were left out: when the next
/// interval's first line is written, or at the latest when <see cref="Flush"/> runs after the
/// interval (the session sweep calls it).
/// </summary>
internal sealed class LogLimiter(ILogger logger, string kind, TimeProvider time, int burst = LogLimiter.DefaultBurst, TimeSpan? interval = null)
{
    public const int DefaultBurst = 5;

    public static readonly TimeSpan DefaultInterval = TimeSpan.FromSeconds(10);

    private readonly TimeSpan _interval = interval ?? DefaultInterval;
    private readonly Lock _gate = new();
    private bool _open;
    private long _windowStart;
    private int _written;
    private long _leftOut;

    /// <summary>True when the caller may write its line (after the count of lines left out, when one is due).</summary>
    public bool TryEnter()
    {
        if (!TryEnter(out var leftOut))
        {
            return false;
        }

        if (leftOut > 0)
        {
            Log.WarningsLeftOut(logger, leftOut, kind, burst, _interval.TotalSeconds);
        }

        return true;
    }

    /// <summary>
    /// True when the caller may write its line; <paramref name="leftOut"/> is then the number of
    /// lines left out before it (for a caller that puts the count in its own line).
    /// </summary>
    public bool TryEnter(out long leftOut)
    {
        var now = time.GetTimestamp();
        lock (_gate)
        {
            if (!_open || time.GetElapsedTime(_windowStart, now) >= _interval)
            {
                leftOut = _leftOut;
                _leftOut = 0;
                _open = true;
                _windowStart = now;
                _written = 1;
                return true;
            }

            leftOut = 0;
            if (_written < burst)
            {
                _written++;
                return true;
            }

            _leftOut++;
            return false;
        }
    }

    /// <summary>Writes the count of lines left out once their interval is over, so a flood that stops is still reported.</summary>
    public void Flush()
    {
        long leftOut;
        lock (_gate)
        {
            if (_leftOut == 0 || time.GetElapsedTime(_windowStart, time.GetTimestamp()) < _interval)
            {
                return;
            }

            leftOut = _leftOut;
            _leftOut = 0;
            _open = false;
        }

        Log.WarningsLeftOut(logger, leftOut, kind, burst, _interval.TotalSeconds);
    }
}

/// <summary>The limits on the bridge's warnings that clients can trigger, one per kind.</summary>
internal sealed class BridgeWarnings(ILogger logger, TimeProvider time)
{
    public LogLimiter RegistrationRejected { get; } = new(logger, "registration rejected", time);

    public LogLimiter AgentExpired { get; } = new(logger, "agent removed", time);

    public LogLimiter SlowConsumer { get; } = new(logger, "slow consumer", time);

    public LogLimiter SlowReader { get; } = new(logger, "agent not reading its stream", time);

    public LogLimiter WriteFailed { get; } = new(logger, "stream write failed", time);

    public void Flush()
    {
        RegistrationRejected.Flush();
        AgentExpired.Flush();
        SlowConsumer.Flush();
        SlowReader.Flush();
        WriteFailed.Flush();
    }
}
