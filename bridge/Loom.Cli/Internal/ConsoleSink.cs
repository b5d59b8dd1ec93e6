using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace Loom.Cli.Internal;

/// <summary>
/// The one writer of the terminal while a project runs: agent lines prefixed with the agent's
/// name in its own colour (like docker compose), loom's own status lines, and raw passthrough
/// for the main agent's stdout. Serialized by a lock so lines never interleave mid-line.
/// </summary>
internal sealed class ConsoleSink
{
    private static readonly string[] Palette = ["deepskyblue1", "orchid", "gold1", "springgreen2", "darkorange", "mediumpurple1", "turquoise2", "hotpink"];

    private readonly object _gate = new();
    private readonly Dictionary<string, string> _colours = new(StringComparer.Ordinal);
    private int _width = 6;

    public ConsoleSink()
    {
        Console = AnsiConsole.Console;

        // Redirected output (CI, a file, a pipe): no wrapping at 80 columns, lines stay whole.
        if (System.Console.IsOutputRedirected)
        {
            Console.Profile.Width = 4096;
        }
    }

    public IAnsiConsole Console { get; }

    public void Register(IEnumerable<string> names)
    {
        lock (_gate)
        {
            foreach (var name in names)
            {
                if (!_colours.ContainsKey(name))
                {
                    _colours[name] = Palette[_colours.Count % Palette.Length];
                }

                _width = Math.Max(_width, name.Length);
            }
        }
    }

    /// <summary>A line of an agent's output, prefixed.</summary>
    public void AgentLine(string agent, string line, bool isError)
    {
        lock (_gate)
        {
            var colour = _colours.GetValueOrDefault(agent, "grey");
            var text = Markup.Escape(line);
            Console.MarkupLine($"[{colour}]{Markup.Escape(agent.PadRight(_width))} │[/] {(isError && LooksLikeError(line) ? $"[red]{text}[/]" : text)}");
        }
    }

    /// <summary>A line passed through unprefixed (the main agent's stdout: its result).</summary>
    public void Raw(string line)
    {
        lock (_gate)
        {
            System.Console.Out.WriteLine(line);
        }
    }

    /// <summary>A status line of loom's own.</summary>
    public void Status(string markup)
    {
        lock (_gate)
        {
            Console.MarkupLine($"[grey]{"loom".PadRight(_width)} │[/] {markup}");
        }
    }

    public void Failure(string message)
    {
        lock (_gate)
        {
            Console.MarkupLine($"[red]{"loom".PadRight(_width)} │ {Markup.Escape(message)}[/]");
        }
    }

    private static bool LooksLikeError(string line) =>
        line.Contains("error", StringComparison.OrdinalIgnoreCase) || line.Contains("exception", StringComparison.OrdinalIgnoreCase) || line.StartsWith("Traceback", StringComparison.Ordinal);
}

/// <summary>Bridge logs: everything to a file, warnings and errors also to the sink as "bridge".</summary>
internal sealed class SinkLoggerProvider(ConsoleSink sink, StreamWriter file, LogLevel consoleLevel) : ILoggerProvider
{
    private readonly object _fileGate = new();
    private volatile bool _quiet;

    /// <summary>From now on only errors reach the screen (the run is stopping: agents leaving is expected).</summary>
    public void Quiet() => _quiet = true;

    public ILogger CreateLogger(string categoryName) => new SinkLogger(this, categoryName);

    public void Dispose()
    {
        lock (_fileGate)
        {
            file.Flush();
        }
    }

    private void Write(LogLevel level, string category, string message, Exception? exception)
    {
        var shortCategory = category[(category.LastIndexOf('.') + 1)..];
        lock (_fileGate)
        {
            file.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {level,-11} {shortCategory}: {message}{(exception is null ? "" : Environment.NewLine + exception)}");
            file.Flush();
        }

        if (level >= (_quiet ? LogLevel.Error : consoleLevel))
        {
            sink.AgentLine("bridge", $"{level}: {message}", level >= LogLevel.Error);
        }
    }

    private sealed class SinkLogger(SinkLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information && !(category.StartsWith("Microsoft", StringComparison.Ordinal) && logLevel < LogLevel.Warning);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                provider.Write(logLevel, category, formatter(state, exception), exception);
            }
        }
    }
}
