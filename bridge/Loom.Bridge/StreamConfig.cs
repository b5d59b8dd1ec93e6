using Loom.Core;

namespace Loom.Bridge;

/// <summary>
/// One durable stream (loom.yaml <c>streams:</c>): the events published on topics matching
/// <see cref="Subjects"/> are persisted under the bridge's data directory, numbered 1, 2, 3, ...,
/// and kept within the retention limits; they are delivered on the ephemeral bus as before too.
/// </summary>
public sealed record StreamConfig
{
    /// <summary>Name: letters, digits, '-' and '_' (it names a directory). Required.</summary>
    public required string Name { get; init; }

    /// <summary>Topic patterns captured (<c>*</c> one token, <c>&gt;</c> the rest). At least one.</summary>
    public required IReadOnlyList<string> Subjects { get; init; }

    /// <summary>Events older than this are removed (a segment at a time). Default zero: kept regardless of age.</summary>
    public TimeSpan MaxAge { get; init; }

    /// <summary>The stream is kept under this many bytes on disk. Default zero: no limit.</summary>
    public long MaxBytes { get; init; }

    /// <summary>At most this many events are kept. Default zero: no limit.</summary>
    public long MaxEvents { get; init; }

    /// <summary>A publish whose envelope id was stored within this window is not stored again. Default 2 minutes.</summary>
    public TimeSpan DuplicateWindow { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>True (default): acknowledged only after fsync. False: after the OS has the bytes (survives a crash of the bridge, not of the machine).</summary>
    public bool Fsync { get; init; } = true;

    /// <summary>Size of one segment file. Default 64 MiB.</summary>
    public long SegmentBytes { get; init; } = 64L * 1024 * 1024;

    internal static void ValidateAll(IReadOnlyList<StreamConfig> streams, string? dataDirectory)
    {
        if (streams.Count == 0)
        {
            return;
        }

        if (string.IsNullOrWhiteSpace(dataDirectory))
        {
            throw new ArgumentException("Durable streams need a data directory: give DataDirectory (--data-dir).", nameof(dataDirectory));
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var stream in streams)
        {
            if (string.IsNullOrEmpty(stream.Name) || stream.Name.Length > 64 || !stream.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            {
                throw new ArgumentException($"Stream name '{stream.Name}' is not valid: use 1 to 64 letters, digits, '-' or '_'.", nameof(streams));
            }

            if (!names.Add(stream.Name))
            {
                throw new ArgumentException($"Stream '{stream.Name}' is defined twice; stream names must be unique.", nameof(streams));
            }

            if (stream.Subjects.Count == 0)
            {
                throw new ArgumentException($"Stream '{stream.Name}' has no subjects; give the topic patterns it captures, e.g. [orders.>].", nameof(streams));
            }

            foreach (var subject in stream.Subjects)
            {
                if (!Topics.IsValidPattern(subject))
                {
                    throw new ArgumentException($"Stream '{stream.Name}': subject '{subject}' is not a valid topic pattern (dot-separated tokens, '*' for one token, '>' last for the rest).", nameof(streams));
                }
            }

            if (stream.MaxAge < TimeSpan.Zero || stream.MaxBytes < 0 || stream.MaxEvents < 0 || stream.DuplicateWindow < TimeSpan.Zero)
            {
                throw new ArgumentOutOfRangeException(nameof(streams), $"Stream '{stream.Name}': max_age, max_bytes, max_events and duplicate_window must not be negative.");
            }

            if (stream.SegmentBytes < 4096)
            {
                throw new ArgumentOutOfRangeException(nameof(streams), $"Stream '{stream.Name}': segment_bytes is {stream.SegmentBytes}; use at least 4096.");
            }
        }
    }
}
