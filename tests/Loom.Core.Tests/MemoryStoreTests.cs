using Google.Protobuf;
using Loom.Protocol.V1;

namespace Loom.Core.Tests;

public class MemoryStoreTests
{
    private readonly FakeTimeProvider _time = new();

    private MemoryStore NewStore(MemoryStoreOptions? options = null) => new(options, _time);

    private static byte[] B(string s) => System.Text.Encoding.UTF8.GetBytes(s);

    [Fact]
    public void Set_get_delete_and_versions()
    {
        var store = NewStore();
        Assert.Null(store.Get("ns", "k"));
        var first = store.Set("ns", "k", B("v1"));
        var second = store.Set("ns", "k", B("v2"));
        var other = store.Set("ns", "other", B("x"));

        Assert.True(second.Version > first.Version);
        Assert.True(other.Version > second.Version);
        var got = store.Get("ns", "k")!;
        Assert.Equal(("k", "v2", second.Version, 0L), (got.Key, got.Value.ToStringUtf8(), got.Version, got.ExpiresUnixMs));
        Assert.Null(store.Get("other-ns", "k")); // namespaces are separate
        Assert.Equal(2, store.Count("ns"));

        Assert.True(store.Delete("ns", "k"));
        Assert.False(store.Delete("ns", "k"));
        Assert.Null(store.Get("ns", "k"));
        var recreated = store.Set("ns", "k", B("v3"));
        Assert.True(recreated.Version > other.Version); // versions never repeat, even after a delete
    }

    [Fact]
    public void Returned_entries_are_copies()
    {
        var store = NewStore();
        var value = B("abc");
        store.Set("ns", "k", value);
        value[0] = (byte)'X';
        var entry = store.Get("ns", "k")!;
        entry.Value = ByteString.CopyFromUtf8("mutated");
        Assert.Equal("abc", store.Get("ns", "k")!.Value.ToStringUtf8());
    }

    [Fact]
    public void Ttl_expires_entries()
    {
        var store = NewStore();
        var entry = store.Set("ns", "k", B("v"), TimeSpan.FromSeconds(10));
        Assert.Equal(_time.GetUtcNow().ToUnixTimeMilliseconds() + 10_000, entry.ExpiresUnixMs);
        store.Set("ns", "forever", B("v"));

        _time.Advance(TimeSpan.FromMilliseconds(9_999));
        Assert.NotNull(store.Get("ns", "k"));
        _time.Advance(TimeSpan.FromMilliseconds(1));
        Assert.Null(store.Get("ns", "k"));
        Assert.False(store.Delete("ns", "k"));
        Assert.Equal(1, store.Count("ns"));
        Assert.NotNull(store.Get("ns", "forever"));
    }

    [Fact]
    public void Sweep_removes_expired_entries_and_empty_namespaces()
    {
        var store = NewStore();
        for (var i = 0; i < 5; i++)
        {
            store.Set("a", "k" + i, B("v"), TimeSpan.FromSeconds(1 + i));
        }

        store.Set("b", "k", B("v"), TimeSpan.FromSeconds(1));
        Assert.Equal(0, store.Sweep());
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(3, store.Sweep()); // a.k0, a.k1, b.k
        Assert.Equal(3, store.Count("a"));
        Assert.Equal(0, store.Count("b"));
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(3, store.Sweep());
        Assert.Empty(store.List("a", ""));
        store.Set("a", "again", B("v")); // a swept namespace comes back on use
        Assert.Equal(1, store.Count("a"));
    }

