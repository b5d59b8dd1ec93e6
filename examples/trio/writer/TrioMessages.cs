using System.Text.Json;
using System.Text.Json.Serialization;

namespace Loom.Examples.Trio.Writer;

/// <summary>
/// The trio's event payloads (snake_case JSON, the same in Python, TypeScript and .NET). Every
/// payload carries <c>kind</c>; all travel on <c>thread.{id}.broadcast</c> (plan, report) or
/// <c>thread.{id}.reply</c> (finding), with the envelope's thread_id set to the thread.
/// </summary>
internal static class TrioJson
{
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };
}

/// <summary>One sub-question of a plan and the capability that answers it.</summary>
internal sealed record PlanTask(string Id, string Text, string Capability, string? City = null, string? Date = null);

/// <summary>The Planner's plan: the question split into tasks.</summary>
internal sealed record Plan(string Kind, string Question, IReadOnlyList<PlanTask> Tasks, string? Generator = null);

/// <summary>A source the Researcher used.</summary>
internal sealed record Source(string Id, string Title, string? Url, string? Snippet);

/// <summary>The Researcher's answer to one task.</summary>
internal sealed record Finding(
    string Kind,
    string TaskId,
    string Question,
    string Answer,
    IReadOnlyList<Source> Sources,
    IReadOnlyList<FindingSentence>? Sentences = null,
    JsonElement? Weather = null,
    string? Error = null);

/// <summary>A sentence of a finding, with the source it comes from (verbatim).</summary>
internal sealed record FindingSentence(string Text, string SourceId);

/// <summary>The Writer's report.</summary>
internal sealed record Report(string Kind, string Question, string Markdown, IReadOnlyList<CitedSource> Sources, string Generator, IReadOnlyList<string> MissingTasks);

/// <summary>A source as numbered in the report.</summary>
internal sealed record CitedSource(int Number, string Id, string Title, string? Url);

/// <summary>Input of the <c>report.compose</c> capability.</summary>
internal sealed record ComposeInput(string Question, IReadOnlyList<Finding> Findings);
