using System.Security.Cryptography;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Streams;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Idempotency;

/// <summary>
/// Outcomes of calls made with an idempotency key, by (scope, capability, key): replayed within the
/// window, single-flight while the first call runs. With a data directory every stored outcome is
/// appended to a <see cref="FileStreamLog"/> (persisted before it is returned) and the memory index
/// holds keys and sequences only; without one the outcomes live in memory. Both are bounded
/// (<see cref="IdempotencyOptions"/>): the oldest keys are forgotten first, and counted.
/// </summary>
internal sealed class IdempotencyStore : IIdempotencyStore, IAsyncDisposable
{
    private static readonly TimeSpan AppendTimeout = TimeSpan.FromSeconds(30);
    private static readonly ReadOnlyMemory<byte> s_emptyObject = "{}"u8.ToArray();

    private readonly IdempotencyOptions _options;
    private readonly ActionBrokerOptions _actions;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly IStreamLog? _log;
    private readonly long _windowMs;
    private readonly Lock _gate = new();
    private readonly Dictionary<string, Entry> _index = new(StringComparer.Ordinal);
    private readonly Queue<Entry> _order = new();
    private readonly Dictionary<string, Flight> _inFlight = new(StringComparer.Ordinal);
    private long _memoryBytes;
    private long _replays;
    private long _stores;
    private long _evictions;
    private long _expired;
    private long _waits;
    private long _lastRetentionMs;

    private IdempotencyStore(IdempotencyOptions options, ActionBrokerOptions actions, IStreamLog? log, TimeProvider time, ILogger logger)
    {
        _options = options;
        _actions = actions;
        _log = log;
        _time = time;
        _logger = logger;
        _windowMs = (long)options.Window.TotalMilliseconds;
    }

    /// <summary>Outcomes returned from the store instead of invoking a provider.</summary>
    public long Replays => Interlocked.Read(ref _replays);

    /// <summary>Outcomes stored.</summary>
    public long Stores => Interlocked.Read(ref _stores);

    /// <summary>Keys forgotten before their window ended (over max_keys or max_memory_bytes).</summary>
    public long Evictions => Interlocked.Read(ref _evictions);

    /// <summary>Keys forgotten because their window ended.</summary>
    public long Expired => Interlocked.Read(ref _expired);

    /// <summary>Calls that waited for a call in flight with the same key.</summary>
    public long Waits => Interlocked.Read(ref _waits);

