namespace Loom.Sdk;

/// <summary>
/// Marks an <see cref="Agent"/> method as a capability other agents can call. The method takes at
/// most one input (any JSON-serializable type) plus, optionally, a <see cref="CancellationToken"/>,
/// the <see cref="AgentContext"/> and the <see cref="Loom.Core.ActionInvocation"/>; it returns a
/// value, <c>Task&lt;T&gt;</c> or <c>ValueTask&lt;T&gt;</c> (or nothing). Input and output JSON Schemas
/// are generated from the signature; the bridge validates inputs against them.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = true)]
public sealed class CapabilityAttribute : Attribute
{
    /// <param name="name">Capability name, e.g. <c>web.search</c> (letters, digits, <c>_ . : -</c>; up to 128).</param>
    public CapabilityAttribute(string name)
    {
        Name = name;
    }

    /// <summary>Capability name.</summary>
    public string Name { get; }

    /// <summary>What it does, for people and for models choosing a tool. Default none.</summary>
    public string? Description { get; set; }

    /// <summary>Semver version. Default null: <c>1.0.0</c>.</summary>
    public string? Version { get; set; }

    /// <summary>Free-form tags. Default none.</summary>
    public string[]? Tags { get; set; }

    /// <summary>Relative cost, for the lowest-cost routing policy. Default 0.</summary>
    public double CostHint { get; set; }

    /// <summary>Expected latency in milliseconds, seeding the least-latency policy. Default 0.</summary>
    public int LatencyHintMs { get; set; }

    /// <summary>Most calls this agent answers at once. Default 0: unlimited.</summary>
    public int MaxConcurrency { get; set; }
}
