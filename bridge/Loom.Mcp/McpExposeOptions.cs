namespace Loom.Mcp;

/// <summary>
/// Which Loom capabilities are served to MCP clients, by the bridge over streamable HTTP on its
/// HTTP/1.1 port and by <c>loom mcp</c> over stdio.
/// </summary>
public sealed record McpExposeOptions
{
    /// <summary>Whether the bridge serves MCP at <see cref="Path"/>. Default true.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Path of the streamable-HTTP endpoint on the bridge's HTTP port. Default <c>/mcp</c>.</summary>
    public string Path { get; init; } = "/mcp";

    /// <summary>
    /// Capability name patterns to expose: <c>*</c> matches any run of characters (dots and colons
    /// included), <c>?</c> one character, anything else itself, e.g. <c>math.*</c>,
    /// <c>fs:*</c>. Empty exposes every capability. Default <c>["*"]</c>.
    /// </summary>
    public IReadOnlyList<string> Include { get; init; } = ["*"];

    /// <summary>Patterns removed after <see cref="Include"/> (same syntax). Default none.</summary>
    public IReadOnlyList<string> Exclude { get; init; } = [];

    /// <summary>Deadline of a call from an MCP client through the ActionBroker. Default 60 s.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// How often the capability set is checked; connected clients get
    /// <c>notifications/tools/list_changed</c> when the exposed set changed. Default 1 s.
    /// </summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Checks the settings.</summary>
    /// <exception cref="ArgumentException">A setting is wrong; the message says which.</exception>
    public void Validate()
    {
        if (string.IsNullOrEmpty(Path) || Path[0] != '/')
        {
            throw new ArgumentException($"mcp.path '{Path}' must start with '/', e.g. '/mcp'.", nameof(Path));
        }

        if (CallTimeout <= TimeSpan.Zero || RefreshInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException("mcp call timeout and refresh interval must be positive.", nameof(CallTimeout));
        }

        foreach (var pattern in Include.Concat(Exclude))
        {
            if (string.IsNullOrWhiteSpace(pattern))
            {
                throw new ArgumentException("mcp include/exclude patterns must not be empty; use '*' for everything.", nameof(Include));
            }
        }
    }
}
