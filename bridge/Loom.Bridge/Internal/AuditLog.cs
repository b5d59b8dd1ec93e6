using System.Buffers;
using System.Text.Json;
using System.Threading.Channels;
using Loom.Bridge.Internal.Metrics;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal;

/// <summary>One audit record. Never holds a secret: no token text, and only the first 8 characters of a session id.</summary>
internal sealed record AuditRecord(string Kind, string Action, string Outcome)
{
    /// <summary>A refusal by permissions or identity binding (PERMISSION_DENIED, HTTP 403).</summary>
    public const string Refusal = "refusal";

    /// <summary>A credential failure: no, a bad or an expired token, a bad client certificate (UNAUTHENTICATED, HTTP 401, TLS).</summary>
    public const string Credential = "credential";

    /// <summary>An admin action on the HTTP port (an MCP tool call; reads with <see cref="AuditOptions.IncludeReads"/>).</summary>
    public const string Admin = "admin";

    /// <summary>A registration, reconnect or unregistration (left, expired, shutdown).</summary>
    public const string Registration = "registration";

    /// <summary>A per-identity limit refused something (RESOURCE_EXHAUSTED).</summary>
    public const string Limit = "limit";

    public string? Identity { get; init; }

    public string? AgentId { get; init; }

    /// <summary>The session id; written cut to its first 8 characters.</summary>
    public string? Session { get; init; }

    public string? Resource { get; init; }

    public string? Reason { get; init; }

    public string? Remote { get; init; }

    /// <summary>Set by <see cref="AuditLog.Record"/>.</summary>
    public DateTimeOffset Time { get; set; }
}

/// <summary>
/// The audit trail: <see cref="Record"/> never waits. Records go into a bounded channel (a full one
/// drops the record and counts it: <c>loom_audit_dropped_total{reason="queue_full"}</c>); one
/// background writer appends each as a JSON line to the file (flushed when the queue runs dry and at
/// least every <see cref="AuditOptions.FlushInterval"/>, rotated at <see cref="AuditOptions.MaxFileBytes"/>)
/// and publishes it on <c>_loom.audit.{kind}</c>.
/// </summary>
internal sealed class AuditLog : IAsyncDisposable
{
    public const string TopicPrefix = "_loom.audit.";
    public const string Sender = "_loom.audit";
    private const int MaxField = 256;
    private const int MaxReason = 1024;

    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly AuditOptions _options;
    private readonly EventBus _bus;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly BridgeMetrics _metrics;
    private readonly Channel<AuditRecord> _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly ArrayBufferWriter<byte> _line = new(512);
    private Task? _writer;
    private FileStream? _file;
    private long _fileLength;
    private bool _fileFailed;
    private int _disposed;

    public AuditLog(AuditOptions options, EventBus bus, TimeProvider time, ILogger logger, BridgeMetrics metrics)
    {
        _options = options;
        _bus = bus;
        _time = time;
        _logger = logger;
        _metrics = metrics;
        _queue = Channel.CreateBounded<AuditRecord>(new BoundedChannelOptions(options.QueueCapacity) { FullMode = BoundedChannelFullMode.Wait, SingleReader = true });
    }

    /// <summary>Whether subscribers of <c>_loom.audit.&gt;</c> get events.</summary>
    public bool PublishesEvents => _options.Events;

    /// <summary>Whether successful admin reads are recorded too.</summary>
    public bool IncludeReads => _options.IncludeReads;

    /// <summary>Whether <paramref name="topic"/> is an audit topic (only the bridge publishes there; only audit readers receive it).</summary>
    public static bool IsAuditTopic(string topic) =>
        topic.Length >= Sender.Length && topic[0] == '_' && topic.StartsWith(Sender, StringComparison.Ordinal) && (topic.Length == Sender.Length || topic[Sender.Length] == '.');

    /// <summary>Opens the file (its folder made owner-only) and starts the writer.</summary>
    /// <exception cref="IOException">The file cannot be opened (the message names it).</exception>
    public void Start()
    {
        if (_options.File is { } path)
        {
            OpenFile(path);
        }

        _writer = Task.Run(RunAsync);
    }

