using System.IO.Pipelines;
using System.Net;
using Google.Protobuf;

namespace Loom.Grpc.Internal;

/// <summary>The single request message of a unary call, serialized straight into the request stream's pooled pipe.</summary>
internal sealed class UnaryRequestContent : HttpContent
{
    private readonly IMessage _message;
    private readonly int _size;

    public UnaryRequestContent(IMessage message, int size)
    {
        _message = message;
        _size = size;
        Headers.TryAddWithoutValidation("Content-Type", GrpcProtocol.ContentType);
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        // Serialized at send time (not before) so a transparent retry can serialize again.
        var writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
        try
        {
            GrpcFraming.WriteMessage(writer, _message, _size);
            await writer.FlushAsync(cancellationToken);
        }
        finally
        {
            await writer.CompleteAsync();
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}

/// <summary>
/// The request stream of a duplex call. HttpClient calls <see cref="SerializeToStreamAsync(Stream, TransportContext?, CancellationToken)"/>
/// once the HEADERS are queued; it flushes them at once (or they stall until the first message), hands the stream
/// to the call's writer, and returns (END_STREAM) when the call half-closes.
/// </summary>
internal sealed class DuplexRequestContent : HttpContent
{
    private readonly TaskCompletionSource<PipeWriter> _writer = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public DuplexRequestContent()
    {
        Headers.TryAddWithoutValidation("Content-Type", GrpcProtocol.ContentType);
    }

    /// <summary>The writer over the request stream, once HttpClient has opened it.</summary>
    public Task<PipeWriter> Writer => _writer.Task;

    /// <summary>Half-close: ends the request stream.</summary>
    public void Complete() => _completed.TrySetResult();

    /// <summary>Ends the request stream abnormally (the HTTP/2 stream is reset).</summary>
    public void Abort()
    {
        _writer.TrySetCanceled();
        _completed.TrySetCanceled();
    }

    protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
        SerializeToStreamAsync(stream, context, CancellationToken.None);

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken)
    {
        await stream.FlushAsync(cancellationToken);

        // Single use: messages written to a stream that was refused cannot be replayed, so a transparent retry
        // (HttpClient re-serializes content after REFUSED_STREAM) must fail rather than lose them.
        if (!_writer.TrySetResult(PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true))))
        {
            throw new IOException("The request stream of a duplex call cannot be sent twice.");
        }

        try
        {
            // Each write flushes, so the pipe never holds data when the request completes.
            await _completed.Task.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested && !_completed.Task.IsCanceled)
        {
            // HttpClient stopped the request body: the stream was reset or refused (not a cancel of ours).
            throw new IOException("The HTTP/2 request stream was reset.");
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
