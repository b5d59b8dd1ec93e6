using System.Text;
using System.Text.RegularExpressions;

namespace Loom.Mcp.Internal;

/// <summary>Include/exclude name patterns: <c>*</c> any run of characters, <c>?</c> one character.</summary>
internal sealed class NameFilter
{
    private readonly Regex[] _include;
    private readonly Regex[] _exclude;

    public NameFilter(IReadOnlyList<string> include, IReadOnlyList<string> exclude)
    {
        _include = include.Select(Compile).ToArray();
        _exclude = exclude.Select(Compile).ToArray();
    }

    public bool Matches(string name) =>
        (_include.Length == 0 || Array.Exists(_include, r => r.IsMatch(name)))
        && !Array.Exists(_exclude, r => r.IsMatch(name));

    private static Regex Compile(string pattern)
    {
        var text = new StringBuilder("^");
        foreach (var c in pattern.Trim())
        {
            text.Append(c switch
            {
                '*' => ".*",
                '?' => ".",
                _ => Regex.Escape(c.ToString()),
            });
        }

        return new Regex(text.Append('$').ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline, TimeSpan.FromSeconds(1));
    }
}