    [Fact]
    public void Compare_and_set()
    {
        var store = NewStore();
        var (created, entry) = store.CompareAndSet("ns", "lock", 0, B("owner-1"));
        Assert.True(created);
        Assert.Equal("owner-1", entry!.Value.ToStringUtf8());

        var (again, current) = store.CompareAndSet("ns", "lock", 0, B("owner-2"));
        Assert.False(again);
        Assert.Equal(entry.Version, current!.Version);
        Assert.Equal("owner-1", current.Value.ToStringUtf8());

        var (stale, _) = store.CompareAndSet("ns", "lock", entry.Version + 1000, B("owner-2"));
        Assert.False(stale);

        var (swapped, next) = store.CompareAndSet("ns", "lock", entry.Version, B("owner-2"), TimeSpan.FromSeconds(5));
        Assert.True(swapped);
        Assert.True(next!.Version > entry.Version);
        Assert.Equal("owner-2", store.Get("ns", "lock")!.Value.ToStringUtf8());

        var (missing, none) = store.CompareAndSet("ns", "nothing", 7, B("x"));
        Assert.False(missing);
        Assert.Null(none);
        Assert.Equal((false, (MemoryEntry?)null), store.CompareAndSet("no-such-ns", "k", 1, B("x")));

        // An expired entry counts as absent.
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(store.CompareAndSet("ns", "lock", 0, B("owner-3")).Swapped);
    }

    [Fact]
    public void Compare_and_set_is_atomic_under_contention()
    {
        var store = new MemoryStore();
        store.Set("ns", "counter", B("0"));
        const int Workers = 4, Increments = 500;
        Parallel.For(0, Workers, _ =>
        {
            for (var i = 0; i < Increments; i++)
            {
                while (true)
                {
                    var current = store.Get("ns", "counter")!;
                    var next = int.Parse(current.Value.ToStringUtf8(), System.Globalization.CultureInfo.InvariantCulture) + 1;
                    if (store.CompareAndSet("ns", "counter", current.Version, B(next.ToString(System.Globalization.CultureInfo.InvariantCulture))).Swapped)
                    {
                        break;
                    }
                }
            }
        });
        Assert.Equal((Workers * Increments).ToString(System.Globalization.CultureInfo.InvariantCulture), store.Get("ns", "counter")!.Value.ToStringUtf8());
    }

    [Fact]
    public void List_by_prefix_in_ordinal_order_with_a_limit()
    {
        var store = NewStore();
        foreach (var key in new[] { "user:2", "user:10", "user:1", "users", "user", "admin:1", "user:Z", "user:a" })
        {
            store.Set("ns", key, B(key));
        }

        store.Set("ns", "user:expiring", B("x"), TimeSpan.FromSeconds(1));
        _time.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(["user:1", "user:10", "user:2", "user:Z", "user:a"], store.List("ns", "user:").Select(e => e.Key));
        Assert.Equal(["user:1", "user:10"], store.List("ns", "user:", limit: 2).Select(e => e.Key));
        Assert.Equal(9 - 1, store.List("ns", "").Count);
        Assert.Empty(store.List("ns", "zzz"));
        Assert.Empty(store.List("ns", "\uffff"));
        Assert.Empty(store.List("empty-ns", "user:"));
        Assert.Equal(8, store.Count("ns")); // the expired entry is gone
    }

    [Fact]
    public void Limits()
    {
        var store = NewStore(new MemoryStoreOptions { MaxEntriesPerNamespace = 2, MaxValueBytes = 4, MaxKeyLength = 5, MaxNamespaces = 2, MaxTtl = TimeSpan.FromHours(1) });
        store.Set("a", "k1", B("1"));
        store.Set("a", "k2", B("2"), TimeSpan.FromSeconds(1));
        store.Set("a", "k1", B("1b")); // overwriting is not growing
        var full = Assert.Throws<ResourceExhaustedException>(() => store.Set("a", "k3", B("3")));
        Assert.Contains("Namespace 'a' holds 2 entries, its limit (memory.max_entries_per_namespace)", full.Message, StringComparison.Ordinal);
        Assert.False(store.CompareAndSet("a", "k1", 999, B("x")).Swapped);
        Assert.Throws<ResourceExhaustedException>(() => store.CompareAndSet("a", "k3", 0, B("3")));

        _time.Advance(TimeSpan.FromSeconds(1)); // k2 expires, which makes room
        store.Set("a", "k3", B("3"));

        Assert.Equal("/value", Assert.Throws<InvalidParamsException>(() => store.Set("a", "k1", B("12345"))).Path);
        Assert.Equal("/key", Assert.Throws<InvalidParamsException>(() => store.Set("a", "123456", B("1"))).Path);
        Assert.Equal("/key", Assert.Throws<InvalidParamsException>(() => store.Set("a", "", B("1"))).Path);
        Assert.Equal("/namespace", Assert.Throws<InvalidParamsException>(() => store.Set("", "k", B("1"))).Path);
        Assert.Equal("/ttl_ms", Assert.Throws<InvalidParamsException>(() => store.Set("a", "k1", B("1"), TimeSpan.FromHours(2))).Path);
        Assert.Equal("/ttl_ms", Assert.Throws<InvalidParamsException>(() => store.Set("a", "k1", B("1"), TimeSpan.FromSeconds(-1))).Path);

        store.Set("b", "k", B("1"));
        Assert.Throws<ResourceExhaustedException>(() => store.Set("c", "k", B("1")));
        Assert.Equal("1b", store.Get("a", "k1")!.Value.ToStringUtf8()); // failures changed nothing
    }

