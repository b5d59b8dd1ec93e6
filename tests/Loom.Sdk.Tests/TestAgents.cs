using System.Collections.Concurrent;
using System.ComponentModel;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Tests;

[Description("Two integers to add.")]
public sealed record AddInput([property: Description("The first addend.")] int A, int B);

public sealed record AddOutput(int Sum);

/// <summary>The agent under test: runs unchanged against a bridge and in-process.</summary>
public sealed class MathAgent : Agent
{
    public ConcurrentQueue<Envelope> Events { get; } = new();

    public TaskCompletionSource SlowStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private int _calls;

    public int Calls => Volatile.Read(ref _calls);

    public override IEnumerable<string> Topics => ["math.events.>"];

    public override Task OnEventAsync(AgentContext context, Envelope envelope, CancellationToken cancellationToken)
    {
        Events.Enqueue(envelope);
        return Task.CompletedTask;
    }

    [Capability("math.add", Description = "Adds two integers.", Version = "1.2.0")]
    public AddOutput Add(AddInput input)
    {
        Interlocked.Increment(ref _calls);
        return new AddOutput(input.A + input.B);
    }

    [Capability("math.fail", Description = "Always fails.")]
    public static Task<AddOutput> Fail(AddInput input) => throw new InvalidOperationException($"boom: cannot do {input.A}");

    [Capability("math.slow", Description = "Waits until cancelled.")]
    public async ValueTask<AddOutput> SlowAsync(AddInput input, CancellationToken cancellationToken)
    {
        SlowStarted.TrySetResult();
        await Task.Delay(Timeout.Infinite, cancellationToken);
        return new AddOutput(input.A);
    }

    [Capability("math.whoami")]
    public static string WhoAmI(AgentContext context, ActionInvocation invocation) => $"{context.AgentId} for {invocation.Caller}";

    [Capability("math.strict")]
    public static AddOutput Strict(AddInput input) => throw new InvalidParamsException("b must not be zero", "/b");
}

/// <summary>An agent with no handlers: used for its context.</summary>
public sealed class ClientAgent : Agent
{
}

/// <summary>Answers requests on svc.echo; replies after a delay on svc.slow.</summary>
public sealed class EchoAgent : Agent
{
    public override IEnumerable<string> Topics => ["svc.echo", "svc.slow"];

    public override async Task OnEventAsync(AgentContext context, Envelope envelope, CancellationToken cancellationToken)
    {
        if (envelope.Topic == "svc.slow")
        {
            await Task.Delay(TimeSpan.FromMilliseconds(400), cancellationToken);
        }

        await context.ReplyAsync(envelope, new EchoReply(envelope.PayloadText(), envelope.Sender), cancellationToken: cancellationToken);
    }
}

public sealed record EchoReply(string Text, string From);

/// <summary>Collects every event of its topics.</summary>
public sealed class CollectorAgent(params string[] topics) : Agent
{
    public ConcurrentQueue<Envelope> Events { get; } = new();

    public override IEnumerable<string> Topics => topics;

    public override SubscribeOptions? GetTopicOptions(string pattern) => new() { Qos = QosClass.Batch };

    public override Task OnEventAsync(AgentContext context, Envelope envelope, CancellationToken cancellationToken)
    {
        Events.Enqueue(envelope);
        return Task.CompletedTask;
    }
}
