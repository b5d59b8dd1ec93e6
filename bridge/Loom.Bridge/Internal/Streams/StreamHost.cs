using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Serialization;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Streams;

/// <summary>
/// The bridge's durable streams: which stream captures a topic (cached per topic), where dead
/// letters go, and streams created at run time (by an agent or <c>POST /v1/streams</c>), whose
/// settings are kept in <c>DATA_DIR/streams.json</c> so they come back after a restart. With no
/// data directory the bridge holds none of this (the session's publish path checks for null and
/// nothing else); with one but no stream, a publish costs one volatile read.
/// </summary>
internal sealed class StreamHost : IAsyncDisposable
{
    private const int MaxCachedTopics = 65_536;

    /// <summary>At most this many streams (configured and created) per bridge.</summary>
    public const int MaxStreams = 256;

    private readonly ConcurrentDictionary<string, DurableStream?> _captureCache = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _changes = new(1, 1);
    private readonly HashSet<string> _configured = new(StringComparer.Ordinal);
    private readonly EventBus _bus;
    private readonly string _dataDirectory;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;

    // Copy-on-write: readers (every publish) take the current array; changes replace it.
    private volatile DurableStream[] _streams = [];

    private StreamHost(EventBus bus, string dataDirectory, TimeProvider time, ILogger logger)
    {
        _bus = bus;
        _dataDirectory = dataDirectory;
        _time = time;
        _logger = logger;
    }

    public IReadOnlyCollection<DurableStream> Streams => _streams;

    private string CreatedFile => Path.Combine(_dataDirectory, "streams.json");

    public static StreamHost? Open(BridgeOptions options, EventBus bus, TimeProvider time, ILogger logger)
    {
        if (string.IsNullOrWhiteSpace(options.DataDirectory))
        {
            return null;
        }

        var host = new StreamHost(bus, options.DataDirectory, time, logger);
        var streams = new List<DurableStream>();
        foreach (var config in options.Streams)
        {
            streams.Add(host.OpenStream(config));
            host._configured.Add(config.Name);
        }

        foreach (var created in host.LoadCreated())
        {
            if (host._configured.Contains(created.Name))
            {
                StreamsLog.CreatedStreamShadowed(logger, created.Name);
                continue;
            }

            streams.Add(host.OpenStream(created));
        }

        host._streams = [.. streams];
        return host;
    }

    public bool TryGet(string name, out DurableStream stream)
    {
        foreach (var s in _streams)
        {
            if (s.Name == name)
            {
                stream = s;
                return true;
            }
        }

        stream = null!;
        return false;
    }

    /// <summary>The stream that captures <paramref name="topic"/> (the first in configuration order), or null.</summary>
    public DurableStream? Capture(string topic)
    {
        var streams = _streams;
        if (streams.Length == 0)
        {
            return null;
        }

        if (_captureCache.TryGetValue(topic, out var cached))
        {
            return cached;
        }

        DurableStream? found = null;
        foreach (var stream in streams)
        {
            if (stream.Captures(topic))
            {
                found = stream;
                break;
            }
        }

        // Only cache against the array we searched: a stream created meanwhile clears the cache after swapping.
        if (_captureCache.Count < MaxCachedTopics && ReferenceEquals(streams, _streams))
        {
            _captureCache.TryAdd(topic, found);
        }

        return found;
    }

