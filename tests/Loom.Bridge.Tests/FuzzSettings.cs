namespace Loom.Bridge.Tests;

/// <summary>
/// How long the fuzz properties run. A CI run does a bounded number of cases with a random seed
/// (CsCheck prints the seed of a failing case, with the shrunk input); longer runs and replays
/// come from the environment:
/// <c>LOOM_FUZZ_ITERATIONS</c> multiplies every property's case count (e.g. 100 for a long run),
/// <c>LOOM_FUZZ_SEED</c> replays one seed (as printed by a failure) in every property.
/// </summary>
internal static class FuzzSettings
{
    /// <summary>The multiplier of case counts; 1 in CI.</summary>
    public static int Scale { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("LOOM_FUZZ_ITERATIONS"), out var scale) && scale > 0 ? scale : 1;

    /// <summary>The seed to replay, or null for a random one.</summary>
    public static string? Seed { get; } = Environment.GetEnvironmentVariable("LOOM_FUZZ_SEED") is { Length: > 0 } seed ? seed : null;

    public static long Iterations(long perCiRun) => perCiRun * Scale;
}
