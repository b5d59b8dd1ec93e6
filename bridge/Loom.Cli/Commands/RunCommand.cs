using System.CommandLine;
using System.Runtime.InteropServices;
using Loom.Cli.Internal;

namespace Loom.Cli.Commands;

/// <summary><c>loom run DIR</c> and <c>loom dev DIR</c>: run the project a loom.yaml declares.</summary>
internal static class RunCommand
{
    public static Command Create(bool dev)
    {
        var directory = CliOptions.Positional("dir", "Directory holding loom.yaml (or the path of the file).", "a directory holding loom.yaml, or the path of the file", ".");
        // The directory is told apart from the project parameters by SplitArguments.
        var url = CliOptions.Url("--url", "gRPC address of a running bridge to use instead of starting one (e.g. http://127.0.0.1:7070).", "http://127.0.0.1:7070");
        var httpUrl = CliOptions.Url("--http-url", "HTTP address of that bridge, to report when agents connect (e.g. http://127.0.0.1:7071).", "http://127.0.0.1:7071");
        var readyTimeout = CliOptions.Int("--ready-timeout", 1, 86_400, 60, "Seconds to wait for every agent to connect before warning.", "S", "seconds");
        var command = new Command(
            dev ? "dev" : "run",
            dev
                ? "Like run, and restarts an agent when files under its directory change. Project parameters are given as --NAME VALUE."
                : "Run the agents a loom.yaml declares against a bridge (started here unless --url), with prefixed logs; Ctrl+C stops everything. Project parameters are given as --NAME VALUE (see the file's params).")
        {
            directory, url, httpUrl, readyTimeout,
        };
        // Project parameters (--NAME VALUE) are read once the project file says which there are.
        command.TreatUnmatchedTokensAsErrors = false;
        command.SetAction(async (parse, cancellationToken) =>
        {
            var name = dev ? "loom dev" : "loom run";
            if (!SplitArguments(parse, out var path, out var parameterTokens, out var problem))
            {
                await Console.Error.WriteLineAsync($"{name}: {problem} (see '{name} --help')");
                return 2;
            }

            ProjectFile project;
            try
            {
                project = ProjectFileLoader.Load(path);
            }
            catch (ProjectFileException ex)
            {
                await Console.Error.WriteLineAsync($"{name}: {ex.Message}");
                return 2;
            }

            if (!TryReadParams(project, name, parameterTokens, out var parameters, out var error))
            {
                await Console.Error.WriteLineAsync($"{name}: {error}");
                return 2;
            }

            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
            var settings = new RunSettings(
                parse.GetValue(url)?.TrimEnd('/'),
                parse.GetValue(httpUrl)?.TrimEnd('/'),
                parameters,
                dev,
                LoomHome(),
                TimeSpan.FromSeconds(Math.Max(1, parse.GetValue(readyTimeout))));
            return await new ProjectRunner(project, settings, new ConsoleSink()).RunAsync(stop.Token);

            void Stop(PosixSignalContext context)
            {
                context.Cancel = true;
                stop.Cancel();
            }
        });
        return command;
    }

    /// <summary>The repository root: where the loom CLI was built (set by the ./loom script as LOOM_HOME).</summary>
    public static string LoomHome() =>
        Environment.GetEnvironmentVariable("LOOM_HOME") is { Length: > 0 } home ? home : FindRepoRoot(AppContext.BaseDirectory) ?? Environment.CurrentDirectory;

    internal static string? FindRepoRoot(string start)
    {
        for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
            {
                return dir.FullName;
            }
        }

        return null;
    }

    /// <summary>
    /// The directory and the project parameters, in the order given (<c>loom run --question "..." DIR</c>
    /// and <c>loom run DIR --question "..."</c> alike): what remains once the command's own options
    /// and their values are taken out. A word after a parameter without '=' is its value; the one
    /// word that is not is the directory (default ".").
    /// </summary>
    private static bool SplitArguments(ParseResult parse, out string directory, out List<string> parameters, out string problem)
    {
        directory = ".";
        parameters = [];
        problem = "";
        var given = false;
        var tokens = parse.Tokens;
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (token.Type == System.CommandLine.Parsing.TokenType.Command)
            {
                continue;
            }

            if (token.Type == System.CommandLine.Parsing.TokenType.Option)
            {
                i++; // every option of run takes one value (--url=x arrives as two tokens too)
                continue;
            }

            if (token.Value.StartsWith("--", StringComparison.Ordinal))
            {
                parameters.Add(token.Value);
                if (!token.Value.Contains('=', StringComparison.Ordinal) && i + 1 < tokens.Count && tokens[i + 1].Type == System.CommandLine.Parsing.TokenType.Argument)
                {
                    parameters.Add(tokens[++i].Value);
                }

                continue;
            }

            if (given)
            {
                problem = $"unexpected argument '{token.Value}' (one directory, then project parameters as --NAME VALUE)";
                return false;
            }

            directory = token.Value;
            given = true;
        }

        return true;
    }

    private static bool TryReadParams(ProjectFile project, string command, List<string> tokens, out Dictionary<string, string> values, out string error)
    {
        values = new Dictionary<string, string>(StringComparer.Ordinal);
        error = "";
        var declared = project.Params.Count == 0 ? "this project declares none" : "declared: " + string.Join(", ", project.Params.Select(p => "--" + p.Name));
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (!token.StartsWith("--", StringComparison.Ordinal))
            {
                error = $"unexpected argument '{token}' (project parameters are --NAME VALUE; {declared})";
                return false;
            }

            var name = token[2..];
            string? value = null;
            var eq = name.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = name[(eq + 1)..];
                name = name[..eq];
            }

            if (project.Params.All(p => p.Name != name))
            {
                error = $"unknown option '--{name}' (neither an option of the command nor a parameter of {project.Path}: {declared}; see '{command} --help')";
                return false;
            }

            if (value is null)
            {
                if (i + 1 >= tokens.Count)
                {
                    error = $"--{name} needs a value: the project parameter's value";
                    return false;
                }

                value = tokens[++i];
            }

            values[name] = value;
        }

        return true;
    }
}
