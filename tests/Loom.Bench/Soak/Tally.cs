using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Sockets;
using Grpc.Core;
using Loom.Core;

namespace Loom.Bench.Soak;

/// <summary>Counts by key ("part/outcome"), safe from any thread; the soak's ledger of what happened.</summary>
internal sealed class Tally
{
    private readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, string> _details = new(StringComparer.Ordinal);

    public void Add(string key, long n = 1) => _counts.AddOrUpdate(key, n, (_, v) => v + n);

    /// <summary>Counts one, and keeps the first detail (an error message) seen for the key.</summary>
    public void Add(string key, string? detail)
    {
        Add(key);
        if (!string.IsNullOrWhiteSpace(detail))
        {
            _details.TryAdd(key, detail.Length > 200 ? detail[..200] + "..." : detail);
        }
    }

    /// <summary>The first detail of each key that had one.</summary>
    public SortedDictionary<string, string> Details => new(_details, StringComparer.Ordinal);

    public long Get(string key) => _counts.TryGetValue(key, out var v) ? v : 0;

    public SortedDictionary<string, long> Snapshot() => new(_counts, StringComparer.Ordinal);

    /// <summary>What changed between two snapshots (keys that did not move are left out).</summary>
    public static SortedDictionary<string, long> Delta(IReadOnlyDictionary<string, long> now, IReadOnlyDictionary<string, long> before)
    {
        var delta = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var (key, value) in now)
        {
            var d = value - before.GetValueOrDefault(key);
            if (d != 0)
            {
                delta[key] = d;
            }
        }

        return delta;
    }

    public static string Format(IEnumerable<KeyValuePair<string, long>> counts) =>
        string.Join(", ", counts.Select(kv => string.Create(CultureInfo.InvariantCulture, $"{kv.Key} {kv.Value:N0}")));
}

/// <summary>Names a failure the way an operator would look it up: the Loom error code when there is one.</summary>
internal static class Outcome
{
    public const string Ok = "ok";

    public static string Of(Exception ex) => ex switch
    {
        LoomException loom => ErrorCodes.Name(loom.Code),
        StreamEndedException => "stream_ended",
        RpcException rpc when rpc.Trailers.GetValue("loom-error-code") is { Length: > 0 } code => code,
        RpcException rpc => "grpc_" + rpc.StatusCode,
        SocketException socket => "socket_" + socket.SocketErrorCode,
        TimeoutException => "client_timeout",
        OperationCanceledException => "cancelled",
        AggregateException { InnerException: { } inner } => Of(inner),
        HttpRequestException { InnerException: { } inner } => Of(inner),
        IOException { InnerException: { } inner } => Of(inner),
        _ => ex.GetType().Name,
    };

    /// <summary>How a stream ended, as a stream-level outcome key.</summary>
    public static string StreamEnded(Exception? ex) => "stream_ended_" + (ex is null ? "cleanly" : Of(ex));
}

internal static class Atomic
{
    public static void Max(ref long target, long value)
    {
        long seen;
        while (value > (seen = Interlocked.Read(ref target)) && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
