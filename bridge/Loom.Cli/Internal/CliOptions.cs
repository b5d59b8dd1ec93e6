using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Loom.Cli.Internal;

/// <summary>
/// What the value of an option (or argument) must look like, in words (<see cref="Expected"/>,
/// e.g. "a port number from 0 to 65535"), and one value it refuses (<see cref="Refused"/>; null
/// when it takes any text, e.g. an agent id). A flag (<see cref="IsFlag"/>) takes no value.
/// </summary>
internal sealed record ValueForm(string Expected, string? Refused, bool IsFlag = false);

/// <summary>
/// Every option and argument of every command is made here, so that each knows the form of its
/// value, and a bad or missing value, an unknown option or a stray argument all become one line
/// (<see cref="CliErrors.Describe"/>) and exit code 2, whichever command it is.
/// </summary>
internal static class CliOptions
{
    private static readonly ConditionalWeakTable<Symbol, ValueForm> Forms = new();

    /// <summary>The form registered for an option or argument; null for one not made here (--help, --version).</summary>
    public static ValueForm? FormOf(Symbol symbol) => Forms.TryGetValue(symbol, out var form) ? form : null;

    /// <summary>A whole number from <paramref name="min"/> to <paramref name="max"/>.</summary>
    public static Option<int> Int(string name, int min, int max, int defaultValue, string description, string helpName = "N", string? unit = null)
    {
        var expected = string.Create(CultureInfo.InvariantCulture, $"a whole number{(unit is null ? "" : " of " + unit)} from {min} to {max}");
        return Parsed(name, description, helpName, new ValueForm(expected, "x1"), defaultValue, text =>
            int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max ? value : null);
    }

    /// <summary>A TCP port; 0 picks a free one.</summary>
    public static Option<int> Port(string name, int defaultValue, string description) =>
        Parsed(name, description, "PORT", new ValueForm("a port number from 0 to 65535 (0 picks a free one)", "abc"), defaultValue, text =>
            int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value <= 65535 ? value : null);

    /// <summary>One of an enumeration's names (any case).</summary>
    public static Option<T> Enum<T>(string name, T defaultValue, string description, params T[] allowed)
        where T : struct, Enum
    {
        var names = (allowed.Length > 0 ? allowed : System.Enum.GetValues<T>()).Select(v => v.ToString()).ToArray();
        return Parsed(name, description, string.Join("|", names), new ValueForm("one of " + string.Join(", ", names), "loud"), defaultValue, text =>
            names.FirstOrDefault(n => string.Equals(n, text.Trim(), StringComparison.OrdinalIgnoreCase)) is { } match ? System.Enum.Parse<T>(match) : null);
    }

    /// <summary>
    /// <c>true</c> or <c>false</c> (read it with <see cref="BoolValue"/>; null when not given). A
    /// string option: System.CommandLine would leave a word that is not a boolean unconsumed.
    /// </summary>
    public static Option<string?> Boolean(string name, string description) =>
        Text(name, description, "true|false", "true or false", text => bool.TryParse(text.Trim(), out _) ? null : "not a boolean", "maybe");

    /// <summary>The value of a <see cref="Boolean"/> option.</summary>
    public static bool? BoolValue(string? text) => text is null ? null : bool.Parse(text.Trim());

    /// <summary>A switch: present or not (<c>--json</c>; <c>--json=false</c> is accepted too).</summary>
    public static Option<bool> Flag(string name, string description)
    {
        var option = new Option<bool>(name) { Description = description };
        return Register(option, new ValueForm("no value (or =true, =false)", "maybe", IsFlag: true));
    }

