using System.Runtime.CompilerServices;
using Google.Protobuf;
using Loom.Grpc.Internal;

namespace Loom.Grpc;

/// <summary>
/// A bidirectional streaming call. One writer and one reader may run concurrently. Dispose ends the call
/// (resetting the stream if the status has not arrived yet).
/// </summary>
public sealed class GrpcDuplexCall<TRequest, TResponse> : IGrpcStreamReader<TResponse>, IAsyncDisposable
    where TRequest : IMessage<TRequest>
    where TResponse : IMessage<TResponse>
{
    private readonly ClientCall _call;
    private readonly DuplexRequestContent _content = new();
    private readonly Func<System.Buffers.ReadOnlySequence<byte>, TResponse> _decode;
    private readonly int _maxSendMessageSize;
    private int _writerBusy;           // 1 while WriteAsync or CompleteRequestAsync runs
    private bool _requestCompleted;
    private volatile bool _disposed;
    private TResponse? _current;

    internal GrpcDuplexCall(GrpcChannel channel, Uri uri, Func<System.Buffers.ReadOnlySequence<byte>, TResponse> decode, GrpcCallOptions options)
    {
        _decode = decode;
        _maxSendMessageSize = channel.Options.MaxSendMessageSize;
        _call = new ClientCall(channel, options, _content);
        try
        {
            _call.Start(uri, _content, options);
        }
        catch
        {
            // Bad request metadata: nothing was sent.
            _call.Dispose();
            throw;
        }

        // Observed here so a caller that only reads (and gets the same status there) leaves no unobserved fault.
        _ = _call.ResponseHeadersTask.ContinueWith(
            static t => _ = t.Exception,
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    /// <summary>Completes when the response headers arrive; faults with <see cref="GrpcStatusException"/> when the server ends the call at once (trailers-only) or the call fails before.</summary>
    public Task ResponseHeadersAsync => _call.ResponseHeadersTask;

    /// <summary>The message read by the last successful <see cref="MoveNextAsync"/>.</summary>
    public TResponse Current => _current ?? throw new InvalidOperationException("No current message: call MoveNextAsync first.");

    /// <summary>Trailers of the call (every field, including grpc-status); empty until the status has been read.</summary>
    public IReadOnlyDictionary<string, string> Trailers => _call.Trailers;

    /// <summary>Sends one message and flushes it. One write at a time.</summary>
    /// <exception cref="InvalidOperationException">Another write is in progress, the request was completed, or the call is complete.</exception>
    /// <exception cref="GrpcStatusException">The call has ended (cancelled, deadline, failed) or the message is over the send limit.</exception>
    public ValueTask WriteAsync(TRequest message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        return WriteCoreAsync(message, default, cancellationToken);
    }

    /// <summary>
    /// Sends one message given as its protobuf bytes (encoded by hand; the 5-byte framing is added) and flushes it.
    /// One write at a time, shared with <see cref="WriteAsync"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another write is in progress, the request was completed, or the call is complete.</exception>
    /// <exception cref="GrpcStatusException">The call has ended (cancelled, deadline, failed) or the message is over the send limit.</exception>
    public ValueTask WriteRawAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken) =>
        WriteCoreAsync(default, message, cancellationToken);

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteCoreAsync(TRequest? message, ReadOnlyMemory<byte> raw, CancellationToken cancellationToken)
    {
        EnterWriter();
        try
        {
            if (_requestCompleted)
            {
                throw new InvalidOperationException("The request stream is already completed: no more messages can be written.");
            }

            _call.ThrowIfEnded();
            var size = message is null ? GrpcFraming.CheckSendSize(raw.Length, _maxSendMessageSize) : GrpcFraming.MeasureForSend(message, _maxSendMessageSize);
            try
            {
                var writer = await _content.Writer.WaitAsync(cancellationToken);
                if (message is null)
                {
                    GrpcFraming.WriteRawMessage(writer, raw.Span);
                }
                else
                {
                    GrpcFraming.WriteMessage(writer, message, size);
                }

                await writer.FlushAsync(cancellationToken);
            }
            catch (Exception ex) when (ex is not GrpcStatusException)
            {
                throw _call.MapWriteFailure(ex, cancellationToken);
            }
        }
        finally
        {
            Volatile.Write(ref _writerBusy, 0);
        }
    }

    /// <summary>Half-closes the call: the server sees the end of the request stream. Idempotent.</summary>
    /// <exception cref="InvalidOperationException">A write is in progress.</exception>
    public ValueTask CompleteRequestAsync()
    {
        EnterWriter();
        try
        {
            _requestCompleted = true;
            _content.Complete();
        }
        finally
        {
            Volatile.Write(ref _writerBusy, 0);
        }

        return ValueTask.CompletedTask;
    }

    /// <summary>Reads the next response message; false at the end of an OK call.</summary>
    /// <exception cref="GrpcStatusException">The call ended with a non-OK status; cancelling <paramref name="cancellationToken"/> cancels the call (CANCELLED).</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> MoveNextAsync(CancellationToken cancellationToken)
    {
        _current = await _call.ReadMessageAsync(_decode, cancellationToken);
        return _current is not null;
    }

    /// <summary>Cancels the call: the HTTP/2 stream is reset, pending and later operations fail with CANCELLED.</summary>
    public void Cancel() => _call.Cancel();

    public ValueTask DisposeAsync()
    {
        _disposed = true;
        _call.Dispose();

        // Return the request pipe's pooled buffers, unless a write still holds the writer.
        if (Interlocked.CompareExchange(ref _writerBusy, 1, 0) == 0 && _content.Writer.IsCompletedSuccessfully)
        {
            try
            {
                _content.Writer.Result.Complete();
            }
            catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException)
            {
                // Nothing is buffered (every write flushes); a dead stream is fine here.
            }
        }

        return ValueTask.CompletedTask;
    }

    private void EnterWriter()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.CompareExchange(ref _writerBusy, 1, 0) != 0)
        {
            throw new InvalidOperationException("Another write or CompleteRequestAsync is in progress: a call has a single writer.");
        }
    }
}
