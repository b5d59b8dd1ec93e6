using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace Loom.Grpc.Internal;

/// <summary>
/// Reads Length-Prefixed-Messages from a <see cref="PipeReader"/> incrementally. Messages are parsed straight
/// from the pipe's pooled segments; nothing is copied except the 5-byte header. One reader at a time.
/// </summary>
internal sealed class GrpcMessageReader
{
    private readonly PipeReader _reader;
    private readonly int _maxMessageSize;

    public GrpcMessageReader(PipeReader reader, int maxMessageSize)
    {
        _reader = reader;
        _maxMessageSize = maxMessageSize;
    }

    /// <summary>Bytes of the last message read (without its 5-byte header).</summary>
    public int LastMessageSize { get; private set; }

    /// <summary>
    /// The next message, or null (default) at the end of the stream.
    /// </summary>
    /// <exception cref="GrpcStatusException">Protocol errors: size limit, compression, truncated or undecodable message.</exception>
    /// <exception cref="OperationCanceledException">Cancelled, or the pending read was cancelled (<see cref="PipeReader.CancelPendingRead"/>).</exception>
    public ValueTask<T?> ReadAsync<T>(MessageParser<T> parser, CancellationToken cancellationToken)
        where T : IMessage<T> => ReadAsync(parser.ParseFrom, cancellationToken);

    /// <summary>
    /// The next message decoded by <paramref name="decode"/> (which throws <see cref="InvalidProtocolBufferException"/>
    /// for bytes it cannot decode; the bytes are valid only during the call), or null (default) at the end of the stream.
    /// </summary>
    /// <exception cref="GrpcStatusException">Protocol errors: size limit, compression, truncated or undecodable message.</exception>
    /// <exception cref="OperationCanceledException">Cancelled, or the pending read was cancelled (<see cref="PipeReader.CancelPendingRead"/>).</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<T?> ReadAsync<T>(Func<ReadOnlySequence<byte>, T> decode, CancellationToken cancellationToken)
    {
        while (true)
        {
            if (!_reader.TryRead(out var result))
            {
                result = await _reader.ReadAsync(cancellationToken);
            }

            if (result.IsCanceled)
            {
                _reader.AdvanceTo(result.Buffer.Start);
                throw new OperationCanceledException("The read was cancelled.");
            }

            var buffer = result.Buffer;
            ReadOnlySequence<byte> payload;
            bool complete;
            try
            {
                complete = GrpcFraming.TryReadMessage(ref buffer, _maxMessageSize, out payload);
            }
            catch
            {
                _reader.AdvanceTo(result.Buffer.Start);
                throw;
            }

            if (complete)
            {
                T message;
                try
                {
                    message = decode(payload);
                }
                catch (InvalidProtocolBufferException ex)
                {
                    _reader.AdvanceTo(result.Buffer.Start);
                    throw new GrpcStatusException(GrpcStatusCode.Internal, "Failed to deserialize message: " + ex.Message);
                }

                LastMessageSize = (int)payload.Length;
                _reader.AdvanceTo(buffer.Start);
                return message;
            }

            if (result.IsCompleted)
            {
                var leftover = buffer.Length;
                _reader.AdvanceTo(buffer.End);
                if (leftover == 0)
                {
                    return default;
                }

                throw new GrpcStatusException(GrpcStatusCode.Internal, "The stream ended in the middle of a message.");
            }

            // Need more: everything seen so far is examined, nothing consumed.
            _reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
