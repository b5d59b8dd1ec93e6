namespace Loom.Mcp;

/// <summary>State of one ingested MCP server.</summary>
/// <param name="Name">The configured name (capability prefix).</param>
/// <param name="Transport"><c>stdio</c> or <c>http</c>.</param>
/// <param name="State"><c>starting</c>, <c>connected</c>, <c>restarting</c> or <c>stopped</c>.</param>
/// <param name="Capabilities">Capability names registered for its tools (kept while it restarts).</param>
/// <param name="Restarts">Times the connection was lost or could not be made.</param>
/// <param name="LastError">Why it last went down, or null.</param>
public sealed record McpServerStatus(string Name, string Transport, string State, IReadOnlyList<string> Capabilities, int Restarts, string? LastError);
