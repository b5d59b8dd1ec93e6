using System.CommandLine;
using Loom.Cli.Internal;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// Every option and argument of every command, walked from the tree the CLI itself parses with
/// (<see cref="Program.BuildRoot"/>): a bad value, a missing value, an unknown option and a stray
/// word each give one line on stderr naming the option and the form it takes, and exit code 2,
/// from the real CLI process. An option added without a form (<see cref="CliOptions"/>) fails
/// <see cref="Every_option_and_argument_declares_the_form_of_its_value"/>, and any option added
/// gets the cases below without editing this file.
/// </summary>
public sealed class OptionTests : IDisposable
{
    // Values for the positional arguments a command needs before its options can be tried.
    private static readonly Dictionary<string, string[]> Positionals = new(StringComparer.Ordinal)
    {
        ["new"] = ["python", "probe"],
        ["inspect"] = ["t-probe"],
    };

    private readonly string _temp = Directory.CreateTempSubdirectory("loom-options-").FullName;

    public OptionTests()
    {
        // run and dev read a project before their parameters; its one agent would finish at once.
        File.WriteAllText(Path.Combine(_temp, "loom.yaml"), "agents:\n  - name: probe\n    command: \"true\"\n");
    }

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    /// <summary>The commands the option walk covers: all but bench (whose options are the benchmark program's).</summary>
    private static IEnumerable<Command> Commands() => Program.BuildRoot().Subcommands.Where(c => c.Name != "bench");

    private static IEnumerable<Option> OptionsOf(Command command) =>
        command.Options.Where(o => o is not System.CommandLine.Help.HelpOption and not VersionOption);

    /// <summary>(command, arguments, what the one line must contain) for every option and argument.</summary>
    public static TheoryData<string, string[], string> BadCommandLines()
    {
        var cases = new TheoryData<string, string[], string>();
        foreach (var command in Commands())
        {
            var prefix = Positionals.GetValueOrDefault(command.Name, []);
            string[] Line(params string[] rest) => [command.Name, .. prefix, .. rest];
            cases.Add(command.Name, Line("--no-such-option"), "unknown option '--no-such-option'");
            foreach (var option in OptionsOf(command))
            {
                var form = CliOptions.FormOf(option)!;
                if (form.IsFlag)
                {
                    cases.Add(command.Name, Line($"{option.Name}={form.Refused}"), $"{option.Name} takes no value, got '{form.Refused}'");
                    continue;
                }

                if (form.Refused is { } refused)
                {
                    cases.Add(command.Name, Line(option.Name, refused), $"{option.Name}: expected {form.Expected}, got '{refused}'");
                }

                cases.Add(command.Name, Line(option.Name), $"{option.Name} needs a value: {form.Expected}");
            }

            for (var i = 0; i < command.Arguments.Count; i++)
            {
                var form = CliOptions.FormOf(command.Arguments[i])!;
                var name = command.Arguments[i].Name.ToUpperInvariant();
                if (form.Refused is { } refused)
                {
                    var args = prefix.ToArray();
                    args[i] = refused;
                    cases.Add(command.Name, [command.Name, .. args], $"{name}: expected {form.Expected}, got '{refused}'");
                }

                if (!command.Arguments[i].HasDefaultValue)
                {
                    cases.Add(command.Name, [command.Name, .. prefix.Take(i)], $"missing {name}: {form.Expected}");
                }
            }
        }

        return cases;
    }

    [Fact]
    public void Every_option_and_argument_declares_the_form_of_its_value()
    {
        var missing = new List<string>();
        foreach (var command in Commands())
        {
            missing.AddRange(OptionsOf(command).Where(o => CliOptions.FormOf(o) is null).Select(o => $"loom {command.Name} {o.Name}"));
            missing.AddRange(command.Arguments.Where(a => CliOptions.FormOf(a) is null).Select(a => $"loom {command.Name} {a.Name.ToUpperInvariant()}"));
            var required = command.Arguments.Count(a => !a.HasDefaultValue);
            Assert.True(Positionals.GetValueOrDefault(command.Name, []).Length >= required, $"loom {command.Name} takes {required} required argument(s): give valid values in OptionTests.Positionals");
        }

        Assert.True(missing.Count == 0, "made without Internal.CliOptions (so no form to report): " + string.Join(", ", missing));
        Assert.True(BadCommandLines().Count > 60, "the walk found too few options");
    }

    [Theory]
    [MemberData(nameof(BadCommandLines))]
    public async Task A_bad_command_line_is_one_line_naming_the_option_and_its_form_and_exit_2(string command, string[] args, string expected)
    {
        await using var cli = CliProcess.Start(_temp, null, args);
        var code = await cli.WaitForExitAsync(TimeSpan.FromSeconds(60));
        var lines = cli.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var shown = $"loom {string.Join(' ', args)} → exit {code}:\n{cli.Output}";
        Assert.True(code == 2, shown);
        var line = Assert.Single(lines);
        Assert.StartsWith($"[stderr] loom {command}: ", line, StringComparison.Ordinal);
        Assert.Contains(expected, line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unknown_command_is_one_line_listing_the_commands()
    {
        var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, "lsit");
        Assert.Equal(2, code);
        Assert.Equal("[stderr] loom: unknown command 'lsit' (one of up, run, dev, list, logs, inspect, new, bench, mcp, certs, token, pack) (see 'loom --help')", output.Trim());
    }

    [Theory]
    [InlineData("--out", "loom pack: --out needs a value: a directory path")]
    [InlineData("--fast", "loom pack: unknown option '--fast'")]
    [InlineData("cobol", "loom pack: LANGUAGE: expected one of python, ts, dotnet, got 'cobol'")]
    public async Task Pack_a_shell_script_refuses_bad_arguments_the_same_way(string arg, string expected)
    {
        // loom pack is run by the ./loom script (bridge/Loom.Cli/pack-sdks.sh), not by the CLI's parser.
        var info = new System.Diagnostics.ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Path.Combine(CliProcess.RepoRoot, "bridge", "Loom.Cli", "pack-sdks.sh"));
        info.ArgumentList.Add(arg);
        using var pack = System.Diagnostics.Process.Start(info)!;
        var stdout = pack.StandardOutput.ReadToEndAsync();
        var stderr = await pack.StandardError.ReadToEndAsync();
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await pack.WaitForExitAsync(deadline.Token);
        Assert.Equal(2, pack.ExitCode);
        Assert.Equal("", await stdout);
        Assert.StartsWith(expected, Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_project_directory_or_file_says_what_is_missing_in_one_line()
    {
        Directory.CreateDirectory(Path.Combine(_temp, "empty"));
        foreach (var (args, expected) in new (string[], string)[]
        {
            (["run", "../nowhere"], "loom run: no loom.yaml in ../nowhere (the directory does not exist)"),
            (["dev", "nowhere/loom.yaml"], "loom dev: nowhere/loom.yaml does not exist (the directory nowhere does not exist)"),
            (["run", "empty"], "loom run: no loom.yaml in empty; create one (see 'loom new') or pass the path of the file"),
            (["up", "--config", "nowhere.yaml"], "loom up: nowhere.yaml does not exist"),
        })
        {
            var (code, output) = await CliProcess.RunAsync(_temp, TimeSpan.FromSeconds(60), null, args);
            Assert.True(code == 2, $"loom {string.Join(' ', args)} → exit {code}:\n{output}");
            Assert.Equal("[stderr] " + expected, output.Trim());
        }
    }
}