    /// <summary>An absolute http:// or https:// URL; null when not given.</summary>
    public static Option<string?> Url(string name, string description, string example)
    {
        var expected = $"an absolute http:// or https:// URL such as {example}";
        var option = new Option<string?>(name) { Description = description, HelpName = "URL" };
        option.CustomParser = r =>
        {
            if (r.Tokens.Count == 0)
            {
                return null;
            }

            var text = r.Tokens[0].Value;
            if (Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https" && uri.Host.Length > 0)
            {
                return text;
            }

            r.AddError(Bad(name, expected, text));
            return null;
        };
        return Register(option, new ValueForm(expected, "127.0.0.1:7070"));
    }

    /// <summary>
    /// Text; <paramref name="problem"/> (when given) says what is wrong with a value (null when
    /// nothing), and <paramref name="refused"/> is a value it refuses.
    /// </summary>
    public static Option<string?> Text(string name, string description, string helpName, string expected, Func<string, string?>? problem = null, string? refused = null, string? defaultValue = null)
    {
        var option = new Option<string?>(name) { Description = description, HelpName = helpName };
        if (defaultValue is not null)
        {
            option.DefaultValueFactory = _ => defaultValue;
        }

        option.CustomParser = r =>
        {
            if (r.Tokens.Count == 0)
            {
                return defaultValue;
            }

            var text = r.Tokens[0].Value;
            if (problem?.Invoke(text) is { } wrong)
            {
                r.AddError(Bad(name, expected, text, wrong));
                return defaultValue;
            }

            return text;
        };
        return Register(option, new ValueForm(expected, refused));
    }

    /// <summary>A repeatable text option (one value per occurrence, or several with <paramref name="severalPerOccurrence"/>), each value checked as <see cref="Text"/> does.</summary>
    public static Option<string[]> Texts(string name, string description, string helpName, string expected, Func<string, string?>? problem = null, string? refused = null, bool severalPerOccurrence = false)
    {
        var option = new Option<string[]>(name) { Description = description, HelpName = helpName, AllowMultipleArgumentsPerToken = severalPerOccurrence, Arity = ArgumentArity.OneOrMore };
        option.CustomParser = r =>
        {
            var values = new List<string>();
            foreach (var token in r.Tokens)
            {
                if (problem?.Invoke(token.Value) is { } wrong)
                {
                    r.AddError(Bad(name, expected, token.Value, wrong));
                    return [];
                }

                values.Add(token.Value);
            }

            return [.. values];
        };
        return Register(option, new ValueForm(expected, refused));
    }

    /// <summary>A bridge limit (<c>loom up --max-sessions N</c>), kept as text and parsed by <see cref="BridgeLimit.TryParse"/>.</summary>
    public static Option<string?> Limit(BridgeLimit limit)
    {
        var option = new Option<string?>(limit.Flag)
        {
            Description = limit.Unit == LimitUnit.Bytes ? limit.Help + " Bytes, or with KiB, MiB, GiB or TiB (e.g. 64MiB)." : limit.Help,
            HelpName = limit.Unit switch { LimitUnit.Bytes => "BYTES", LimitUnit.Milliseconds => "MS", _ => "N" },
        };
        var expected = limit.Expected;
        option.CustomParser = r =>
        {
            if (r.Tokens.Count == 0)
            {
                return null;
            }

            var text = r.Tokens[0].Value;
            if (!limit.TryParse(text, out _, out _))
            {
                r.AddError(Bad(limit.Flag, expected, text));
                return null;
            }

            return text;
        };
        return Register(option, new ValueForm(expected, limit.Unit == LimitUnit.Bytes ? "64MB" : "-1"));
    }

    /// <summary>A positional argument that is one of <paramref name="choices"/>.</summary>
    public static Argument<string> Choice(string name, string description, IReadOnlyList<string> choices)
    {
        var expected = "one of " + string.Join(", ", choices);
        var argument = new Argument<string>(name) { Description = description, HelpName = string.Join("|", choices) };
        argument.CustomParser = r =>
        {
            var text = r.Tokens.Count == 0 ? "" : r.Tokens[0].Value;
            if (!choices.Contains(text, StringComparer.Ordinal))
            {
                r.AddError(Bad(name.ToUpperInvariant(), expected, text));
            }

            return text;
        };
        return Register(argument, new ValueForm(expected, "cobol"));
    }

    /// <summary>A positional argument taking text (a name, a directory); <paramref name="problem"/> as for <see cref="Text"/>.</summary>
    public static Argument<string> Positional(string name, string description, string expected, string? defaultValue = null, Func<string, string?>? problem = null, string? refused = null)
    {
        var argument = new Argument<string>(name) { Description = description, HelpName = name.ToUpperInvariant() };
        if (defaultValue is not null)
        {
            argument.DefaultValueFactory = _ => defaultValue;
        }

        if (problem is not null)
        {
            argument.CustomParser = r =>
            {
                var text = r.Tokens.Count == 0 ? defaultValue ?? "" : r.Tokens[0].Value;
                if (problem(text) is { } wrong)
                {
                    r.AddError(Bad(name.ToUpperInvariant(), expected, text, wrong));
                }

                return text;
            };
        }

        return Register(argument, new ValueForm(expected, refused));
    }

    /// <summary>
    /// An option of a value type: <paramref name="parse"/> returns the value, or null for text it
    /// refuses (then the error is one line naming the option and <paramref name="form"/>).
    /// </summary>
    private static Option<T> Parsed<T>(string name, string description, string helpName, ValueForm form, T defaultValue, Func<string, T?> parse)
        where T : struct
    {
        var option = new Option<T>(name) { Description = description, HelpName = helpName, DefaultValueFactory = _ => defaultValue };
        option.CustomParser = r =>
        {
            if (r.Tokens.Count == 0)
            {
                return defaultValue;
            }

            var text = r.Tokens[0].Value;
            if (parse(text) is { } value)
            {
                return value;
            }

            r.AddError(Bad(name, form.Expected, text));
            return defaultValue;
        };
        return Register(option, form);
    }

    /// <summary>The one-line message for a bad value.</summary>
    public static string Bad(string name, string expected, string given, string? problem = null) =>
        $"{name}: expected {expected}, got '{given}'{(problem is null or "not a boolean" or "empty" or "not an address" or "not a valid agent name" ? "" : " (" + problem.TrimEnd('.') + ")")}";

    private static T Register<T>(T symbol, ValueForm form)
        where T : Symbol
    {
        Forms.AddOrUpdate(symbol, form);
        return symbol;
    }
}

/// <summary>Parse errors as the one line a user reads: the command, the option, what it takes and what was given.</summary>
internal static class CliErrors
{
    /// <summary>One line describing the first error of <paramref name="parse"/> (it has at least one).</summary>
    public static string Describe(ParseResult parse)
    {
        var command = CommandPath(parse.CommandResult);
        var help = $"(see '{command} --help')";
        var error = parse.Errors[0];
        string message;
        if (SymbolOf(error.SymbolResult) is { } symbol && CliOptions.FormOf(symbol) is { } form)
        {
            var name = symbol is Option option ? option.Name : symbol.Name.ToUpperInvariant();
            var given = (error.SymbolResult as ArgumentResult)?.Tokens is { Count: > 0 } tokens ? tokens[0].Value : null;
            if (error.Message.StartsWith(name + ": expected ", StringComparison.Ordinal))
            {
                message = error.Message; // ours, from the option's parser
            }
            else if (error.Message.StartsWith("Required argument missing", StringComparison.Ordinal) || given is null)
            {
                message = symbol is Option ? $"{name} needs a value: {form.Expected} {help}" : $"missing {name}: {form.Expected} {help}";
            }
            else
            {
                message = CliOptions.Bad(name, form.Expected, given);
            }
        }
        else if (parse.UnmatchedTokens.Count > 0)
        {
            var token = parse.UnmatchedTokens[0];
            message = token.StartsWith('-')
                ? $"unknown option '{token}' {help}"
                : parse.CommandResult.Command is RootCommand root
                    ? $"unknown command '{token}' (one of {string.Join(", ", root.Subcommands.Select(c => c.Name).Append("pack"))}) {help}"
                : FlagBefore(parse, token) is { } flag
                    ? $"{flag.Name} takes no value, got '{token}' {help}"
                    : $"unexpected argument '{token}' {help}";
        }
        else
        {
            message = $"{error.Message} {help}";
        }

        return $"{command}: {OneLine(message)}";
    }

