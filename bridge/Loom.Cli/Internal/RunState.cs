using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Loom.Cli.Internal;

/// <summary>
/// What a running <c>loom run</c> or <c>loom dev</c> records in <c>PROJECT/.loom/bridge.json</c>:
/// the bridge its agents use (started by it, or the one it was given), and the process that
/// wrote the record (its pid and start time, so that a record left by a killed run, or a pid
/// reused since, is recognised as stale).
/// </summary>
internal sealed record RunState
{
    [JsonPropertyName("grpc_url")]
    public required string GrpcUrl { get; init; }

    [JsonPropertyName("http_url")]
    public string? HttpUrl { get; init; }

    [JsonPropertyName("pid")]
    public required int Pid { get; init; }

    /// <summary>When the recording process started (Unix ms): a pid reused by another process does not match it.</summary>
    [JsonPropertyName("pid_start_unix_ms")]
    public long PidStartUnixMs { get; init; }

    [JsonPropertyName("started_at")]
    public DateTimeOffset StartedAt { get; init; }

    /// <summary>"run" or "dev".</summary>
    [JsonPropertyName("command")]
    public string Command { get; init; } = "run";

    /// <summary>True when the run started this bridge in its own process; false when it was given one (--url or bridge.url).</summary>
    [JsonPropertyName("bridge_started")]
    public bool BridgeStarted { get; init; }

    /// <summary>The project directory (absolute).</summary>
    [JsonPropertyName("project")]
    public string Project { get; init; } = "";
}

/// <summary>Reads and writes <c>.loom/bridge.json</c>; finds the record that applies to the current directory.</summary>
internal static class RunStateFile
{
    public const string RelativePath = ".loom/bridge.json";

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static string PathFor(string projectDirectory) => Path.Combine(projectDirectory, ".loom", "bridge.json");

    /// <summary>This process's record of <paramref name="grpcUrl"/> and <paramref name="httpUrl"/> for the project in <paramref name="projectDirectory"/>.</summary>
    public static RunState Current(string projectDirectory, string grpcUrl, string? httpUrl, bool dev, bool bridgeStarted)
    {
        using var self = Process.GetCurrentProcess();
        return new RunState
        {
            GrpcUrl = grpcUrl,
            HttpUrl = httpUrl,
            Pid = self.Id,
            PidStartUnixMs = StartUnixMs(self),
            StartedAt = DateTimeOffset.UtcNow,
            Command = dev ? "dev" : "run",
            BridgeStarted = bridgeStarted,
            Project = Path.GetFullPath(projectDirectory),
        };
    }

