namespace Loom.Core.Internal;

/// <summary>
/// Indexes items (subscriptions) by pattern so that matching a topic costs one walk over its
/// tokens instead of one comparison per subscription. Not thread-safe: callers serialize access.
/// </summary>
internal sealed class TopicTrie<T>
    where T : class
{
    private readonly Node _root = new();

    public int Count { get; private set; }

    public void Add(string pattern, T item)
    {
        var node = _root;
        var rest = pattern.AsSpan();
        while (true)
        {
            var dot = rest.IndexOf('.');
            var token = dot < 0 ? rest : rest[..dot];
            if (token is ">")
            {
                (node.Rest ??= []).Add(item);
                break;
            }

            node = node.Child(token, create: true)!;
            if (dot < 0)
            {
                (node.Exact ??= []).Add(item);
                break;
            }

            rest = rest[(dot + 1)..];
        }

        Count++;
    }

    public bool Remove(string pattern, T item)
    {
        if (RemoveFrom(_root, pattern.AsSpan(), item))
        {
            Count--;
            return true;
        }

        return false;
    }

    /// <summary>Adds every item whose pattern matches <paramref name="topic"/> (a valid topic) to <paramref name="results"/>.</summary>
    public void Match(string topic, List<T> results) => MatchFrom(_root, topic.AsSpan(), results);

    private static void MatchFrom(Node node, ReadOnlySpan<char> rest, List<T> results)
    {
        // At least one token remains here, so '>' at this level matches.
        if (node.Rest is { } tail)
        {
            results.AddRange(tail);
        }

        var dot = rest.IndexOf('.');
        var token = dot < 0 ? rest : rest[..dot];
        if (node.Child(token, create: false) is { } child)
        {
            Descend(child, dot, rest, results);
        }

        if (node.Star is { } star)
        {
            Descend(star, dot, rest, results);
        }
    }

    private static void Descend(Node child, int dot, ReadOnlySpan<char> rest, List<T> results)
    {
        if (dot < 0)
        {
            if (child.Exact is { } exact)
            {
                results.AddRange(exact);
            }
        }
        else
        {
            MatchFrom(child, rest[(dot + 1)..], results);
        }
    }

    private static bool RemoveFrom(Node node, ReadOnlySpan<char> rest, T item)
    {
        var dot = rest.IndexOf('.');
        var token = dot < 0 ? rest : rest[..dot];
        if (token is ">")
        {
            return RemoveItem(ref node.Rest, item);
        }

        var child = node.Child(token, create: false);
        if (child is null)
        {
            return false;
        }

        var removed = dot < 0 ? RemoveItem(ref child.Exact, item) : RemoveFrom(child, rest[(dot + 1)..], item);
        if (removed && child.IsEmpty)
        {
            node.RemoveChild(token);
        }

        return removed;
    }

    private static bool RemoveItem(ref List<T>? list, T item)
    {
        if (list is null)
        {
            return false;
        }

        var index = list.FindIndex(x => ReferenceEquals(x, item));
        if (index < 0)
        {
            return false;
        }

        list.RemoveAt(index);
        if (list.Count == 0)
        {
            list = null;
        }

        return true;
    }

    private sealed class Node
    {
        public Dictionary<string, Node>? Children;
        public Node? Star;
        public List<T>? Exact;
        public List<T>? Rest;

        public bool IsEmpty => Exact is null && Rest is null && Star is null && (Children is null || Children.Count == 0);

        public Node? Child(ReadOnlySpan<char> token, bool create)
        {
            if (token is "*")
            {
                return create ? Star ??= new Node() : Star;
            }

            if (Children is not null && Children.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(token, out var found))
            {
                return found;
            }

            if (!create)
            {
                return null;
            }

            var node = new Node();
            (Children ??= new Dictionary<string, Node>(StringComparer.Ordinal)).Add(token.ToString(), node);
            return node;
        }

        public void RemoveChild(ReadOnlySpan<char> token)
        {
            if (token is "*")
            {
                Star = null;
            }
            else
            {
                Children?.GetAlternateLookup<ReadOnlySpan<char>>().Remove(token);
            }
        }
    }
}
