using Loom.Llm.Internal;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Loom.Llm.Tests;

/// <summary>The persisted response cache's log (docs/llm.md): chat answers and embedding vectors round-trip; expired entries are not loaded.</summary>
public sealed class CacheStoreTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loom-llm-store-" + Guid.NewGuid().ToString("N"));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Entries_survive_a_reopen_and_expired_ones_are_skipped()
    {
        var now = DateTimeOffset.UtcNow;
        var answer = new ChatAnswer("fast", "openai", "Lisbon [1]", "stop", [new ToolCall("call_1", "get_weather", """{"city":"Oslo"}""")], 12, 3, 0.5, 1, "smart");
        var options = new LlmCacheOptions { MaxEntries = 10, Ttl = TimeSpan.FromHours(1) };
        await using (var store = CacheStore.Open(_dir, options, TimeProvider.System, NullLogger.Instance))
        {
            store.Append(new StoredEntry("chat-key", answer, now.AddMinutes(30), answer.Size));
            store.Append(new StoredEntry("embed-key", new float[] { 1.5f, -2f, 3.25f }, now.AddMinutes(30), 76));
            store.Append(new StoredEntry("old-key", answer, now.AddMinutes(-1), answer.Size));
            await Poll.UntilAsync(() => store.Written == 3, TimeSpan.FromSeconds(30));
        }

        await using var reopened = CacheStore.Open(_dir, options, TimeProvider.System, NullLogger.Instance);
        var loaded = reopened.Load().ToDictionary(e => e.Key);
        Assert.Equal(["chat-key", "embed-key"], loaded.Keys.Order());
        var chat = Assert.IsType<ChatAnswer>(loaded["chat-key"].Value);
        Assert.Equal(answer with { ToolCalls = chat.ToolCalls }, chat);
        Assert.Equal(answer.ToolCalls, chat.ToolCalls);
        Assert.Equal([1.5f, -2f, 3.25f], Assert.IsType<float[]>(loaded["embed-key"].Value));
        Assert.Null(CacheStore.Decode("not json"u8));
    }
}
