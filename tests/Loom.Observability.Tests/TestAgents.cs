using Loom.Sdk;

namespace Loom.Observability.Tests;

public sealed record EchoInput(string Text);

public sealed record EchoOutput(string Text);

public sealed class EchoAgent : Agent
{
    public override string Name => "echo";

    [Capability("obs.echo", Description = "Returns its input.")]
    public static EchoOutput Echo(EchoInput input) => new(input.Text);
}

public sealed class CallerAgent : Agent
{
    public override string Name => "caller";
}
