using Loom.Grpc.Internal;

namespace Loom.Grpc.Tests;

public class GrpcTimeoutTests
{
    [Theory]
    [InlineData("1H", 3600_000_000_0L)]
    [InlineData("2M", 120_000_000_0L)]
    [InlineData("30S", 300_000_000L)]
    [InlineData("100m", 1_000_000L)]
    [InlineData("250u", 2_500L)]
    [InlineData("1000n", 10L)]
    [InlineData("0S", 0L)]
    [InlineData("99999999H", 99_999_999L * 36_000_000_000L)]
    [InlineData("00000001S", 10_000_000L)]
    public void Parses_every_unit(string value, long ticks)
    {
        Assert.True(GrpcTimeout.TryParse(value, out var timeout));
        Assert.Equal(TimeSpan.FromTicks(ticks), timeout);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("S")]
    [InlineData("10")]
    [InlineData("123456789S")] // more than 8 digits
    [InlineData("10s")]        // units are case-sensitive
    [InlineData("10ms")]
    [InlineData("-1S")]
    [InlineData("1.5S")]
    [InlineData(" 1S")]
    [InlineData("1 S")]
    public void Rejects_malformed_values(string? value)
    {
        Assert.False(GrpcTimeout.TryParse(value, out _));
    }

    [Theory]
    [InlineData(1L, "100n")]
    [InlineData(999_999L, "99999900n")]
    [InlineData(10_000_000L, "1000000u")]      // 1 s
    [InlineData(10_000_001L, "1000001u")]      // rounds up, never shorter
    [InlineData(36_000_000_000L, "3600000m")]  // 1 h
    public void Formats_with_the_finest_unit_that_fits(long ticks, string expected)
    {
        Assert.Equal(expected, GrpcTimeout.Format(TimeSpan.FromTicks(ticks)));
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(123_456_789L)]
    [InlineData(987_654_321_012L)]
    [InlineData(3_000_000_000_000_000_000L)]
    public void Format_round_trips_without_shortening(long ticks)
    {
        var formatted = GrpcTimeout.Format(TimeSpan.FromTicks(ticks));
        Assert.InRange(formatted.Length, 2, 9);
        Assert.True(GrpcTimeout.TryParse(formatted, out var parsed));
        Assert.True(parsed >= TimeSpan.FromTicks(ticks), $"{formatted} is shorter than {ticks} ticks");
    }

    [Fact]
    public void Format_caps_at_the_largest_expressible_timeout()
    {
        Assert.Equal("99999999H", GrpcTimeout.Format(TimeSpan.MaxValue));
    }
}