    private static long Size(string key, string value) => System.Text.Encoding.UTF8.GetByteCount(key) + System.Text.Encoding.UTF8.GetByteCount(value) + MemoryStore.EntryOverheadBytes;

    [Fact]
    public void Bytes_and_entries_are_counted_exactly_and_given_back()
    {
        var store = NewStore();
        Assert.Equal((0L, 0L), (store.TotalBytes, store.TotalEntries));
        Assert.Equal(MemoryStoreOptions.DefaultMaxTotalBytes(), store.MaxTotalBytes);
        Assert.Equal(store.MaxTotalBytes / 4, store.MaxBytesPerNamespace);

        store.Set("a", "ключ", B("12345")); // the key counts in UTF-8: 8 bytes
        Assert.Equal(8 + 5 + MemoryStore.EntryOverheadBytes, store.TotalBytes);
        Assert.Equal(Size("ключ", "12345"), MemoryStore.SizeOf("ключ", 5));
        store.Set("a", "ключ", B("1234567890")); // an overwrite counts the difference
        store.Set("b", "k", B("v"));
        Assert.Equal(Size("ключ", "1234567890") + Size("k", "v"), store.TotalBytes);
        Assert.Equal(2, store.TotalEntries);
        store.Set("a", "ключ", B("1")); // a smaller value gives bytes back
        Assert.Equal(Size("ключ", "1") + Size("k", "v"), store.TotalBytes);

        var (swapped, current) = store.CompareAndSet("b", "k", store.Get("b", "k")!.Version, B("vvv"));
        Assert.True(swapped);
        Assert.True(store.CompareAndSet("b", "new", 0, B("n")).Swapped);
        Assert.False(store.CompareAndSet("b", "k", current!.Version + 99, B("a much longer value")).Swapped); // no write, no bytes
        Assert.Equal(Size("ключ", "1") + Size("k", "vvv") + Size("new", "n"), store.TotalBytes);
        Assert.Equal(3, store.TotalEntries);

        Assert.True(store.Delete("b", "k"));
        Assert.True(store.Delete("b", "new"));
        Assert.False(store.Delete("b", "new"));
        Assert.Equal(Size("ключ", "1"), store.TotalBytes);
        Assert.True(store.Delete("a", "ключ"));
        Assert.Equal((0L, 0L), (store.TotalBytes, store.TotalEntries));
    }