    /// <summary>"loom up", "loom new": the command as typed.</summary>
    public static string CommandPath(CommandResult? result)
    {
        var names = new List<string>();
        for (SymbolResult? r = result; r is not null; r = r.Parent)
        {
            if (r is CommandResult c)
            {
                names.Add(c.Command is RootCommand ? "loom" : c.Command.Name);
            }
        }

        names.Reverse();
        return names.Count == 0 ? "loom" : string.Join(' ', names);
    }

    /// <summary>Newlines and tabs (some built-in messages list choices on lines of their own) as spaces.</summary>
    public static string OneLine(string text) =>
        string.Join(' ', text.Split(['\r', '\n', '\t'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>The flag (<c>--json</c>) just before <paramref name="token"/> on the command line (<c>--json=x</c>, <c>--json x</c>), if any.</summary>
    private static Option? FlagBefore(ParseResult parse, string token)
    {
        for (var i = 1; i < parse.Tokens.Count; i++)
        {
            if (parse.Tokens[i].Value == token && parse.Tokens[i - 1].Type == TokenType.Option)
            {
                var name = parse.Tokens[i - 1].Value;
                return parse.CommandResult.Command.Options.FirstOrDefault(o => (o.Name == name || o.Aliases.Contains(name)) && CliOptions.FormOf(o) is { IsFlag: true });
            }
        }

        return null;
    }

    private static Symbol? SymbolOf(SymbolResult? result) => result switch
    {
        OptionResult o => o.Option,
        ArgumentResult a when a.Parent is OptionResult o => o.Option,
        ArgumentResult a => a.Argument,
        _ => null,
    };
}
