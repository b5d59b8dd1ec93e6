using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;
using Microsoft.Extensions.Logging;

namespace Loom.Examples.Trio.Writer;

/// <summary>
/// Follows every thread's plan (<c>thread.*.broadcast</c>) and findings (<c>thread.*.reply</c>);
/// once every task of a plan has a finding (or the deadline passes), composes the report and
/// broadcasts it on the thread. Also serves <c>report.compose</c> for direct calls.
/// </summary>
internal sealed partial class WriterAgent(ILogger logger, TimeSpan findingsDeadline) : Agent
{
    private const string WritingPrompt = "You write short research reports in markdown. Use only the numbered sources given. Put a citation like [2] after every sentence that uses a source. Do not invent sources or facts. End with a '## Sources' list copied from the input.";
    private readonly ConcurrentDictionary<string, ThreadState> _threads = new(StringComparer.Ordinal);

    // Set once the bridge said it serves no llm.chat (loom.yaml without an llm: section): offline from then on.
    private volatile bool _noGateway;

    public override string Name => "writer";

    public override IEnumerable<string> Topics => ["thread.*.broadcast", "thread.*.reply"];

    [GeneratedRegex(@"\[(\d+)\]")]
    private static partial Regex CitationMarker();

    [Capability("report.compose", Description = "Composes a cited markdown report from research findings (offline extractive unless the bridge has an LLM gateway).", Tags = ["trio", "writer"])]
    public async Task<Report> ComposeAsync(ComposeInput input, AgentContext context, CancellationToken cancellationToken)
    {
        var plan = new Plan("plan", input.Question, input.Findings.Select(f => new PlanTask(f.TaskId, f.Question, "web.search")).ToList());
        return await WriteAsync(context, "", plan, input.Findings, [], cancellationToken).ConfigureAwait(false);
    }

    public override async Task OnEventAsync(AgentContext context, Envelope envelope, CancellationToken cancellationToken)
    {
        var kind = System.Text.Json.JsonDocument.Parse(envelope.Payload.Memory).RootElement.TryGetProperty("kind", out var k) ? k.GetString() : null;
        var threadId = envelope.ThreadId.Length > 0 ? envelope.ThreadId : envelope.Topic.Split('.')[1];
        switch (kind)
        {
            case "plan":
            {
                var plan = envelope.PayloadAs<Plan>(TrioJson.Options)!;
                var state = Track(context, threadId, cancellationToken);
                state.Plan = plan;
                LogPlan(logger, threadId, plan.Tasks.Count);
                await TryFinishAsync(context, threadId, state, force: false, cancellationToken).ConfigureAwait(false);
                break;
            }

            case "finding":
            {
                var finding = envelope.PayloadAs<Finding>(TrioJson.Options)!;
                var state = Track(context, threadId, cancellationToken);
                state.Findings[finding.TaskId] = finding;
                LogFinding(logger, threadId, finding.TaskId, finding.Sources.Count);
                await TryFinishAsync(context, threadId, state, force: false, cancellationToken).ConfigureAwait(false);
                break;
            }

            default:
                break; // Reports (ours) and other chatter on the thread.
        }
    }

    // Every tracked thread gets one deadline from its first event, so a thread whose plan never
    // comes (findings alone) is dropped too and the table stays bounded by the traffic of one deadline.
    private ThreadState Track(AgentContext context, string threadId, CancellationToken cancellationToken)
    {
        var created = new ThreadState();
        var state = _threads.GetOrAdd(threadId, created);
        if (ReferenceEquals(state, created))
        {
            _ = DeadlineAsync(context, threadId, state, cancellationToken);
        }

        return state;
    }

    private async Task DeadlineAsync(AgentContext context, string threadId, ThreadState state, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(findingsDeadline, cancellationToken).ConfigureAwait(false);
            await TryFinishAsync(context, threadId, state, force: true, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // The agent is stopping.
        }
    }

    private async Task TryFinishAsync(AgentContext context, string threadId, ThreadState state, bool force, CancellationToken cancellationToken)
    {
        if (state.Plan is not { } plan)
        {
            if (force)
            {
                _threads.TryRemove(threadId, out _); // findings for a plan we never saw
            }

            return;
        }

        var missing = plan.Tasks.Where(t => !state.Findings.ContainsKey(t.Id)).Select(t => t.Id).ToList();
        if ((missing.Count > 0 && !force) || Interlocked.Exchange(ref state.Finished, 1) == 1)
        {
            return;
        }

        var findings = plan.Tasks.Select(t => state.Findings.GetValueOrDefault(t.Id)).OfType<Finding>().ToList();
        var report = await WriteAsync(context, threadId, plan, findings, missing, cancellationToken).ConfigureAwait(false);
        await context.EmitAsync($"thread.{threadId}.broadcast", report, new EmitOptions { ThreadId = threadId }, cancellationToken).ConfigureAwait(false);
        LogReport(logger, threadId, report.Sources.Count, report.Generator);
        _threads.TryRemove(threadId, out _);
    }

