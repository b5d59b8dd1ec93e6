using System.CommandLine;
using System.Runtime.InteropServices;
using Loom.Cli.Internal;

namespace Loom.Cli.Commands;

/// <summary><c>loom run DIR</c> and <c>loom dev DIR</c>: run the project a loom.yaml declares.</summary>
internal static class RunCommand
{
    public static Command Create(bool dev)
    {
        var directory = new Argument<string>("dir") { Description = "Directory holding loom.yaml (or the path of the file).", DefaultValueFactory = _ => "." };
        var url = new Option<string?>("--url") { Description = "gRPC address of a running bridge to use instead of starting one (e.g. http://127.0.0.1:7070)." };
        var httpUrl = new Option<string?>("--http-url") { Description = "HTTP address of that bridge, to report when agents connect (e.g. http://127.0.0.1:7071)." };
        var readyTimeout = new Option<int>("--ready-timeout") { Description = "Seconds to wait for every agent to connect before warning.", DefaultValueFactory = _ => 60 };
        var command = new Command(
            dev ? "dev" : "run",
            dev
                ? "Like run, and restarts an agent when files under its directory change. Project parameters are given as --NAME VALUE."
                : "Run the agents a loom.yaml declares against a bridge (started here unless --url), with prefixed logs; Ctrl+C stops everything. Project parameters are given as --NAME VALUE (see the file's params).")
        {
            directory, url, httpUrl, readyTimeout,
        };
        command.TreatUnmatchedTokensAsErrors = false;
        foreach (var option in new[] { url, httpUrl })
        {
            option.Validators.Add(r =>
            {
                var value = r.GetValueOrDefault<string?>();
                if (value is not null && !(Uri.TryCreate(value, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"))
                {
                    r.AddError($"{r.Option.Name} must be an absolute http:// URL, not '{value}'.");
                }
            });
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            ProjectFile project;
            try
            {
                project = ProjectFileLoader.Load(parse.GetValue(directory)!);
            }
            catch (ProjectFileException ex)
            {
                await Console.Error.WriteLineAsync($"loom: {ex.Message}");
                return 2;
            }

            if (!TryReadParams(project, parse.UnmatchedTokens, out var parameters, out var error))
            {
                await Console.Error.WriteLineAsync($"loom: {error}");
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

    private static bool TryReadParams(ProjectFile project, IReadOnlyList<string> tokens, out Dictionary<string, string> values, out string error)
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
                error = $"unknown option '--{name}' for {project.Path} ({declared}; see 'loom run --help')";
                return false;
            }

            if (value is null)
            {
                if (i + 1 >= tokens.Count)
                {
                    error = $"--{name} needs a value";
                    return false;
                }

                value = tokens[++i];
            }

            values[name] = value;
        }

        return true;
    }
}