    [Fact]
    public void A_full_namespace_refuses_writes_and_keeps_what_it_holds()
    {
        var entry = Size("k0", "0123456789");
        var store = NewStore(new MemoryStoreOptions { MaxBytesPerNamespace = 3 * entry, MaxTotalBytes = 100 * entry });
        for (var i = 0; i < 3; i++)
        {
            store.Set("a", "k" + i, B("0123456789"));
        }

        var full = Assert.Throws<ResourceExhaustedException>(() => store.Set("a", "k3", B("0123456789")));
        Assert.Contains($"Namespace 'a' holds {3 * entry} bytes and this write needs {entry} more, over its limit of {3 * entry} bytes (memory.max_bytes_per_namespace", full.Message, StringComparison.Ordinal);
        Assert.Throws<ResourceExhaustedException>(() => store.Set("a", "k0", B("0123456789+"))); // growing an entry needs room too
        Assert.Throws<ResourceExhaustedException>(() => store.CompareAndSet("a", "k9", 0, B("x")));
        Assert.Equal(3, store.Refused(MemoryStoreLimit.NamespaceBytes));
        Assert.Equal(3 * entry, store.TotalBytes);
        Assert.Equal("0123456789", store.Get("a", "k0")!.Value.ToStringUtf8()); // nothing stored was lost

        store.Set("a", "k0", B("abcdefghij")); // the same size fits
        store.Set("a", "k1", B("short")); // a smaller one makes room...
        store.Set("b", "k0", B("0123456789")); // ...and other namespaces have their own
        Assert.Throws<ResourceExhaustedException>(() => store.Set("a", "k3", B("0123456789")));
        Assert.True(store.Delete("a", "k2"));
        store.Set("a", "k3", B("0123456789")); // a delete gives it back

        var response = store.Execute(new MemoryRequest { Set = new MemorySet { Key = "k4", Value = ByteString.CopyFromUtf8("0123456789") } }, "a");
        Assert.Equal(ErrorCode.ResourceExhausted, response.Error.Code);
        Assert.True(response.Error.Retryable);
        Assert.Contains("memory.max_bytes_per_namespace", response.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_total_bounds_all_namespaces_together_and_expiry_gives_bytes_back()
    {
        var entry = Size("k", "0123456789");
        var store = NewStore(new MemoryStoreOptions { MaxTotalBytes = 4 * entry, MaxBytesPerNamespace = 4 * entry });
        store.Set("a", "k", B("0123456789"), TimeSpan.FromSeconds(10));
        store.Set("b", "k", B("0123456789"), TimeSpan.FromSeconds(20));
        store.Set("c", "k", B("0123456789"));
        store.Set("d", "k", B("0123456789"));

        var full = Assert.Throws<ResourceExhaustedException>(() => store.Set("e", "k", B("0123456789")));
        Assert.Contains($"The memory store holds {4 * entry} bytes and this write needs {entry} more, over its limit of {4 * entry} bytes (memory.max_total_bytes", full.Message, StringComparison.Ordinal);
        Assert.Throws<ResourceExhaustedException>(() => store.CompareAndSet("c", "k", store.Get("c", "k")!.Version, B("0123456789+")));
        Assert.Equal("0123456789", store.Get("c", "k")!.Value.ToStringUtf8());
        Assert.Equal(2, store.Refused(MemoryStoreLimit.TotalBytes));

        // a.k expires: the next write that needs room finds it, in another namespace, without waiting for the sweep.
        _time.Advance(TimeSpan.FromSeconds(10));
        Assert.Equal(4 * entry, store.TotalBytes); // not removed until something looks
        store.Set("e", "k", B("0123456789"));
        Assert.Equal(4 * entry, store.TotalBytes);
        Assert.Null(store.Get("a", "k"));
        Assert.Throws<ResourceExhaustedException>(() => store.Set("f", "k", B("0123456789")));

        _time.Advance(TimeSpan.FromSeconds(10)); // b.k expires; the periodic sweep gives it back
        Assert.Equal(1, store.Sweep());
        Assert.Equal((3 * entry, 3L), (store.TotalBytes, store.TotalEntries));
        store.Set("f", "k", B("0123456789"));
    }

    [Fact]
    public void Total_entries_are_bounded_and_refusals_counted_by_limit()
    {
        var store = NewStore(new MemoryStoreOptions { MaxTotalEntries = 3, MaxEntriesPerNamespace = 2, MaxNamespaces = 3 });
        store.Set("a", "1", B("x"));
        store.Set("a", "2", B("x"));
        Assert.Contains("memory.max_entries_per_namespace", Assert.Throws<ResourceExhaustedException>(() => store.Set("a", "3", B("x"))).Message, StringComparison.Ordinal);
        store.Set("b", "1", B("x"));
        var full = Assert.Throws<ResourceExhaustedException>(() => store.Set("b", "2", B("x")));
        Assert.Contains("The memory store holds 3 entries, its limit (memory.max_total_entries)", full.Message, StringComparison.Ordinal);
        store.Set("b", "1", B("overwriting adds no entry"));
        Assert.Throws<ResourceExhaustedException>(() => store.Set("c", "1", B("x"), TimeSpan.FromSeconds(1)));
        Assert.Equal(3, store.TotalEntries);
        Assert.True(store.Delete("a", "1"));
        store.Set("b", "2", B("x"));
        Assert.Equal((1L, 2L, 0L), (store.Refused(MemoryStoreLimit.NamespaceEntries), store.Refused(MemoryStoreLimit.TotalEntries), store.Refused(MemoryStoreLimit.TotalBytes)));
    }

    [Fact]
    public void Concurrent_writers_never_pass_the_total_and_everything_is_given_back()
    {
        var entry = Size("k00", "0123456789");
        var store = new MemoryStore(new MemoryStoreOptions { MaxTotalBytes = 50 * entry, MaxBytesPerNamespace = 50 * entry });
        var refused = 0;
        Parallel.For(0, 4, worker =>
        {
            for (var i = 0; i < 40; i++)
            {
                try
                {
                    store.Set("ns" + worker, "k" + i.ToString("00", System.Globalization.CultureInfo.InvariantCulture), B("0123456789"));
                }
                catch (ResourceExhaustedException)
                {
                    Interlocked.Increment(ref refused);
                }

                Assert.True(store.TotalBytes <= 50 * entry);
            }
        });
        Assert.Equal((50 * entry, 50L, 160 - 50), (store.TotalBytes, store.TotalEntries, refused));
        Parallel.For(0, 4, worker =>
        {
            foreach (var item in store.List("ns" + worker, ""))
            {
                Assert.True(store.Delete("ns" + worker, item.Key));
            }
        });
        Assert.Equal((0L, 0L), (store.TotalBytes, store.TotalEntries));
    }

    [Theory]
    [InlineData(-1L, 0L, 1L, "MaxTotalBytes (memory.max_total_bytes) is -1")]
    [InlineData(0L, -5L, 1L, "MaxBytesPerNamespace (memory.max_bytes_per_namespace) is -5")]
    [InlineData(0L, 0L, 0L, "MaxTotalEntries (memory.max_total_entries) is 0")]
    public void Bad_limits_are_refused_naming_the_option(long total, long perNamespace, long entries, string expected)
    {
        var options = new MemoryStoreOptions { MaxTotalBytes = total, MaxBytesPerNamespace = perNamespace, MaxTotalEntries = entries };
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => new MemoryStore(options));
        Assert.StartsWith(expected, ex.Message, StringComparison.Ordinal);
        Assert.Equal(expected.Split(' ')[0], ex.ParamName);
    }

    [Fact]
    public void Execute_runs_every_operation()
    {
        var store = NewStore();
        MemoryResponse Run(MemoryRequest request) => store.Execute(request, "agent-ns");

        var set = Run(new MemoryRequest { CorrelationId = "1", Set = new MemorySet { Key = "k", Value = ByteString.CopyFromUtf8("v"), TtlMs = 1000 } });
        Assert.Equal("1", set.CorrelationId);
        Assert.Null(set.Error);
        var version = Assert.Single(set.Entries).Version;
        Assert.Equal(_time.GetUtcNow().ToUnixTimeMilliseconds() + 1000, set.Entries[0].ExpiresUnixMs);

        var get = Run(new MemoryRequest { CorrelationId = "2", Get = new MemoryGet { Key = "k" } });
        Assert.True(get.Found);
        Assert.Equal("v", get.Entries[0].Value.ToStringUtf8());
        Assert.Equal("v", store.Get("agent-ns", "k")!.Value.ToStringUtf8()); // the default namespace

        var elsewhere = Run(new MemoryRequest { Namespace = "shared", Get = new MemoryGet { Key = "k" } });
        Assert.False(elsewhere.Found);
        Assert.Empty(elsewhere.Entries);

        var cas = Run(new MemoryRequest { CompareAndSet = new MemoryCompareAndSet { Key = "k", ExpectedVersion = version, Value = ByteString.CopyFromUtf8("w") } });
        Assert.True(cas.Found);
        var casAgain = Run(new MemoryRequest { CompareAndSet = new MemoryCompareAndSet { Key = "k", ExpectedVersion = version, Value = ByteString.CopyFromUtf8("z") } });
        Assert.False(casAgain.Found);
        Assert.Equal("w", casAgain.Entries[0].Value.ToStringUtf8());

        Run(new MemoryRequest { Set = new MemorySet { Key = "k2", Value = ByteString.CopyFromUtf8("2") } });
        var list = Run(new MemoryRequest { List = new MemoryList { Prefix = "k", Limit = 0 } });
        Assert.Equal(["k", "k2"], list.Entries.Select(e => e.Key));
        Assert.True(list.Found);

        // found is true for every list that runs (protocol §10), also when nothing matches.
        var none = Run(new MemoryRequest { List = new MemoryList { Prefix = "nothing-here" } });
        Assert.True(none.Found);
        Assert.Empty(none.Entries);
        Assert.Null(none.Error);
        Assert.Single(Run(new MemoryRequest { List = new MemoryList { Prefix = "k", Limit = 1 } }).Entries);

        Assert.True(Run(new MemoryRequest { Delete = new MemoryDelete { Key = "k" } }).Found);
        Assert.False(Run(new MemoryRequest { Delete = new MemoryDelete { Key = "k" } }).Found);

        var bad = Run(new MemoryRequest { CorrelationId = "9", Get = new MemoryGet { Key = "" } });
        Assert.Equal("9", bad.CorrelationId);
        Assert.Equal((ErrorCode.InvalidParams, "/key"), (bad.Error.Code, bad.Error.Path));

        var empty = Run(new MemoryRequest { CorrelationId = "10" });
        Assert.Equal(ErrorCode.InvalidParams, empty.Error.Code);
    }
}

public class AgentDirectoryTests
{
    private static AgentInfo Agent(string id, string[] topics, string[] capabilities) =>
        new(id, id + "-name", "default", "s-" + id, topics, capabilities, new Dictionary<string, string>(), DateTimeOffset.UnixEpoch, "loom-test/0");