    /// <summary>
    /// The offline report, or, when the bridge has an LLM gateway (loom.yaml <c>llm:</c>), the
    /// model's report through <c>llm.chat</c> (charged to the thread) if every citation in it is a
    /// listed source; otherwise the offline one, and the generator says why.
    /// </summary>
    private async Task<Report> WriteAsync(AgentContext context, string threadId, Plan plan, IReadOnlyList<Finding> findings, IReadOnlyList<string> missing, CancellationToken cancellationToken)
    {
        var offline = ReportComposer.Compose(plan, findings, missing);
        if (_noGateway || offline.Sources.Count == 0)
        {
            return offline; // nothing to write from: the offline report says so plainly
        }

        var sources = new StringBuilder();
        foreach (var source in offline.Sources)
        {
            sources.Append(CultureInfo.InvariantCulture, $"[{source.Number}] {source.Title} ({source.Id})\n");
            foreach (var finding in findings)
            {
                foreach (var sentence in finding.Sentences ?? [])
                {
                    if (sentence.SourceId == source.Id)
                    {
                        sources.Append(CultureInfo.InvariantCulture, $"    - {sentence.Text}\n");
                    }
                }

                if (finding.Weather is not null && finding.Sources.Any(s => s.Id == source.Id))
                {
                    sources.Append(CultureInfo.InvariantCulture, $"    - {finding.Answer}\n");
                }
            }
        }

        var request = new LlmChatRequest
        {
            Messages =
            [
                LlmMessage.System(WritingPrompt),
                LlmMessage.User($"Question: {plan.Question}\nSub-questions: {string.Join("; ", plan.Tasks.Select(t => t.Text))}\n\nSources:\n{sources}"),
            ],
            Temperature = 0.2,
            MaxTokens = 1500,
        };
        LlmChatResult answer;
        try
        {
            answer = await context.Llm.ChatAsync(request, TimeSpan.FromSeconds(90), threadId.Length > 0 ? new InvokeOptions { ThreadId = threadId } : null, cancellationToken).ConfigureAwait(false);
        }
        catch (CapabilityNotFoundException)
        {
            _noGateway = true; // no llm: section in loom.yaml: write offline, as without a gateway
            return offline;
        }
        catch (LoomException ex)
        {
            LogLlmFailed(logger, ErrorCodes.Name(ex.Code), ex.Message);
            return offline with { Generator = $"{ReportComposer.OfflineGenerator}; llm.chat failed: {ErrorCodes.Name(ex.Code)}" };
        }

        var described = $"llm.chat ({answer.Model}{(answer.Cached ? ", cached" : "")})";
        var cited = CitationMarker().Matches(answer.Content).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
        if (cited.Count == 0 || cited.Any(n => n < 1 || n > offline.Sources.Count))
        {
            LogLlmRejected(logger, described);
            return offline with { Generator = $"{ReportComposer.OfflineGenerator}; the {described} answer cited no valid source" };
        }

        return offline with { Markdown = answer.Content.TrimEnd() + "\n", Generator = described };
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "thread {ThreadId}: plan with {Tasks} tasks")]
    private static partial void LogPlan(ILogger logger, string threadId, int tasks);

    [LoggerMessage(Level = LogLevel.Information, Message = "thread {ThreadId}: finding for {TaskId} with {Sources} sources")]
    private static partial void LogFinding(ILogger logger, string threadId, string taskId, int sources);

    [LoggerMessage(Level = LogLevel.Information, Message = "thread {ThreadId}: report broadcast with {Sources} sources ({Generator})")]
    private static partial void LogReport(ILogger logger, string threadId, int sources, string generator);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Llm} returned no usable citations; using the offline report")]
    private static partial void LogLlmRejected(ILogger logger, string llm);

    [LoggerMessage(Level = LogLevel.Warning, Message = "llm.chat failed ({Code}: {Reason}); using the offline report")]
    private static partial void LogLlmFailed(ILogger logger, string code, string reason);

    private sealed class ThreadState
    {
        public volatile Plan? Plan;
        public int Finished;

        public ConcurrentDictionary<string, Finding> Findings { get; } = new(StringComparer.Ordinal);
    }
}