    /// <summary>
    /// Creates a stream, or returns the existing one when it has the same settings. Fails with
    /// INVALID_ARGUMENT for bad settings, different settings under the same name, or subjects that
    /// overlap another stream's (a topic is captured by one stream only).
    /// </summary>
    public async Task<DurableStream> CreateAsync(StreamConfig config, CancellationToken token)
    {
        try
        {
            StreamConfig.ValidateAll([config], _dataDirectory);
        }
        catch (ArgumentException ex)
        {
            throw new InvalidParamsException(ex.Message.Split(" (Parameter", 2)[0], "/create");
        }

        await _changes.WaitAsync(token);
        try
        {
            if (TryGet(config.Name, out var existing))
            {
                return SameSettings(existing.Config, config)
                    ? existing
                    : throw new InvalidParamsException($"Stream '{config.Name}' already exists with other settings (subjects {string.Join(", ", existing.Config.Subjects)}); delete it first or use another name.", "/create/name");
            }

            foreach (var other in _streams)
            {
                foreach (var subject in config.Subjects)
                {
                    foreach (var held in other.Config.Subjects)
                    {
                        if (Overlap(subject, held))
                        {
                            throw new InvalidParamsException($"Subject '{subject}' overlaps '{held}' of stream '{other.Name}'; a topic is captured by one stream only.", "/create/subjects");
                        }
                    }
                }
            }

            if (_streams.Length >= MaxStreams)
            {
                throw new ResourceExhaustedException($"The bridge holds {MaxStreams} streams, its limit; delete one first.");
            }

            var stream = OpenStream(config);
            _streams = [.. _streams, stream];
            _captureCache.Clear();
            SaveCreated();
            StreamsLog.StreamCreated(_logger, config.Name, string.Join(", ", config.Subjects));
            return stream;
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>Deletes a stream created at run time, its events and its consumers. False when there is none by that name.</summary>
    public async Task<bool> DeleteAsync(string name, CancellationToken token)
    {
        await _changes.WaitAsync(token);
        DurableStream? stream;
        try
        {
            if (!TryGet(name, out stream))
            {
                return false;
            }

            if (_configured.Contains(name))
            {
                throw new InvalidParamsException($"Stream '{name}' is defined in loom.yaml (streams:); remove it there and restart the bridge.", "/delete");
            }

            _streams = [.. _streams.Where(s => !ReferenceEquals(s, stream))];
            _captureCache.Clear();
            SaveCreated();
        }
        finally
        {
            _changes.Release();
        }

        await stream.DisposeAsync();
        var directory = StreamDirectory(name);
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException ex)
        {
            StreamsLog.StreamFilesNotDeleted(_logger, name, directory, ex.Message);
        }

        StreamsLog.StreamDeleted(_logger, name);
        return true;
    }

    public static StreamState State(DurableStream stream)
    {
        var config = stream.Config;
        var spec = new StreamSpec
        {
            Name = config.Name,
            MaxAgeMs = (ulong)config.MaxAge.TotalMilliseconds,
            MaxBytes = (ulong)config.MaxBytes,
            MaxEvents = (ulong)config.MaxEvents,
            DuplicateWindowMs = (ulong)config.DuplicateWindow.TotalMilliseconds,
        };
        spec.Subjects.AddRange(config.Subjects);
        return new StreamState
        {
            Spec = spec,
            FirstSequence = (ulong)Math.Max(0, stream.Log.FirstSequence),
            LastSequence = (ulong)Math.Max(0, stream.Log.LastSequence),
            Events = (ulong)Math.Max(0, stream.Log.Count),
            Bytes = (ulong)Math.Max(0, stream.Log.Bytes),
        };
    }

    /// <summary>The settings a <see cref="StreamSpec"/> asks for (zero duplicate window: the default).</summary>
    public static StreamConfig ConfigFrom(StreamSpec spec) => new()
    {
        Name = spec.Name,
        Subjects = [.. spec.Subjects],
        MaxAge = TimeSpan.FromMilliseconds(spec.MaxAgeMs),
        MaxBytes = (long)Math.Min(spec.MaxBytes, long.MaxValue),
        MaxEvents = (long)Math.Min(spec.MaxEvents, long.MaxValue),
        DuplicateWindow = spec.DuplicateWindowMs == 0 ? TimeSpan.FromMinutes(2) : TimeSpan.FromMilliseconds(spec.DuplicateWindowMs),
    };

    /// <summary>True when some topic matches both patterns (<c>*</c> one token, <c>&gt;</c> one or more).</summary>
    internal static bool Overlap(string a, string b)
    {
        var x = a.Split('.');
        var y = b.Split('.');
        for (var i = 0; ; i++)
        {
            if (i == x.Length || i == y.Length)
            {
                return x.Length == y.Length;
            }

            if (x[i] == ">" || y[i] == ">")
            {
                return true;
            }

            if (x[i] != "*" && y[i] != "*" && x[i] != y[i])
            {
                return false;
            }
        }
    }

    private static bool SameSettings(StreamConfig a, StreamConfig b) =>
        a.Subjects.SequenceEqual(b.Subjects, StringComparer.Ordinal)
        && a.MaxAge == b.MaxAge && a.MaxBytes == b.MaxBytes && a.MaxEvents == b.MaxEvents && a.DuplicateWindow == b.DuplicateWindow;

    private string StreamDirectory(string name) => Path.Combine(_dataDirectory, "streams", name);

    private DurableStream OpenStream(StreamConfig config) => DurableStream.Open(config, _dataDirectory, _time, _logger, PublishAsync);

    private List<StreamConfig> LoadCreated()
    {
        if (!File.Exists(CreatedFile))
        {
            return [];
        }

        try
        {
            var saved = JsonSerializer.Deserialize(File.ReadAllBytes(CreatedFile), StreamHostJsonContext.Default.ListCreatedStream) ?? [];
            var configs = saved.Select(s => new StreamConfig
            {
                Name = s.Name,
                Subjects = s.Subjects,
                MaxAge = TimeSpan.FromMilliseconds(s.MaxAgeMs),
                MaxBytes = s.MaxBytes,
                MaxEvents = s.MaxEvents,
                DuplicateWindow = TimeSpan.FromMilliseconds(s.DuplicateWindowMs),
            }).ToList();
            StreamConfig.ValidateAll(configs, _dataDirectory);
            return configs;
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException or IOException)
        {
            // Refuse to start rather than silently forget streams whose events are on disk.
            throw new InvalidOperationException($"{CreatedFile} (the streams created at run time) is unreadable: {ex.Message}. Fix or remove the file; the streams' events stay under {Path.Combine(_dataDirectory, "streams")}.", ex);
        }
    }

    private void SaveCreated()
    {
        var created = _streams.Where(s => !_configured.Contains(s.Name)).Select(s => new CreatedStream(
            s.Name,
            [.. s.Config.Subjects],
            (long)s.Config.MaxAge.TotalMilliseconds,
            s.Config.MaxBytes,
            s.Config.MaxEvents,
            (long)s.Config.DuplicateWindow.TotalMilliseconds)).ToList();
        Directory.CreateDirectory(_dataDirectory);
        var temporary = CreatedFile + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            JsonSerializer.Serialize(file, created, StreamHostJsonContext.Default.ListCreatedStream);
            file.Flush(flushToDisk: true);
        }

        File.Move(temporary, CreatedFile, overwrite: true);
    }

    /// <summary>A publish made by the bridge itself (dead letters): stored when a stream captures it, then on the bus.</summary>
    public async ValueTask PublishAsync(Envelope envelope)
    {
        if (Capture(envelope.Topic) is { } stream)
        {
            var (stored, duplicate) = stream.Append(envelope);
            await stored;
            if (duplicate)
            {
                return;
            }
        }

        await _bus.PublishAsync(envelope, CancellationToken.None);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var stream in _streams)
        {
            await stream.DisposeAsync();
        }

        _changes.Dispose();
    }
}

internal sealed record CreatedStream(string Name, List<string> Subjects, long MaxAgeMs, long MaxBytes, long MaxEvents, long DuplicateWindowMs);

[JsonSerializable(typeof(List<CreatedStream>))]
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
internal sealed partial class StreamHostJsonContext : JsonSerializerContext;
