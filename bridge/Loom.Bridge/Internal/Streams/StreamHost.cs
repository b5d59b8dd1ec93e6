using System.Collections.Concurrent;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Bridge.Internal.Streams;

/// <summary>
/// The bridge's durable streams: which stream captures a topic (cached per topic), and where
/// dead letters go. With no stream configured the bridge holds none of this (the session's
/// publish path checks for null and nothing else).
/// </summary>
internal sealed class StreamHost : IAsyncDisposable
{
    private const int MaxCachedTopics = 65_536;

    private readonly Dictionary<string, DurableStream> _streams = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DurableStream?> _captureCache = new(StringComparer.Ordinal);
    private readonly EventBus _bus;

    private StreamHost(EventBus bus) => _bus = bus;

    public IReadOnlyCollection<DurableStream> Streams => _streams.Values;

    public static StreamHost? Open(BridgeOptions options, EventBus bus, TimeProvider time, ILogger logger)
    {
        if (options.Streams.Count == 0)
        {
            return null;
        }

        var host = new StreamHost(bus);
        foreach (var config in options.Streams)
        {
            host._streams[config.Name] = DurableStream.Open(config, options.DataDirectory!, time, logger, host.PublishAsync);
        }

        return host;
    }

    public bool TryGet(string name, out DurableStream stream) => _streams.TryGetValue(name, out stream!);

    /// <summary>The stream that captures <paramref name="topic"/> (the first in configuration order), or null.</summary>
    public DurableStream? Capture(string topic)
    {
        if (_captureCache.TryGetValue(topic, out var cached))
        {
            return cached;
        }

        DurableStream? found = null;
        foreach (var stream in _streams.Values)
        {
            if (stream.Captures(topic))
            {
                found = stream;
                break;
            }
        }

        if (_captureCache.Count < MaxCachedTopics)
        {
            _captureCache.TryAdd(topic, found);
        }

        return found;
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
        foreach (var stream in _streams.Values)
        {
            await stream.DisposeAsync();
        }
    }
}
