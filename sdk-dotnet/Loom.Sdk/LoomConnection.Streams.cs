using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk;

// Stream administration from an agent (the same as POST/GET/DELETE /v1/streams; docs/durability.md).
// Needs the `streams` permission when auth is on (PERMISSION_DENIED otherwise).
public sealed partial class LoomConnection
{
    /// <summary>
    /// Creates a durable stream capturing <c>spec.Subjects</c>. Creating one that exists with the
    /// same settings succeeds (idempotent); with different settings it fails with INVALID_PARAMS.
    /// </summary>
    /// <returns>The stream's state after the create.</returns>
    /// <exception cref="LoomException">INVALID_PARAMS (bad name, no subjects, overlapping subjects, other settings), PERMISSION_DENIED, UNAVAILABLE, TIMEOUT.</exception>
    public async Task<StreamState> CreateStreamAsync(StreamSpec spec, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        CheckName(spec.Name, "/create/name");
        var reply = await _durable.AdminAsync(new StreamAdminRequest { Create = spec }, $"create of stream '{spec.Name}'", cancellationToken);
        return Single(reply, spec.Name);
    }

    /// <summary>Describes a stream: its settings, first and last sequence, events and bytes held.</summary>
    /// <exception cref="LoomException">INVALID_PARAMS when there is no such stream; UNAVAILABLE, TIMEOUT.</exception>
    public async Task<StreamState> StreamInfoAsync(string name, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        CheckName(name, "/info");
        var reply = await _durable.AdminAsync(new StreamAdminRequest { Info = name }, $"info of stream '{name}'", cancellationToken);
        return Single(reply, name);
    }

    /// <summary>Lists every stream of the bridge with its state.</summary>
    public async Task<IReadOnlyList<StreamState>> ListStreamsAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        var reply = await _durable.AdminAsync(new StreamAdminRequest { List = true }, "list of streams", cancellationToken);
        return [.. reply.Streams];
    }

    /// <summary>Deletes a stream and the events it holds (its consumers go with it).</summary>
    /// <exception cref="LoomException">INVALID_PARAMS when there is no such stream; PERMISSION_DENIED, UNAVAILABLE, TIMEOUT.</exception>
    public async Task DeleteStreamAsync(string name, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_state.IsDisposed, this);
        CheckName(name, "/delete");
        await _durable.AdminAsync(new StreamAdminRequest { Delete = name }, $"delete of stream '{name}'", cancellationToken);
    }

    private static void CheckName(string name, string path)
    {
        if (string.IsNullOrEmpty(name))
        {
            throw new InvalidParamsException("A stream name is required (letters, digits, '-' and '_').", path);
        }
    }

    private static StreamState Single(StreamAdminReply reply, string name) =>
        reply.Streams.Count > 0 ? reply.Streams[0] : throw new LoomException(ErrorCode.Internal, $"The bridge answered for stream '{name}' without its state.");
}
