using System.Text.Json.Serialization;

namespace Loom.Bridge.Internal.Runs;

/// <summary>A thread in <c>GET /v1/threads</c>: its span, agents and step counts (count is all steps held).</summary>
internal sealed record RunThreadSummary(string Id, long FirstUnixMs, long LastUnixMs, IReadOnlyList<string> Agents, int Events, int Calls, int Collab, int Errors, int Count, bool Truncated);

internal sealed record RunThreadList(IReadOnlyList<RunThreadSummary> Threads, int Total, int Offset, bool Persistent);

internal sealed record RunThreadDetail(string Id, long FirstUnixMs, long LastUnixMs, IReadOnlyList<string> Agents, int Events, int Calls, int Collab, int Errors, int Count, bool Truncated, IReadOnlyList<RunStep> Steps);

internal sealed record RunsError(string Code, string Message);

[JsonSerializable(typeof(RunStep))]
[JsonSerializable(typeof(RunThreadList))]
[JsonSerializable(typeof(RunThreadDetail))]
[JsonSerializable(typeof(RunsError))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class RunsJsonContext : JsonSerializerContext;
