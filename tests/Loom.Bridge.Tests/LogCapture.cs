using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Tests;

/// <summary>
/// A logger provider for bridge tests: keeps every formatted line, and can act as a slow sink for
/// one event of one category (a console whose pipe is full blocks the caller just so) while
/// counting how many callers were inside it at once. Plug in with <c>new LoomBridge(options, logging => logging.AddProvider(capture))</c>.
/// </summary>
internal sealed class LogCapture(string? slowCategory = null, int slowEventId = 0, TimeSpan slowFor = default) : ILoggerProvider
{
    private readonly ConcurrentQueue<Entry> _entries = new();
    private int _inside;
    private int _maxInside;

    public sealed record Entry(string Category, LogLevel Level, int EventId, string Message);

    public IReadOnlyList<Entry> Entries => [.. _entries];

    /// <summary>Most callers that were writing a slow line at the same time.</summary>
    public int MaxConcurrentSlowWrites => Volatile.Read(ref _maxInside);

    /// <summary>The lines of one event of a category (named by the end of its name, e.g. "SessionRegistry").</summary>
    public IReadOnlyList<Entry> Of(string category, int eventId) =>
        [.. _entries.Where(e => e.EventId == eventId && e.Category.EndsWith(category, StringComparison.Ordinal))];

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private void Write(Entry entry)
    {
        _entries.Enqueue(entry);
        if (slowCategory is null || entry.EventId != slowEventId || !entry.Category.EndsWith(slowCategory, StringComparison.Ordinal))
        {
            return;
        }

        var inside = Interlocked.Increment(ref _inside);
        for (var max = Volatile.Read(ref _maxInside); inside > max; max = Volatile.Read(ref _maxInside))
        {
            Interlocked.CompareExchange(ref _maxInside, inside, max);
        }

        Thread.Sleep(slowFor);
        Interlocked.Decrement(ref _inside);
    }

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Debug;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Write(new Entry(category, logLevel, eventId.Id, formatter(state, exception)));
    }
}