    [Fact]
    public void Upsert_find_and_remove()
    {
        var directory = new AgentDirectory();
        directory.Upsert(Agent("b", ["orders.*"], ["web.search"]));
        directory.Upsert(Agent("a", ["orders.>", "audit"], ["math.add", "web.search"]));
        directory.Upsert(Agent("c", [">"], []));

        Assert.Equal(["a", "b", "c"], directory.All().Select(x => x.AgentId));
        Assert.Equal(["a", "b", "c"], directory.FindByTopic("orders.created").Select(x => x.AgentId));
        Assert.Equal(["a", "c"], directory.FindByTopic("orders.created.eu").Select(x => x.AgentId));
        Assert.Equal(["a", "c"], directory.FindByTopic("audit").Select(x => x.AgentId));
        Assert.Equal(["a", "b"], directory.FindByCapability("web.search").Select(x => x.AgentId));
        Assert.Empty(directory.FindByCapability("nope"));

        directory.Upsert(Agent("b", [], []));
        Assert.Equal(["a"], directory.FindByCapability("web.search").Select(x => x.AgentId));
        Assert.Equal("s-b", directory.Find("b")!.SessionId);
        Assert.True(directory.Remove("b"));
        Assert.False(directory.Remove("b"));
        Assert.Null(directory.Find("b"));
        Assert.Equal(2, directory.Count);
    }
}
