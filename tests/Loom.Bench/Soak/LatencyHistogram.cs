using System.Diagnostics;

namespace Loom.Bench.Soak;

/// <summary>
/// A log-linear histogram of latencies (HdrHistogram's layout, 128 sub-buckets per power of two,
/// so a percentile is within 0.8 % of the exact value): a soak records millions of samples in
/// fixed memory, from any thread, without locks.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBits = 7;
    private const int SubCount = 1 << SubBits;          // 128
    private const int Linear = SubCount * 2;            // values below 256 ns get a bucket each
    private const int Buckets = Linear + (57 * SubCount);
    private readonly long[] _counts = new long[Buckets];
    private long _count;
    private long _max;

    public long Count => Interlocked.Read(ref _count);

    public double MaxUs => Interlocked.Read(ref _max) / 1000.0;

    public void RecordTicks(long ticks) => Record((long)(ticks * (1e9 / Stopwatch.Frequency)));

    public void Record(long nanoseconds)
    {
        var value = Math.Max(0, nanoseconds);
        Interlocked.Increment(ref _counts[Index(value)]);
        Interlocked.Increment(ref _count);
        Atomic.Max(ref _max, value);
    }

    /// <summary>The p-quantile in microseconds (NaN when empty).</summary>
    public double PercentileUs(double p)
    {
        var total = Count;
        if (total == 0)
        {
            return double.NaN;
        }

        var rank = Math.Max(1, (long)Math.Ceiling(p * total));
        long seen = 0;
        for (var i = 0; i < Buckets; i++)
        {
            seen += Interlocked.Read(ref _counts[i]);
            if (seen >= rank)
            {
                return Math.Min(Value(i), Interlocked.Read(ref _max)) / 1000.0;
            }
        }

        return MaxUs;
    }

    private static int Index(long value)
    {
        if (value < Linear)
        {
            return (int)value;
        }

        var shift = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)value) - SubBits; // value >> shift is in [128, 256)
        var index = Linear + ((shift - 1) * SubCount) + (int)((value >> shift) - SubCount);
        return Math.Min(index, Buckets - 1);
    }

    /// <summary>The middle of a bucket's range.</summary>
    private static long Value(int index)
    {
        if (index < Linear)
        {
            return index;
        }

        var j = index - Linear;
        var shift = (j / SubCount) + 1;
        var mantissa = (long)((j % SubCount) + SubCount);
        return (mantissa << shift) + ((1L << shift) / 2);
    }
}

/// <summary>Latencies over the whole run and over the current sample interval.</summary>
internal sealed class LatencyRecorder
{
    private LatencyHistogram _interval = new();

    public LatencyHistogram Total { get; } = new();

    public void RecordTicks(long ticks)
    {
        Total.RecordTicks(ticks);
        Volatile.Read(ref _interval).RecordTicks(ticks);
    }

    /// <summary>The interval that just ended; a new one starts (a sample racing the swap may land in either).</summary>
    public LatencyHistogram TakeInterval() => Interlocked.Exchange(ref _interval, new LatencyHistogram());
}
