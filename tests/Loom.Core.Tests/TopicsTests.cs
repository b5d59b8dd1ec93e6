using Loom.Core.Internal;

namespace Loom.Core.Tests;

public class TopicsTests
{
    [Theory]
    [InlineData("a.b.c", "a.b.c", true)]
    [InlineData("a.b.c", "a.b.d", false)]
    [InlineData("a.b", "a.b.c", false)]
    [InlineData("a.b.c", "a.b", false)]
    [InlineData("a.*.c", "a.b.c", true)]
    [InlineData("a.*.c", "a.b.x.c", false)]
    [InlineData("a.*", "a.b", true)]
    [InlineData("a.*", "a.b.c", false)]
    [InlineData("a.*", "a", false)]
    [InlineData("*", "a", true)]
    [InlineData("*", "a.b", false)]
    [InlineData("*.*", "a.b", true)]
    [InlineData("*.b", "a.b", true)]
    [InlineData("*.b", "a.c", false)]
    [InlineData("a.>", "a.b", true)]
    [InlineData("a.>", "a.b.c.d", true)]
    [InlineData("a.>", "a", false)]          // '>' needs at least one token
    [InlineData("a.>", "b.c", false)]
    [InlineData(">", "a", true)]
    [InlineData(">", "a.b.c", true)]
    [InlineData("a.*.>", "a.b", false)]
    [InlineData("a.*.>", "a.b.c", true)]
    [InlineData("*.>", "x.y", true)]
    [InlineData("orders:eu.created", "orders:eu.created", true)]
    [InlineData("a-b_c.D9", "a-b_c.D9", true)]
    [InlineData("A", "a", false)]            // case-sensitive
    [InlineData("a.>.c", "a.b.c", false)]    // invalid pattern: '>' not last
    [InlineData("a*", "a1", false)]          // invalid pattern: partial wildcard
    [InlineData("a.b", "a.b.", false)]       // invalid topic
    [InlineData("a.b", ".a.b", false)]
    [InlineData("a..b", "a..b", false)]
    [InlineData("", "a", false)]
    [InlineData("a", "", false)]
    [InlineData("*", "*", false)]            // a topic may not contain wildcards
    [InlineData(">", "a.*", false)]
    [InlineData(">", "a.b c", false)]
    [InlineData("a.b c", "a.b c", false)]
    public void Matches_table(string pattern, string topic, bool expected) =>
        Assert.Equal(expected, Topics.Matches(pattern, topic));

    [Fact]
    public void Matches_null_inputs_match_nothing()
    {
        Assert.False(Topics.Matches(null!, "a"));
        Assert.False(Topics.Matches("a", null!));
    }

    [Fact]
    public void Matches_does_not_allocate()
    {
        var pattern = "orders.*.eu.>";
        var topic = "orders.created.eu.fr.paris";
        Assert.True(Topics.Matches(pattern, topic));
        var before = GC.GetAllocatedBytesForCurrentThread();
        var hits = 0;
        for (var i = 0; i < 10_000; i++)
        {
            hits += Topics.Matches(pattern, topic) ? 1 : 0;
            hits += Topics.Matches("orders.x", topic) ? 1 : 0;
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(10_000, hits);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("a.b.c")]
    [InlineData("orders:eu.created-v2.x_y")]
    public void ValidateTopic_accepts(string topic) => Topics.ValidateTopic(topic);

    [Theory]
    [InlineData("", "empty")]
    [InlineData("a..b", "empty token at position 2")]
    [InlineData(".a", "empty token at position 1")]
    [InlineData("a.", "empty token at position 2")]
    [InlineData("a.*", "wildcards are only allowed in subscription patterns")]
    [InlineData("a.>", "wildcards are only allowed in subscription patterns")]
    [InlineData("a.b*", "wildcards are only allowed")]
    [InlineData("a.b c", "U+0020")]
    [InlineData("a/b", "'/'")]
    [InlineData("caf\u00e9", "letters A-Z")]
    public void ValidateTopic_rejects_with_a_hint(string topic, string hint)
    {
        var ex = Assert.Throws<InvalidParamsException>(() => Topics.ValidateTopic(topic));
        Assert.Contains(hint, ex.Message, StringComparison.Ordinal);
        Assert.Equal("/topic", ex.Path);
    }

    [Fact]
    public void Length_and_token_limits()
    {
        Topics.ValidateTopic(new string('a', Topics.MaxLength));
        var tooLong = Assert.Throws<InvalidParamsException>(() => Topics.ValidateTopic(new string('a', Topics.MaxLength + 1)));
        Assert.Contains("513 characters", tooLong.Message, StringComparison.Ordinal);

        var max = string.Join('.', Enumerable.Repeat("t", Topics.MaxTokens));
        Topics.ValidateTopic(max);
        Topics.ValidatePattern(max);
        Assert.True(Topics.Matches(max, max));
        var over = max + ".t";
        Assert.Contains("more than 32 tokens", Assert.Throws<InvalidParamsException>(() => Topics.ValidateTopic(over)).Message, StringComparison.Ordinal);
        Assert.False(Topics.Matches(over, over));
        Assert.False(Topics.Matches(">", over));
    }

    [Theory]
    [InlineData("a.*")]
    [InlineData("a.>")]
    [InlineData(">")]
    [InlineData("*")]
    [InlineData("*.b.*")]
    [InlineData("a.*.>")]
    public void ValidatePattern_accepts(string pattern) => Topics.ValidatePattern(pattern);

    [Theory]
    [InlineData("a.>.b", "'>' may only be the last token")]
    [InlineData(">.>", "'>' may only be the last token")]
    [InlineData("a*", "must be a whole token")]
    [InlineData("a.b>", "must be a whole token")]
    [InlineData("a..b", "empty token")]
    [InlineData("", "empty")]
    [InlineData("a.#", "'#'")]
    public void ValidatePattern_rejects_with_a_hint(string pattern, string hint)
    {
        var ex = Assert.Throws<InvalidParamsException>(() => Topics.ValidatePattern(pattern));
        Assert.Contains(hint, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Trie_agrees_with_Matches()
    {
        string[] patterns = ["a", "a.b", "a.*", "a.>", "*", "*.b", ">", "a.*.c", "a.b.>", "*.*.*", "x.>", "a.b.c"];
        string[] topics = ["a", "b", "a.b", "a.c", "x", "x.y", "a.b.c", "a.x.c", "a.b.c.d", "q.b", "a.b.d"];
        var trie = new TopicTrie<string>();
        foreach (var p in patterns)
        {
            trie.Add(p, p);
        }

        var results = new List<string>();
        foreach (var topic in topics)
        {
            results.Clear();
            trie.Match(topic, results);
            var expected = patterns.Where(p => Topics.Matches(p, topic)).OrderBy(p => p, StringComparer.Ordinal);
            Assert.Equal(expected, results.OrderBy(p => p, StringComparer.Ordinal));
        }

        foreach (var p in patterns)
        {
            Assert.True(trie.Remove(p, p));
        }

        Assert.False(trie.Remove("a", "a"));
        Assert.Equal(0, trie.Count);
        results.Clear();
        trie.Match("a.b.c", results);
        Assert.Empty(results);
    }

    [Fact]
    public void Trie_keeps_items_with_the_same_pattern_apart()
    {
        var trie = new TopicTrie<object>();
        object one = new(), two = new();
        trie.Add("a.*", one);
        trie.Add("a.*", two);
        Assert.True(trie.Remove("a.*", one));
        var results = new List<object>();
        trie.Match("a.b", results);
        Assert.Same(two, Assert.Single(results));
    }
}
