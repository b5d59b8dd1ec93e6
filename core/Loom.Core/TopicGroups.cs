using System.Collections.Concurrent;

namespace Loom.Core;

/// <summary>
/// Maps topics and subscription patterns to a bounded set of labels for metrics, so that a
/// label never carries a raw topic (topics often carry thread or agent ids). A name takes the
/// first configured pattern that matches it (or equals it, for patterns); otherwise its first
/// token followed by <c>.&gt;</c> (<c>thread.42.reply</c> → <c>thread.&gt;</c>,
/// <c>_inbox.agent-7.&gt;</c> → <c>_inbox.&gt;</c>). At most <see cref="MaxGroups"/> such derived
/// groups are kept; further names share the group <c>(other)</c>.
/// </summary>
public sealed class TopicGroups
{
    /// <summary>The group of names beyond the limit.</summary>
    public const string Other = "(other)";

    private readonly string[] _configured;
    private readonly ConcurrentDictionary<string, string> _derived = new(StringComparer.Ordinal);

    /// <summary>Creates the mapping.</summary>
    /// <param name="patterns">Configured groups: topic patterns (validated), tried in order.</param>
    /// <param name="maxGroups">Most derived (first-token) groups; further names go to <see cref="Other"/>.</param>
    /// <exception cref="InvalidParamsException">A configured pattern is invalid.</exception>
    public TopicGroups(IEnumerable<string>? patterns = null, int maxGroups = 64)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxGroups);
        _configured = patterns?.ToArray() ?? [];
        foreach (var p in _configured)
        {
            Topics.ValidatePattern(p);
        }

        MaxGroups = maxGroups;
    }

    /// <summary>Most derived groups.</summary>
    public int MaxGroups { get; }

    /// <summary>The configured patterns.</summary>
    public IReadOnlyList<string> Configured => _configured;

    /// <summary>The group of a concrete topic or a subscription pattern (never null, never a raw topic beyond its first token).</summary>
    public string GroupOf(string name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return Other;
        }

        foreach (var p in _configured)
        {
            if (string.Equals(p, name, StringComparison.Ordinal) || Topics.Matches(p, name))
            {
                return p;
            }
        }

        var dot = name.IndexOf('.', StringComparison.Ordinal);
        var first = dot < 0 ? name : name[..dot];
        var derived = dot < 0 ? first : first + ".>";
        if (_derived.TryGetValue(derived, out var known))
        {
            return known;
        }

        if (_derived.Count >= MaxGroups)
        {
            return Other;
        }

        return _derived.GetOrAdd(derived, derived);
    }
}