    /// <summary>Queues a record; never waits. A full queue drops it (counted).</summary>
    public void Record(AuditRecord record)
    {
        record.Time = _time.GetUtcNow();
        if (Volatile.Read(ref _disposed) != 0 || !_queue.Writer.TryWrite(record))
        {
            _metrics.AuditDropped("queue_full");
        }
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        var lastFlush = _time.GetTimestamp();
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token).ConfigureAwait(false))
            {
                while (reader.TryRead(out var record))
                {
                    await WriteAsync(record).ConfigureAwait(false);
                    if (_time.GetElapsedTime(lastFlush) >= _options.FlushInterval)
                    {
                        Flush();
                        lastFlush = _time.GetTimestamp();
                    }
                }

                Flush(); // the queue ran dry
                lastFlush = _time.GetTimestamp();
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Past the dispose bound: what is left is counted below.
        }
        finally
        {
            Flush();
        }
    }

    private async ValueTask WriteAsync(AuditRecord record)
    {
        _line.ResetWrittenCount();
        using (var json = new Utf8JsonWriter(_line, WriterOptions))
        {
            json.WriteStartObject();
            json.WriteString("ts", record.Time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", System.Globalization.CultureInfo.InvariantCulture));
            json.WriteString("kind", record.Kind);
            Field(json, "identity", record.Identity);
            Field(json, "agent", record.AgentId);
            Field(json, "session", record.Session is { Length: > 8 } s ? s[..8] : record.Session);
            Field(json, "action", record.Action);
            Field(json, "resource", record.Resource);
            Field(json, "outcome", record.Outcome);
            Field(json, "reason", record.Reason, MaxReason);
            Field(json, "remote", record.Remote);
            json.WriteEndObject();
        }

        var payload = _line.WrittenMemory;
        if (_file is not null)
        {
            WriteLine(payload.Span);
        }

        if (_options.Events)
        {
            var envelope = new Envelope
            {
                Id = Guid.NewGuid().ToString("N"),
                Topic = TopicPrefix + record.Kind,
                Sender = Sender,
                ContentType = "application/json",
                Payload = Google.Protobuf.ByteString.CopyFrom(payload.Span),
            };
            try
            {
                using var bound = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                bound.CancelAfter(TimeSpan.FromSeconds(1)); // a blocking audit subscriber may not hold up the file
                var result = await _bus.PublishAsync(envelope, bound.Token).ConfigureAwait(false);
                if (result.Status is not (PublishStatus.Accepted or PublishStatus.NoSubscribers))
                {
                    _metrics.AuditDropped("event_refused");
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or LoomException or ObjectDisposedException)
            {
                _metrics.AuditDropped("event_refused");
            }
        }

        _metrics.AuditRecorded(record.Kind);
    }

    private static void Field(Utf8JsonWriter json, string name, string? value, int max = MaxField)
    {
        if (value is null)
        {
            json.WriteNull(name);
        }
        else
        {
            json.WriteString(name, value.Length <= max ? value : string.Concat(value.AsSpan(0, max), "…"));
        }
    }

    private void WriteLine(ReadOnlySpan<byte> line)
    {
        try
        {
            if (_options.MaxFileBytes > 0 && _fileLength > 0 && _fileLength + line.Length + 1 > _options.MaxFileBytes)
            {
                Rotate();
            }

            _file!.Write(line);
            _file.WriteByte((byte)'\n');
            _fileLength += line.Length + 1;
            _fileFailed = false;
        }
        catch (IOException ex)
        {
            _metrics.AuditDropped("file_error");
            if (!_fileFailed)
            {
                _fileFailed = true;
                Log.AuditFileFailed(_logger, _options.File!, ex.Message);
            }
        }
    }

    private void Rotate()
    {
        var path = _options.File!;
        _file!.Flush();
        _file.Dispose();
        for (var i = _options.MaxFiles - 1; i >= 1; i--)
        {
            if (System.IO.File.Exists($"{path}.{i}"))
            {
                System.IO.File.Move($"{path}.{i}", $"{path}.{i + 1}", overwrite: true);
            }
        }

        System.IO.File.Move(path, $"{path}.1", overwrite: true);
        OpenFile(path);
    }

    private void OpenFile(string path)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(folder))
        {
            if (OperatingSystem.IsWindows())
            {
                Directory.CreateDirectory(folder);
            }
            else
            {
                Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
        }

        var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read, BufferSize = 64 * 1024 };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        try
        {
            _file = new FileStream(path, options);
        }
        catch (Exception ex) when (ex is UnauthorizedAccessException or IOException)
        {
            throw new IOException($"The audit log '{path}' (audit_log, --audit-log) cannot be opened: {ex.Message}", ex);
        }

        _fileLength = _file.Length;
    }

    private void Flush()
    {
        try
        {
            _file?.Flush();
        }
        catch (IOException ex)
        {
            if (!_fileFailed)
            {
                _fileFailed = true;
                Log.AuditFileFailed(_logger, _options.File!, ex.Message);
            }
        }
    }

    /// <summary>Stops taking records, writes what is queued within <see cref="AuditOptions.DisposeTimeout"/>, and closes the file; the rest is counted as dropped.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _queue.Writer.TryComplete();
        if (_writer is not null)
        {
            try
            {
                await _writer.WaitAsync(_options.DisposeTimeout, _time).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                await _stop.CancelAsync().ConfigureAwait(false);
                await _writer.WaitAsync(TimeSpan.FromSeconds(2), _time).ContinueWith(static _ => { }, TaskScheduler.Default).ConfigureAwait(false);
            }
        }

        var left = 0;
        while (_queue.Reader.TryRead(out _))
        {
            left++;
        }

        if (left > 0)
        {
            _metrics.AuditDropped("shutdown", left);
        }

        if (_writer is null || _writer.IsCompleted)
        {
            _file?.Dispose();
        }

        _stop.Dispose();
    }
}
