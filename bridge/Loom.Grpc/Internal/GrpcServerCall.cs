using System.Runtime.CompilerServices;
using Google.Protobuf;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Loom.Grpc.Internal;

/// <summary>
/// One server call: owns the request reader, the response writer (serialized by a lock, since the header flush
/// of streaming calls may race a handler's first write), the deadline, and the final status.
/// </summary>
internal sealed class GrpcServerCall : IDisposable
{
    private readonly HttpContext _http;
    private readonly GrpcServerOptions _options;
    private readonly ILogger _logger;
    private readonly GrpcMessageReader _reader;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CancellationTokenSource? _deadlineCts;
    private readonly CancellationTokenSource? _callCts;
    private readonly CancellationTokenRegistration _deadlineRegistration;

    private bool _responseStarted;   // headers flushed or a message written: the status goes in trailers
    private bool _completed;         // the handler returned: no more writes
    private volatile bool _clientReset;
    private GrpcStatusException? _protocolError;

    public GrpcServerCall(HttpContext http, string method, GrpcServerOptions options, ILogger logger, TimeSpan? timeout)
    {
        _http = http;
        _options = options;
        _logger = logger;
        _reader = new GrpcMessageReader(http.Request.BodyReader, options.MaxReceiveMessageSize);

        DateTimeOffset? deadline = null;
        var token = http.RequestAborted;
        if (timeout is { } t)
        {
            var now = TimeProvider.System.GetUtcNow();
            deadline = DateTimeOffset.MaxValue - now > t ? now + t : DateTimeOffset.MaxValue;

            // CancellationTokenSource timers top out near 49.7 days; longer is as good as no deadline.
            if (t.TotalMilliseconds < uint.MaxValue - 1)
            {
                _deadlineCts = new CancellationTokenSource(t, TimeProvider.System);
                _callCts = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted, _deadlineCts.Token);
                token = _callCts.Token;

                // Wake a handler blocked in a read or a flow-controlled write, so it sees the cancellation.
                _deadlineRegistration = _deadlineCts.Token.UnsafeRegister(
                    static state =>
                    {
                        var context = (HttpContext)state!;

                        // Runs on a timer thread: the client may have reset the stream at the same
                        // instant (clients reset at their deadline too), and then these throw. An
                        // exception here would end the process, so a gone request is simply left alone.
                        try
                        {
                            context.Request.BodyReader.CancelPendingRead();
                            context.Response.BodyWriter.CancelPendingFlush();
                        }
                        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException)
                        {
                        }
                    },
                    http);
            }
        }

        Context = new GrpcServerCallContext(http, method, deadline, token);
    }

    public GrpcServerCallContext Context { get; }

    private bool DeadlineExpired => _deadlineCts?.IsCancellationRequested == true;

    private bool ClientGone => _clientReset || _http.RequestAborted.IsCancellationRequested;

    /// <summary>Next request message, or null (default) at the end of the request stream.</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<T?> ReadMessageAsync<T>(Func<System.Buffers.ReadOnlySequence<byte>, T> decode, CancellationToken cancellationToken)
        where T : IMessage<T>
    {
        try
        {
            var message = await _reader.ReadAsync(decode, cancellationToken);
            if (message is not null)
            {
                _options.Observer?.MessageReceived(Context.Method, _reader.LastMessageSize + GrpcFraming.HeaderSize);
            }

            return message;
        }
        catch (GrpcStatusException ex)
        {
            // A protocol error decides the call's status even if the handler swallows it.
            _protocolError ??= ex;
            throw;
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            // A client reset (ConnectionAbortedException) or our deadline (CancelPendingRead).
            if (!DeadlineExpired)
            {
                _clientReset = true;
            }

            throw new OperationCanceledException("The call was cancelled.", ex, Context.CancellationToken);
        }
        catch (IOException ex)
        {
            // A client reset surfaces as IOException from the body reader; RequestAborted follows shortly.
            _clientReset = true;
            throw new OperationCanceledException("The client reset the call.", ex, Context.CancellationToken);
        }
    }

    /// <summary>The single request message of a unary or server-streaming call.</summary>
    public async ValueTask<T> ReadSingleMessageAsync<T>(MessageParser<T> parser)
        where T : IMessage<T>
    {
        var token = Context.CancellationToken;
        Func<System.Buffers.ReadOnlySequence<byte>, T> decode = parser.ParseFrom;
        var message = await ReadMessageAsync(decode, token);
        if (message is null)
        {
            throw Protocol(new GrpcStatusException(GrpcStatusCode.Internal, "The request ended without a message; this method takes exactly one."));
        }

        if (await ReadMessageAsync(decode, token) is not null)
        {
            throw Protocol(new GrpcStatusException(GrpcStatusCode.Internal, "The request has more than one message; this method takes exactly one."));
        }

        return message;
    }

    /// <summary>Writes the unary response without flushing: headers, message and trailers leave together.</summary>
    public void WriteUnaryResponse(IMessage message)
    {
        var size = GrpcFraming.MeasureForSend(message, _options.MaxSendMessageSize);
        GrpcFraming.WriteMessage(_http.Response.BodyWriter, message, size);
        _responseStarted = true;
        _options.Observer?.MessageSent(Context.Method, size + GrpcFraming.HeaderSize);
    }

    /// <summary>Writes and flushes one message of a streaming response.</summary>
    public ValueTask WriteMessageAsync(IMessage message, CancellationToken cancellationToken) =>
        WriteCoreAsync(message, default, cancellationToken);

    /// <summary>Writes and flushes one already-serialized message of a streaming response.</summary>
    public ValueTask WriteRawMessageAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken) =>
        WriteCoreAsync(null, message, cancellationToken);

    /// <summary>One message of a streaming response, serialized here (<paramref name="message"/>) or given as bytes (<paramref name="raw"/>).</summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    private async ValueTask WriteCoreAsync(IMessage? message, ReadOnlyMemory<byte> raw, CancellationToken cancellationToken)
    {
        // Checked here, so an oversized message faults the returned task like every other write failure.
        var size = message is null ? GrpcFraming.CheckSendSize(raw.Length, _options.MaxSendMessageSize) : GrpcFraming.MeasureForSend(message, _options.MaxSendMessageSize);
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_completed)
            {
                throw new InvalidOperationException($"Call {Context.Method} is complete: no messages can be written after the handler returned.");
            }

            Context.CancellationToken.ThrowIfCancellationRequested();
            var writer = _http.Response.BodyWriter;
            if (message is null)
            {
                GrpcFraming.WriteRawMessage(writer, raw.Span);
            }
            else
            {
                GrpcFraming.WriteMessage(writer, message, size);
            }

            _responseStarted = true;
            _options.Observer?.MessageSent(Context.Method, size + GrpcFraming.HeaderSize);
            var result = await writer.FlushAsync(cancellationToken);
            if (result.IsCanceled || result.IsCompleted)
            {
                // Deadline (CancelPendingFlush) or the client went away.
                throw new OperationCanceledException("The call was cancelled.", Context.CancellationToken);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Runs a streaming handler. If it did not finish synchronously, flushes the response headers so the client
    /// sees them before the first message (Response.StartAsync does not put HTTP/2 headers on the wire). A handler
    /// that fails at once still gets a trailers-only response.
    /// </summary>
    public async Task RunStreamingHandlerAsync(Task handler)
    {
        if (!handler.IsCompleted)
        {
            await FlushHeadersAsync();
        }

        await handler;
    }

    /// <summary>Writes the status for how the handler ended (nothing when the client is gone).</summary>
    public async Task FinishAsync(Exception? failure)
    {
        try
        {
            await _writeLock.WaitAsync(_http.RequestAborted);
        }
        catch (OperationCanceledException)
        {
            Log.ClientCancelled(_logger, Context.Method);
            return;
        }

        try
        {
            _completed = true;
            if (ClientGone)
            {
                // The stream is reset: there is no one to send a status to.
                Log.ClientCancelled(_logger, Context.Method);
                return;
            }

            if (_protocolError is { } protocolError)
            {
                Log.CallFailed(_logger, Context.Method, protocolError.Status, protocolError.Detail);
                WriteStatus(protocolError.Status, protocolError.Detail, protocolError.Trailers);
            }
            else if (failure is null)
            {
                WriteStatus(GrpcStatusCode.OK, null, null);
            }
            else if (failure is GrpcStatusException status)
            {
                Log.CallFailed(_logger, Context.Method, status.Status, status.Detail);
                WriteStatus(status.Status, status.Detail, status.Trailers);
            }
            else if (failure is OperationCanceledException && DeadlineExpired)
            {
                Log.DeadlineExceeded(_logger, Context.Method);
                WriteStatus(GrpcStatusCode.DeadlineExceeded, "Deadline exceeded.", null);
            }
            else
            {
                // Never leak exception details to the client.
                Log.HandlerFailed(_logger, Context.Method, failure);
                WriteStatus(GrpcStatusCode.Unknown, "Exception was thrown by handler.", null);
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public void Dispose()
    {
        _deadlineRegistration.Dispose();
        _callCts?.Dispose();
        _deadlineCts?.Dispose();
        _writeLock.Dispose();
    }

    private GrpcStatusException Protocol(GrpcStatusException error)
    {
        _protocolError ??= error;
        return error;
    }

    private async Task FlushHeadersAsync()
    {
        var token = Context.CancellationToken;
        try
        {
            await _writeLock.WaitAsync(token);
        }
        catch (OperationCanceledException)
        {
            return;
        }

        try
        {
            if (!_responseStarted && !_completed)
            {
                _responseStarted = true;
                await _http.Response.BodyWriter.FlushAsync(token);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The call is going away; the handler observes that itself.
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private void WriteStatus(GrpcStatusCode status, string? detail, IReadOnlyDictionary<string, string>? extra)
    {
        var response = _http.Response;
        if (!_responseStarted && !response.HasStarted)
        {
            // Trailers-only: the status travels in the HEADERS frame that ends the stream.
            ServerResponses.SetTrailersOnly(response, status, detail);
            AddMetadata(response.Headers, Context.TakeTrailers(), extra);
            return;
        }

        // HTTP/2 always supports trailers (the middleware refuses other protocols).
        var trailers = _http.Features.GetRequiredFeature<IHttpResponseTrailersFeature>().Trailers;
        trailers[GrpcProtocol.StatusHeader] = GrpcProtocol.StatusToString(status);
        if (!string.IsNullOrEmpty(detail))
        {
            trailers[GrpcProtocol.MessageHeader] = GrpcMessageText.Encode(detail);
        }

        AddMetadata(trailers, Context.TakeTrailers(), extra);
    }

    private void AddMetadata(IHeaderDictionary target, KeyValuePair<string, string>[] fromContext, IReadOnlyDictionary<string, string>? extra)
    {
        foreach (var (name, value) in fromContext)
        {
            target[name] = value;
        }

        if (extra is null)
        {
            return;
        }

        foreach (var (rawName, value) in extra)
        {
            var name = rawName.ToLowerInvariant();
            if (!GrpcProtocol.IsValidMetadataName(name)
                || name is GrpcProtocol.StatusHeader or GrpcProtocol.MessageHeader
                || value is null
                || !GrpcProtocol.IsValidMetadataValue(value))
            {
                Log.InvalidTrailer(_logger, rawName, Context.Method);
                continue;
            }

            target[name] = value;
        }
    }
}
