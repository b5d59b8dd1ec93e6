using System.Globalization;

namespace Loom.Grpc.Internal;

/// <summary>The <c>grpc-timeout</c> header: 1 to 8 ASCII digits followed by a unit (H, M, S, m, u, n).</summary>
internal static class GrpcTimeout
{
    public const long MaxValue = 99_999_999;

    public static bool TryParse(string? value, out TimeSpan timeout)
    {
        timeout = default;
        if (value is null || value.Length < 2 || value.Length > 9)
        {
            return false;
        }

        long amount = 0;
        for (var i = 0; i < value.Length - 1; i++)
        {
            var c = value[i];
            if (c is < '0' or > '9')
            {
                return false;
            }

            amount = (amount * 10) + (c - '0');
        }

        // 99,999,999 hours is 3.6e18 ticks: fits in a long, so no unit below can overflow.
        long? ticks = value[^1] switch
        {
            'H' => amount * TimeSpan.TicksPerHour,
            'M' => amount * TimeSpan.TicksPerMinute,
            'S' => amount * TimeSpan.TicksPerSecond,
            'm' => amount * TimeSpan.TicksPerMillisecond,
            'u' => amount * TimeSpan.TicksPerMicrosecond,
            'n' => amount / TimeSpan.NanosecondsPerTick,
            _ => null,
        };
        if (ticks is null)
        {
            return false;
        }

        timeout = TimeSpan.FromTicks(ticks.Value);
        return true;
    }

    /// <summary>Formats with the finest unit whose value fits in 8 digits, rounding up so the server never sees a shorter timeout.</summary>
    public static string Format(TimeSpan timeout)
    {
        var ticks = timeout.Ticks;
        if (ticks <= 0)
        {
            return "1n";
        }

        if (ticks <= MaxValue / TimeSpan.NanosecondsPerTick)
        {
            return Text(ticks * TimeSpan.NanosecondsPerTick, 'n');
        }

        ReadOnlySpan<(long TicksPerUnit, char Unit)> units =
        [
            (TimeSpan.TicksPerMicrosecond, 'u'),
            (TimeSpan.TicksPerMillisecond, 'm'),
            (TimeSpan.TicksPerSecond, 'S'),
            (TimeSpan.TicksPerMinute, 'M'),
            (TimeSpan.TicksPerHour, 'H'),
        ];
        foreach (var (ticksPerUnit, unit) in units)
        {
            var amount = (ticks / ticksPerUnit) + (ticks % ticksPerUnit == 0 ? 0 : 1);
            if (amount <= MaxValue)
            {
                return Text(amount, unit);
            }
        }

        return Text(MaxValue, 'H');
    }

    private static string Text(long amount, char unit) =>
        string.Create(CultureInfo.InvariantCulture, $"{amount}{unit}");
}
