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
/// <remarks>
/// <c>Aspect</c>: weather, packing, best-time, sightseeing, food, transport, history or general.
/// <c>Dates</c>: every day asked (a weekend, a week, a month) when more than one; <c>Date</c> is the first.
/// <c>Asks</c>: for weather parts, what is asked (cold, warm, temperature, rain, snow, sun, wind, clothes, best-time, weather).
/// <c>DateNote</c>: set when no day was given and a default was used ("no day given: today").
/// </remarks>
internal sealed record PlanTask(
    string Id,
    string Text,
    string Capability,
    string? City = null,
    string? Date = null,
    string? Aspect = null,
    IReadOnlyList<string>? Dates = null,
    IReadOnlyList<string>? Asks = null,
    bool? CityInData = null,
    string? DateNote = null);

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
    string? Error = null,
    IReadOnlyList<JsonElement>? WeatherDays = null,
    IReadOnlyList<string>? NoData = null,
    IReadOnlyList<JsonElement>? Calls = null,
    string? Aspect = null);

/// <summary>A sentence of a finding, with the source it comes from (verbatim).</summary>
internal sealed record FindingSentence(string Text, string SourceId);

/// <summary>The Writer's report.</summary>
internal sealed record Report(string Kind, string Question, string Markdown, IReadOnlyList<CitedSource> Sources, string Generator, IReadOnlyList<string> MissingTasks, IReadOnlyList<TaskOutcome>? Tasks = null);

/// <summary>What was done for one task: the capability calls the Researcher made and what the data did not have.</summary>
internal sealed record TaskOutcome(string Id, string Text, string Capability, string? Aspect, IReadOnlyList<JsonElement> Calls, IReadOnlyList<string> NoData);

/// <summary>A source as numbered in the report.</summary>
internal sealed record CitedSource(int Number, string Id, string Title, string? Url);

/// <summary>Input of the <c>report.compose</c> capability.</summary>
internal sealed record ComposeInput(string Question, IReadOnlyList<Finding> Findings);
