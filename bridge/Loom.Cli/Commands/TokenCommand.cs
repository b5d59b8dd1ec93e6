using System.CommandLine;
using Loom.Bridge;

namespace Loom.Cli.Commands;

/// <summary><c>loom token create</c>: mints a signed token for one agent with the bridge's key.</summary>
internal static class TokenCommand
{
    public static Command Create()
    {
        var agent = Internal.CliOptions.Text("--agent", "The identity: the only agent id the token may register.", "NAME", "an agent id (letters, digits, '-', '_', '.', ':')", text => text.Length > 0 && text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':') ? null : "not an agent id", "a b");
        agent.Required = true;
        var publish = Internal.CliOptions.Texts("--allow-publish", "A topic pattern the agent may publish to (repeatable). Default: none recorded (every topic while permissions are not enforced).", "PATTERN", "a topic pattern such as orders.*.created or orders.>", Internal.ProjectFileLoader.TopicPatternReason, "a.>.b");
        var subscribe = Internal.CliOptions.Texts("--allow-subscribe", "A topic pattern the agent may subscribe to (repeatable).", "PATTERN", "a topic pattern such as orders.*.created or orders.>", Internal.ProjectFileLoader.TopicPatternReason, "a.>.b");
        var expires = Internal.CliOptions.Text("--expires", "Lifetime: a number with s, m, h or d (e.g. 30m, 24h, 7d).", "DURATION", "a number with s, m, h or d, such as 30m, 24h or 7d (at most 10 years)", text => ParseDuration(text) is null ? "not a duration" : null, "soon", "24h");
        var key = Internal.CliOptions.Text("--token-key", "The bridge's key file (made 0600 when missing). Default .loom/keys/token.key.", "FILE", "the path of a key file");
        var admin = Internal.CliOptions.Flag("--admin", "An admin token: the HTTP admin surface (/v1/*, /metrics, /mcp) and session ids in /v1/agents.");
        var readOnly = Internal.CliOptions.Flag("--read-only", "A read-only token: GET /v1/* and /metrics (for loom list, dashboards, Prometheus), not /mcp.");
        var create = new Command("create", "Print a token for one agent, signed with the bridge's key; give it to the agent as LOOM_TOKEN. The token is a secret: it is printed once and never logged.")
        {
            agent, publish, subscribe, expires, key, admin, readOnly,
        };
        create.SetAction(async (parse, _) =>
        {
            var token = BridgeTokens.Create(
                Path.GetFullPath(parse.GetValue(key) ?? BridgeTokens.DefaultKeyFile),
                parse.GetValue(agent)!,
                parse.GetValue(publish) ?? [],
                parse.GetValue(subscribe) ?? [],
                ParseDuration(parse.GetValue(expires)!)!.Value,
                parse.GetValue(admin),
                readOnly: parse.GetValue(readOnly));
            await Console.Out.WriteLineAsync(token);
            return 0;
        });
        return new Command("token", "Tokens for agents (see docs/security.md).") { create };
    }

    /// <summary>A lifetime such as 90s, 30m, 24h or 7d (1 second to 10 years); null when malformed.</summary>
    internal static TimeSpan? ParseDuration(string text)
    {
        if (text.Length < 2 || !long.TryParse(text.AsSpan(0, text.Length - 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) || n < 1)
        {
            return null;
        }

        TimeSpan? value = text[^1] switch
        {
            's' => TimeSpan.FromSeconds(n),
            'm' => TimeSpan.FromMinutes(n),
            'h' => TimeSpan.FromHours(n),
            'd' => TimeSpan.FromDays(n),
            _ => null,
        };
        return value is { } v && v <= TimeSpan.FromDays(3650) ? v : null;
    }
}
