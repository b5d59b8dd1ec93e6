using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk;

/// <summary>
/// A capability this agent provides: its descriptor (name, version, schemas) and the handler that
/// answers calls with UTF-8 JSON. The handler throws a <see cref="LoomException"/> for a typed
/// failure; any other exception becomes TOOL_ERROR with its message.
/// </summary>
/// <param name="Descriptor">What the bridge registers (and validates inputs against).</param>
/// <param name="Handler">Answers one call.</param>
public sealed record LoomCapability(
    CapabilityDescriptor Descriptor,
    Func<ActionInvocation, CancellationToken, ValueTask<ReadOnlyMemory<byte>>> Handler);
