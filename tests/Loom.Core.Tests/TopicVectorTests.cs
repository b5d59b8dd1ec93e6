using System.Text.Json.Nodes;
using Loom.Core.Internal;

namespace Loom.Core.Tests;

/// <summary>
/// The match cases of the conformance vectors (tests/vectors/topics.json) against the event bus's
/// subscription index, which routes with its own walk rather than <see cref="Topics.Matches"/>.
/// The bus refuses invalid patterns and topics before they reach the index, so a case with one
/// must be refused by the validators instead. (ConformanceVectorTests in Loom.Sdk.Tests runs every vector.)
/// </summary>
public sealed class TopicVectorTests
{
    private static JsonArray Matches()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
            {
                var file = Path.Combine(dir.FullName, "tests", "vectors", "topics.json");
                return JsonNode.Parse(File.ReadAllText(file))!["matches"]!.AsArray();
            }
        }

        throw new DirectoryNotFoundException($"No Loom.sln above {AppContext.BaseDirectory}: cannot find tests/vectors.");
    }

    public static TheoryData<string> MatchCases
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (var item in Matches())
            {
                data.Add((string)item!["name"]!);
            }

            return data;
        }
    }

    [Theory]
    [MemberData(nameof(MatchCases))]
    public void Subscription_index_matches_like_the_vectors(string name)
    {
        var c = Matches().Single(m => (string?)m!["name"] == name)!;
        var pattern = (string)c["pattern"]!;
        var topic = (string)c["topic"]!;
        var expected = (bool)c["match"]!;
        if (!Topics.IsValidPattern(pattern) || !Topics.IsValidTopic(topic))
        {
            Assert.False(expected, "a case with an invalid pattern or topic must not match");
            return;
        }

        var trie = new TopicTrie<string>();
        trie.Add(pattern, "subscription");
        var results = new List<string>();
        trie.Match(topic, results);
        Assert.Equal(expected, results.Count > 0);
    }
}
