using System.CommandLine;
using Loom.Bridge;

namespace Loom.Cli.Commands;

/// <summary><c>loom token create</c>: mints a signed token for one agent with the bridge's key.</summary>
internal static class TokenCommand
{
    public static Command Create()
    {
        var agent = new Option<string>("--agent") { Description = "The identity: the only agent id the token may register.", Required = true, HelpName = "NAME" };
        var publish = new Option<string[]>("--allow-publish") { Description = "A topic pattern the agent may publish to (repeatable). Default: none recorded (every topic while permissions are not enforced).", HelpName = "PATTERN", AllowMultipleArgumentsPerToken = false };
        var subscribe = new Option<string[]>("--allow-subscribe") { Description = "A topic pattern the agent may subscribe to (repeatable).", HelpName = "PATTERN", AllowMultipleArgumentsPerToken = false };
        var expires = new Option<string>("--expires") { Description = "Lifetime: a number with s, m, h or d (e.g. 30m, 24h, 7d).", DefaultValueFactory = _ => "24h", HelpName = "DURATION" };
        var key = new Option<string?>("--token-key") { Description = "The bridge's key file (made 0600 when missing). Default .loom/keys/token.key.", HelpName = "FILE" };
        var admin = new Option<bool>("--admin") { Description = "An admin token (for the HTTP admin surface)." };
        foreach (var option in new[] { publish, subscribe })
        {
            option.Validators.Add(r =>
            {
                foreach (var pattern in r.GetValueOrDefault<string[]>() ?? [])
                {
                    if (Internal.ProjectFileLoader.TopicPatternProblem(pattern) is { } problem)
                    {
                        r.AddError($"{r.Option.Name} {problem}");
                    }
                }
            });
        }

        expires.Validators.Add(r =>
        {
            if (ParseDuration(r.GetValueOrDefault<string>() ?? "") is null)
            {
                r.AddError($"--expires takes a number with s, m, h or d (e.g. 24h), not '{r.GetValueOrDefault<string>()}'.");
            }
        });
        var create = new Command("create", "Print a token for one agent, signed with the bridge's key; give it to the agent as LOOM_TOKEN. The token is a secret: it is printed once and never logged.")
        {
            agent, publish, subscribe, expires, key, admin,
        };
        create.SetAction(async (parse, _) =>
        {
            var token = BridgeTokens.Create(
                Path.GetFullPath(parse.GetValue(key) ?? BridgeTokens.DefaultKeyFile),
                parse.GetValue(agent)!,
                parse.GetValue(publish) ?? [],
                parse.GetValue(subscribe) ?? [],
                ParseDuration(parse.GetValue(expires)!)!.Value,
                parse.GetValue(admin));
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
