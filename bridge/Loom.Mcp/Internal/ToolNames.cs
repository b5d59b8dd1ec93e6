using System.Text;

namespace Loom.Mcp.Internal;

/// <summary>Capability names of ingested tools: <c>{server}:{tool}</c> within Loom's name rules.</summary>
internal static class ToolNames
{
    private const int MaxCapabilityName = 128;

    /// <summary>
    /// <c>{server}:{tool}</c>, with characters Loom names do not allow (anything but letters,
    /// digits, '_', '.', ':' and '-') replaced by '_' and the result cut to 128 characters.
    /// </summary>
    public static string Capability(string server, string tool)
    {
        var text = new StringBuilder(server.Length + 1 + tool.Length).Append(server).Append(':');
        foreach (var c in tool)
        {
            text.Append(char.IsAsciiLetterOrDigit(c) || c is '_' or '.' or '-' or ':' ? c : '_');
        }

        if (tool.Length == 0)
        {
            text.Append('_');
        }

        return text.Length <= MaxCapabilityName ? text.ToString() : text.ToString(0, MaxCapabilityName);
    }
}