    /// <summary>Keys held now.</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _index.Count;
            }
        }
    }

    /// <summary>Bytes on disk (0 without a data directory).</summary>
    public long DiskBytes => _log?.Bytes ?? 0;

    /// <summary>True when outcomes are persisted (the bridge has a data directory).</summary>
    public bool IsDurable => _log is not null;

    /// <summary>Opens the store under <c>{dataDirectory}/idempotency</c> (rebuilding the index from its log), or in memory when <paramref name="dataDirectory"/> is null.</summary>
    public static IdempotencyStore Open(IdempotencyOptions options, ActionBrokerOptions actions, string? dataDirectory, TimeProvider time, ILogger logger)
    {
        FileStreamLog? log = null;
        if (dataDirectory is not null)
        {
            log = FileStreamLog.Open(
                Path.Combine(dataDirectory, "idempotency"),
                new StreamLogOptions { MaxAge = options.Window, MaxBytes = options.MaxDiskBytes, SegmentBytes = Math.Min(16L * 1024 * 1024, Math.Max(1024 * 1024, options.MaxDiskBytes / 8)), Fsync = options.Fsync },
                logger,
                time);
        }

        var store = new IdempotencyStore(options, actions, log, time, logger);
        if (log is not null)
        {
            store.Rebuild(log);
            IdempotencyLog.Ready(logger, store.Count, log.FirstSequence, log.LastSequence, options.Window.TotalHours);
        }

        return store;
    }

    public async Task<ActionOutcome> InvokeAsync(ActionRequest request, Func<ActionRequest, CancellationToken, Task<ActionOutcome>> invoke, CancellationToken cancellationToken)
    {
        var key = string.Concat(request.IdempotencyScope ?? "agent:" + request.Caller, "\0", request.Capability, "\0", request.IdempotencyKey);
        var fingerprint = Fingerprint(request.InputJson);
        var wait = request.Timeout ?? _actions.DefaultTimeout;
        wait = wait > _actions.MaxTimeout ? _actions.MaxTimeout : wait;
        var waitStart = _time.GetTimestamp();
        while (true)
        {
            Entry? hit;
            Flight? other;
            Flight? mine = null;
            lock (_gate)
            {
                Forget(_time.GetUtcNow().ToUnixTimeMilliseconds());
                if (_index.TryGetValue(key, out hit))
                {
                    other = null;
                }
                else if (_inFlight.TryGetValue(key, out other))
                {
                }
                else if (_inFlight.Count >= _options.MaxInFlight)
                {
                    return Failure(ErrorCode.ResourceExhausted, $"The bridge already runs {_options.MaxInFlight} calls with an idempotency key (idempotency.max_in_flight); retry shortly.");
                }
                else
                {
                    mine = new Flight(fingerprint);
                    _inFlight[key] = mine;
                }
            }

            if (hit is not null)
            {
                if (!hit.Fingerprint.AsSpan().SequenceEqual(fingerprint))
                {
                    return Mismatch(request, hit.StoredMs);
                }

                if (Load(hit, key) is { } stored)
                {
                    Interlocked.Increment(ref _replays);
                    return stored;
                }

                lock (_gate)
                {
                    if (_index.TryGetValue(key, out var current) && ReferenceEquals(current, hit))
                    {
                        _index.Remove(key);
                        _memoryBytes -= hit.Bytes;
                    }
                }

                continue;
            }

            if (other is not null)
            {
                if (!other.Fingerprint.AsSpan().SequenceEqual(fingerprint))
                {
                    return Mismatch(request, null);
                }

                Interlocked.Increment(ref _waits);
                var remaining = wait - _time.GetElapsedTime(waitStart);
                if (remaining <= TimeSpan.Zero)
                {
                    return Failure(ErrorCode.Timeout, $"The first call to '{request.Capability}' with idempotency key '{request.IdempotencyKey}' did not finish within {wait.TotalMilliseconds:0} ms; retry with the same key to get its result.");
                }

                try
                {
                    var (outcome, stored) = await other.Done.Task.WaitAsync(remaining, _time, cancellationToken).ConfigureAwait(false);
                    if (stored)
                    {
                        Interlocked.Increment(ref _replays);
                        return AsReplay(outcome);
                    }

                    continue; // not stored (a transient failure): this call runs or waits again
                }
                catch (TimeoutException)
                {
                    return Failure(ErrorCode.Timeout, $"The first call to '{request.Capability}' with idempotency key '{request.IdempotencyKey}' did not finish within {wait.TotalMilliseconds:0} ms; retry with the same key to get its result.");
                }
                catch (OperationCanceledException)
                {
                    return Failure(ErrorCode.Cancelled, $"The call to '{request.Capability}' was cancelled by the caller.");
                }
            }

            return await LeadAsync(request, invoke, key, mine!, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<ActionOutcome> LeadAsync(ActionRequest request, Func<ActionRequest, CancellationToken, Task<ActionOutcome>> invoke, string key, Flight flight, CancellationToken cancellationToken)
    {
        ActionOutcome? outcome = null;
        var stored = false;
        try
        {
            outcome = await invoke(request, cancellationToken).ConfigureAwait(false);
            if (Storable(outcome))
            {
                stored = await StoreAsync(key, flight.Fingerprint, outcome).ConfigureAwait(false);
            }

            return outcome;
        }
        finally
        {
            lock (_gate)
            {
                _inFlight.Remove(key);
            }

            flight.Done.TrySetResult((outcome ?? Failure(ErrorCode.Internal, "The call ended without an outcome."), stored));
        }
    }

    /// <summary>What a retry would get again: a result, or a failure the provider gave that is not transient.</summary>
    internal static bool Storable(ActionOutcome outcome)
    {
        if (outcome.Error is not { } error)
        {
            return true;
        }

        return outcome.AgentId is not null
            && !error.Retryable
            && !ErrorCodes.IsRetryable(error.Code)
            && error.Code is not (ErrorCode.Cancelled or ErrorCode.Internal or ErrorCode.Unavailable or ErrorCode.TtlExpired);
    }

    private async Task<bool> StoreAsync(string key, byte[] fingerprint, ActionOutcome outcome)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var entry = new Entry(key, fingerprint, now);
        if (_log is null)
        {
            // A copy: the output may sit in a buffer its provider's transport owns.
            entry.Outcome = new ActionOutcome { OutputJson = outcome.OutputJson.ToArray(), Error = outcome.Error, ProviderId = outcome.ProviderId, AgentId = outcome.AgentId, Duration = outcome.Duration, Replayed = true };
            entry.Bytes = key.Length * 2L + outcome.OutputJson.Length + (outcome.Error?.CalculateSize() ?? 0) + 128;
        }
        else
        {
            try
            {
                var record = IdempotencyRecord.Encode(key, fingerprint, outcome);
                entry.Sequence = await _log.AppendAsync(record, now).AsTask().WaitAsync(AppendTimeout, _time).ConfigureAwait(false);
                entry.Bytes = key.Length * 2L + 96;
            }
            catch (Exception ex) when (ex is IOException or TimeoutException or ArgumentException or InvalidOperationException or ObjectDisposedException or UnauthorizedAccessException)
            {
                IdempotencyLog.StoreFailed(_logger, ex, LogText.Clean(outcome.AgentId ?? ""));
                return false;
            }

            if (now - Interlocked.Read(ref _lastRetentionMs) > 60_000)
            {
                Interlocked.Exchange(ref _lastRetentionMs, now);
                _log.ApplyRetention();
            }
        }

        lock (_gate)
        {
            Add(entry);
            Forget(now);
        }

        Interlocked.Increment(ref _stores);
        return true;
    }

    private void Add(Entry entry)
    {
        if (_index.Remove(entry.Key, out var old))
        {
            _memoryBytes -= old.Bytes;
        }

        _index[entry.Key] = entry;
        _order.Enqueue(entry);
        _memoryBytes += entry.Bytes;
    }

    /// <summary>Under the gate: drops keys past the window, then the oldest while over the bounds.</summary>
    private void Forget(long nowMs)
    {
        while (_order.TryPeek(out var head))
        {
            var live = _index.TryGetValue(head.Key, out var current) && ReferenceEquals(current, head);
            if (!live)
            {
                _order.Dequeue();
                continue;
            }

            var expired = head.StoredMs <= nowMs - _windowMs;
            var over = _index.Count > _options.MaxKeys || (_log is null && _memoryBytes > _options.MaxMemoryBytes);
            if (!expired && !over)
            {
                break;
            }

            _order.Dequeue();
            _index.Remove(head.Key);
            _memoryBytes -= head.Bytes;
            if (expired)
            {
                Interlocked.Increment(ref _expired);
            }
            else
            {
                Interlocked.Increment(ref _evictions);
            }
        }
    }

    private ActionOutcome? Load(Entry entry, string key)
    {
        if (entry.Outcome is { } held)
        {
            return held;
        }

        var records = _log!.Read(entry.Sequence, 1);
        if (records.Count == 1 && records[0].Sequence == entry.Sequence && IdempotencyRecord.TryDecode(records[0].Data, out var storedKey, out _, out var outcome) && storedKey == key)
        {
            return AsReplay(outcome);
        }

        return null; // removed by retention (max_disk_bytes) or unreadable: the call runs again
    }

    private void Rebuild(FileStreamLog log)
    {
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var from = log.SequenceAt(now - _windowMs);
        while (true)
        {
            var batch = log.Read(from, 4096);
            if (batch.Count == 0)
            {
                break;
            }

            lock (_gate)
            {
                foreach (var record in batch)
                {
                    if (IdempotencyRecord.TryDecodeHeader(record.Data.Span, out var key, out var fingerprint))
                    {
                        Add(new Entry(key, fingerprint, record.TimestampUnixMs) { Sequence = record.Sequence, Bytes = key.Length * 2L + 96 });
                    }
                    else
                    {
                        IdempotencyLog.Undecodable(_logger, record.Sequence);
                    }
                }

                Forget(now);
            }

            from = batch[^1].Sequence + 1;
        }

        // Keys dropped while rebuilding are not evictions of this run.
        Interlocked.Exchange(ref _evictions, 0);
        Interlocked.Exchange(ref _expired, 0);
    }

    private static ActionOutcome AsReplay(ActionOutcome outcome) => outcome.Replayed
        ? outcome
        : new ActionOutcome { OutputJson = outcome.OutputJson, Error = outcome.Error, ProviderId = outcome.ProviderId, AgentId = outcome.AgentId, Duration = outcome.Duration, Replayed = true };

    private static byte[] Fingerprint(ReadOnlyMemory<byte> input)
    {
        var hash = SHA256.HashData((input.IsEmpty ? s_emptyObject : input).Span);
        return hash[..16];
    }

    private static ActionOutcome Failure(ErrorCode code, string message) =>
        new() { Error = new Error { Code = code, Message = message, Retryable = ErrorCodes.IsRetryable(code) } };

    private static ActionOutcome Mismatch(ActionRequest request, long? storedMs) => Failure(
        ErrorCode.InvalidParams,
        $"Idempotency key '{request.IdempotencyKey}' was already used for a call to '{request.Capability}' with a different input"
        + (storedMs is { } ms ? $" (at {DateTimeOffset.FromUnixTimeMilliseconds(ms):u})" : " (still running)")
        + "; use a new key for a different call, or send the same input to get the first call's result.");

    public async ValueTask DisposeAsync()
    {
        if (_log is not null)
        {
            await _log.DisposeAsync().ConfigureAwait(false);
        }
    }

    private sealed class Entry(string key, byte[] fingerprint, long storedMs)
    {
        public string Key { get; } = key;

        public byte[] Fingerprint { get; } = fingerprint;

        public long StoredMs { get; } = storedMs;

        public long Sequence { get; set; }

        public ActionOutcome? Outcome { get; set; }

        public long Bytes { get; set; }
    }

    private sealed class Flight(byte[] fingerprint)
    {
        public byte[] Fingerprint { get; } = fingerprint;

        public TaskCompletionSource<(ActionOutcome Outcome, bool Stored)> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
