using Microsoft.Extensions.Logging;

namespace Loom.Mcp.Internal;

internal static partial class Log
{
    [LoggerMessage(101, LogLevel.Information, "MCP server {Server} connected ({ServerName} {ServerVersion}); {Tools} tools registered as capabilities")]
    public static partial void ServerConnected(ILogger logger, string server, string serverName, string serverVersion, int tools);

    [LoggerMessage(102, LogLevel.Warning, "MCP server {Server} is down: {Reason}; its capabilities answer PROVIDER_UNAVAILABLE; reconnecting in {Delay}")]
    public static partial void ServerDown(ILogger logger, string server, string reason, TimeSpan delay);

    [LoggerMessage(103, LogLevel.Information, "MCP server {Server} tools changed: {Added} added, {Removed} removed, {Changed} changed")]
    public static partial void ToolsChanged(ILogger logger, string server, int added, int removed, int changed);

    [LoggerMessage(104, LogLevel.Warning, "MCP server {Server}: tool {Tool} has an input schema Loom cannot use ({Reason}); registered without input validation (the server validates)")]
    public static partial void SchemaFallback(ILogger logger, string server, string tool, string reason);

    [LoggerMessage(105, LogLevel.Warning, "MCP server {Server}: tool {Tool} skipped: {Reason}")]
    public static partial void ToolSkipped(ILogger logger, string server, string tool, string reason);

    [LoggerMessage(106, LogLevel.Debug, "MCP server {Server} stderr: {Line}")]
    public static partial void ServerStderr(ILogger logger, string server, string line);

    [LoggerMessage(107, LogLevel.Warning, "MCP server {Server}: refreshing the tool list failed: {Reason}")]
    public static partial void RefreshFailed(ILogger logger, string server, string reason);

    [LoggerMessage(110, LogLevel.Debug, "MCP exposure: the exposed capability set changed; notifying {Sessions} MCP sessions")]
    public static partial void ExposedToolsChanged(ILogger logger, int sessions);

    [LoggerMessage(111, LogLevel.Debug, "MCP exposure: notifying a session of a tool-list change failed: {Reason}")]
    public static partial void NotifyFailed(ILogger logger, string reason);

    [LoggerMessage(112, LogLevel.Warning, "MCP exposure: listing capabilities failed: {Reason}")]
    public static partial void ListFailed(ILogger logger, string reason);
}