    /// <summary>Writes the record (whole or not at all: a reader never sees half a file).</summary>
    public static void Write(string projectDirectory, RunState state)
    {
        var path = PathFor(projectDirectory);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temporary = $"{path}.{state.Pid}.tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(state, Indented) + "\n");
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Removes the record if it is still this process's (a later run of the same project may have replaced it).</summary>
    public static void Remove(string projectDirectory, RunState state)
    {
        var path = PathFor(projectDirectory);
        try
        {
            if (Read(path) is { } recorded && recorded.Pid == state.Pid && recorded.PidStartUnixMs == state.PidStartUnixMs)
            {
                File.Delete(path);
            }
        }
        catch (IOException)
        {
            // Left behind: readers see that its process is gone.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }

    /// <summary>The record in <paramref name="path"/>; null when there is none or it cannot be read.</summary>
    public static RunState? Read(string path)
    {
        try
        {
            return File.Exists(path) ? JsonSerializer.Deserialize<RunState>(File.ReadAllText(path)) : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>The record of <paramref name="projectDirectory"/> if the process that wrote it is still running; null otherwise (a stale record is ignored).</summary>
    public static RunState? ReadLive(string projectDirectory) =>
        Read(PathFor(projectDirectory)) is { } state && IsAlive(state) ? state : null;

    /// <summary>True when the recording process still runs: its pid exists and started when recorded.</summary>
    public static bool IsAlive(RunState state)
    {
        try
        {
            using var process = Process.GetProcessById(state.Pid);
            return !process.HasExited && (state.PidStartUnixMs == 0 || Math.Abs(StartUnixMs(process) - state.PidStartUnixMs) < 2000);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return false;
        }
    }

    /// <summary>
    /// The live record that applies to <paramref name="directory"/>: the nearest
    /// <c>.loom/bridge.json</c> in it or a directory above it; else that of $LOOM_PROJECT_DIR (set
    /// for agents); else the one of its immediate subdirectories, if exactly one holds a live record
    /// (<c>loom run greeter</c>, then <c>loom list</c> in the same place).
    /// </summary>
    /// <exception cref="AmbiguousRunException">Several subdirectories hold live records.</exception>
    public static RunState? Find(string directory)
    {
        for (var dir = new DirectoryInfo(directory); dir is not null; dir = dir.Parent)
        {
            if (ReadLive(dir.FullName) is { } state)
            {
                return state;
            }
        }

        if (Environment.GetEnvironmentVariable("LOOM_PROJECT_DIR") is { Length: > 0 } project && ReadLive(project) is { } fromEnvironment)
        {
            return fromEnvironment;
        }

        var below = new List<RunState>();
        try
        {
            foreach (var sub in Directory.EnumerateDirectories(directory))
            {
                if (ReadLive(sub) is { } state)
                {
                    below.Add(state);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // An unreadable directory holds no record we can use.
        }

        return below.Count switch
        {
            0 => null,
            1 => below[0],
            _ => throw new AmbiguousRunException(below.Select(s => Path.GetRelativePath(directory, s.Project)).Order(StringComparer.Ordinal).ToList()),
        };
    }

    private static long StartUnixMs(Process process) => new DateTimeOffset(process.StartTime.ToUniversalTime()).ToUnixTimeMilliseconds();
}

/// <summary>Several runs below the current directory, and no way to tell which one is meant.</summary>
internal sealed class AmbiguousRunException(IReadOnlyList<string> projects)
    : Exception($"several loom runs below this directory ({string.Join(", ", projects)}); run the command in one of them or give --url")
{
    public IReadOnlyList<string> Projects { get; } = projects;
}

/// <summary>Which bridge a command that reads one (list, logs, mcp) talks to, and why.</summary>
internal static class BridgeLocator
{
    /// <summary>
    /// The bridge's address: <paramref name="given"/> (its --url); else <paramref name="environmentVariable"/>;
    /// else the record of a live <c>loom run</c> (<see cref="RunStateFile.Find"/>); else <paramref name="fallback"/>.
    /// <paramref name="source"/> says which, for messages.
    /// </summary>
    /// <remarks><paramref name="useRecord"/> false: not from a run's record (the other port of the bridge was given explicitly).</remarks>
    /// <exception cref="AmbiguousRunException">No address given and several runs below the current directory.</exception>
    public static string Resolve(string? given, string environmentVariable, bool http, string fallback, out string source, bool useRecord = true)
    {
        if (given is not null)
        {
            source = "--url";
            return given.TrimEnd('/');
        }

        if (Environment.GetEnvironmentVariable(environmentVariable) is { Length: > 0 } fromEnvironment)
        {
            source = "$" + environmentVariable;
            return fromEnvironment.TrimEnd('/');
        }

        if (useRecord && RunStateFile.Find(Environment.CurrentDirectory) is { } run && (http ? run.HttpUrl : run.GrpcUrl) is { } recorded)
        {
            source = $"recorded by 'loom {run.Command}' (pid {run.Pid}) in {Path.GetRelativePath(Environment.CurrentDirectory, RunStateFile.PathFor(run.Project))}";
            return recorded.TrimEnd('/');
        }

        source = "the default";
        return fallback;
    }
}
