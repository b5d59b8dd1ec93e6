using Loom.Sdk;

namespace Loom.Bench;

// The echo capability and a caller for it: used by the rpc bench and the soak's healthy callers,
// and linked into tests/Loom.Bridge.Tests for the fault battery.

public sealed record EchoInput(int Seq, string Text);

public sealed record EchoOutput(int Seq, string Text);

internal sealed class EchoAgent : Agent
{
    public override string Name => "bench-echo";

    [Capability("bench.echo", Description = "Returns its input.")]
    public static EchoOutput Echo(EchoInput input) => new(input.Seq, input.Text);
}

internal sealed class CallerAgent : Agent
{
    public override string Name => "bench-caller";
}
