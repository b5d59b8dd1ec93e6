using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Threading.Channels;
using Loom.Streams;
using Microsoft.Extensions.Logging;

namespace Loom.Llm.Internal;

/// <summary>One persisted cache entry: a chat answer or an embedding vector, and when it expires.</summary>
internal sealed record StoredEntry(string Key, object Value, DateTimeOffset Expires, long Size);

/// <summary>
/// The response cache on disk, so it survives a bridge restart: an append-only log of cache
/// writes (the durable streams' <see cref="FileStreamLog"/>: CRC-checked records, a torn tail
/// recovered at open) in <c>&lt;data dir&gt;/llm-cache</c>. At start the log is replayed oldest
/// first into the in-memory LRU, skipping expired entries, so the memory bounds apply as before.
/// The log itself is bounded by age (the TTL), by bytes (twice the cache's) and by records
/// (twice its entries): the oldest writes go first. Writes leave the caller's path through a
/// bounded queue; what does not fit is dropped and counted (the answer is still in memory).
/// Not fsynced: a cache survives a process crash, a power loss may cost its last writes.
/// </summary>
internal sealed class CacheStore : IAsyncDisposable
{
    private const int QueueCapacity = 1024;
    private readonly FileStreamLog _log;
    private readonly Channel<StoredEntry> _queue = Channel.CreateBounded<StoredEntry>(new BoundedChannelOptions(QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Task _writer;
    private long _dropped;
    private long _written;

    private CacheStore(FileStreamLog log, TimeProvider time, ILogger logger)
    {
        _log = log;
        _time = time;
        _logger = logger;
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>Writes dropped because the queue was full or the log failed.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Entries written to the log since start.</summary>
    public long Written => Interlocked.Read(ref _written);

    /// <summary>Bytes of the log on disk.</summary>
    public long Bytes => _log.Bytes;

    /// <summary>Opens (or creates) the store in <paramref name="directory"/>.</summary>
    public static CacheStore Open(string directory, LlmCacheOptions options, TimeProvider time, ILogger logger)
    {
        Directory.CreateDirectory(directory);
        var log = FileStreamLog.Open(directory, new StreamLogOptions
        {
            MaxAge = options.Ttl,
            MaxBytes = Math.Max(1L << 20, options.MaxBytes * 2),
            MaxCount = Math.Max(1L, options.MaxEntries * 2L),
            SegmentBytes = Math.Clamp(options.MaxBytes / 4, 64L * 1024, 64L * 1024 * 1024),
            MaxRecordBytes = 16 * 1024 * 1024,
            Fsync = false,
        }, logger, time);
        return new CacheStore(log, time, logger);
    }

    /// <summary>The entries still valid, oldest write first (a later write of a key replaces an earlier one).</summary>
    public IEnumerable<StoredEntry> Load()
    {
        _log.ApplyRetention();
        var now = _time.GetUtcNow();
        var next = _log.FirstSequence;
        while (next <= _log.LastSequence)
        {
            var page = _log.Read(next, 512, 8L * 1024 * 1024);
            if (page.Count == 0)
            {
                yield break;
            }

            foreach (var record in page)
            {
                next = record.Sequence + 1;
                if (Decode(record.Data.Span) is { } entry && entry.Expires > now)
                {
                    yield return entry;
                }
            }
        }
    }

    /// <summary>Queues an entry for the log; never waits (a full queue drops it, counted).</summary>
    public void Append(StoredEntry entry)
    {
        if (!_queue.Writer.TryWrite(entry))
        {
            Interlocked.Increment(ref _dropped);
        }
    }

    private async Task WriteLoopAsync()
    {
        await foreach (var entry in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await _log.AppendAsync(Encode(entry), _time.GetUtcNow().ToUnixTimeMilliseconds(), timeout.Token).ConfigureAwait(false);
                Interlocked.Increment(ref _written);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or InvalidOperationException or ArgumentException or UnauthorizedAccessException)
            {
                Interlocked.Increment(ref _dropped);
                Log.CachePersistFailed(_logger, ex.Message);
            }
        }
    }

    // Record: {"k": key, "x": expires (unix ms), "s": size, "c": {chat answer} | "e": base64 of float32 little-endian}.
    internal static byte[] Encode(StoredEntry entry)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("k", entry.Key);
            w.WriteNumber("x", entry.Expires.ToUnixTimeMilliseconds());
            w.WriteNumber("s", entry.Size);
            switch (entry.Value)
            {
                case ChatAnswer a:
                    w.WriteStartObject("c");
                    w.WriteString("model", a.Model);
                    w.WriteString("provider", a.Provider);
                    w.WriteString("text", a.Text);
                    if (a.FinishReason is { } finish)
                    {
                        w.WriteString("finish", finish);
                    }

                    w.WriteStartArray("tools");
                    foreach (var call in a.ToolCalls)
                    {
                        w.WriteStartObject();
                        w.WriteString("id", call.Id);
                        w.WriteString("name", call.Name);
                        w.WriteString("args", call.ArgumentsJson);
                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                    w.WriteNumber("in", a.InputTokens);
                    w.WriteNumber("out", a.OutputTokens);
                    w.WriteNumber("cost", a.Cost);
                    w.WriteNumber("attempts", a.Attempts);
                    if (a.FallbackFrom is { } from)
                    {
                        w.WriteString("from", from);
                    }

                    w.WriteEndObject();
                    break;
                case float[] vector:
                    w.WriteBase64String("e", MemoryMarshal.AsBytes(vector.AsSpan()));
                    break;
                default:
                    throw new ArgumentException($"A cache entry of type {entry.Value.GetType().Name} cannot be stored.", nameof(entry));
            }

            w.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>The entry a record holds; null for a record this version cannot read (skipped, not fatal).</summary>
    internal static StoredEntry? Decode(ReadOnlySpan<byte> data)
    {
        try
        {
            using var document = JsonDocument.Parse(data.ToArray());
            var root = document.RootElement;
            var key = root.GetProperty("k").GetString()!;
            var expires = DateTimeOffset.FromUnixTimeMilliseconds(root.GetProperty("x").GetInt64());
            var size = root.GetProperty("s").GetInt64();
            if (root.TryGetProperty("c", out var c))
            {
                var tools = c.GetProperty("tools").EnumerateArray()
                    .Select(t => new ToolCall(t.GetProperty("id").GetString()!, t.GetProperty("name").GetString()!, t.GetProperty("args").GetString()!))
                    .ToList();
                var answer = new ChatAnswer(
                    c.GetProperty("model").GetString()!,
                    c.GetProperty("provider").GetString()!,
                    c.GetProperty("text").GetString()!,
                    c.TryGetProperty("finish", out var f) ? f.GetString() : null,
                    tools,
                    c.GetProperty("in").GetInt64(),
                    c.GetProperty("out").GetInt64(),
                    c.GetProperty("cost").GetDouble(),
                    c.GetProperty("attempts").GetInt32(),
                    c.TryGetProperty("from", out var from) ? from.GetString() : null);
                return new StoredEntry(key, answer, expires, size);
            }

            if (root.TryGetProperty("e", out var e))
            {
                var bytes = e.GetBytesFromBase64();
                return bytes.Length % 4 == 0 ? new StoredEntry(key, MemoryMarshal.Cast<byte, float>(bytes.AsSpan()).ToArray(), expires, size) : null;
            }

            return null;
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or ArgumentException)
        {
            return null;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        try
        {
            await _writer.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Log.CachePersistFailed(_logger, "the cache log did not finish its writes within 5 s at shutdown");
        }

        await _log.DisposeAsync().ConfigureAwait(false);
    }
}
