using System.Collections.ObjectModel;
using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace Loom.Grpc.Internal;

/// <summary>
/// The transport side of one client call: sends the request, validates response headers (trailers-only, HTTP
/// status, content-type), reads messages and the status, and ends the call exactly once: completed (status
/// received), cancelled, deadline exceeded or failed. Ending abnormally resets the HTTP/2 stream.
/// </summary>
internal sealed class ClientCall : IDisposable
{
    private const int Running = 0;
    private const int EndedCompleted = 1;
    private const int EndedCancelled = 2;
    private const int EndedDeadline = 3;
    private const int EndedFailed = 4;

    private static readonly IReadOnlyDictionary<string, string> NoTrailers = ReadOnlyDictionary<string, string>.Empty;

    private readonly GrpcChannel _channel;
    private readonly CancellationTokenSource _cts = new();
    private readonly CancellationTokenRegistration _userRegistration;
    private readonly CancellationTokenRegistration _abortRegistration;
    private readonly ITimer? _deadlineTimer;
    private readonly TimeSpan? _timeout;
    private readonly DuplexRequestContent? _duplexContent;

    private int _state;
    private GrpcStatusException? _failure;
    private HttpRequestMessage? _request;
    private HttpResponseMessage? _response;
    private GrpcMessageReader? _reader;
    private IReadOnlyDictionary<string, string> _trailers = NoTrailers;

    public ClientCall(GrpcChannel channel, GrpcCallOptions options, DuplexRequestContent? duplexContent)
    {
        _channel = channel;
        _duplexContent = duplexContent;
        _abortRegistration = _cts.Token.UnsafeRegister(static s => ((ClientCall)s!).Abort(), this);

        if (options.Deadline is { } deadline)
        {
            var remaining = deadline - TimeProvider.System.GetUtcNow();
            if (remaining <= TimeSpan.Zero)
            {
                End(EndedDeadline);
            }
            else
            {
                _timeout = remaining;

                // Timers top out near 49.7 days; a longer deadline is sent but not enforced locally.
                if (remaining.TotalMilliseconds < uint.MaxValue - 1)
                {
                    _deadlineTimer = TimeProvider.System.CreateTimer(
                        static s => ((ClientCall)s!).End(EndedDeadline), this, remaining, Timeout.InfiniteTimeSpan);
                }
            }
        }

        if (options.CancellationToken.CanBeCanceled)
        {
            _userRegistration = options.CancellationToken.UnsafeRegister(static s => ((ClientCall)s!).End(EndedCancelled), this);
        }

        ResponseHeadersTask = Task.CompletedTask;
    }

    /// <summary>Completes when response headers arrive; faults with <see cref="GrpcStatusException"/> on a trailers-only error.</summary>
    public Task ResponseHeadersTask { get; private set; }

    /// <summary>Cancelled when the call ends abnormally.</summary>
    public CancellationToken CallToken => _cts.Token;

    public IReadOnlyDictionary<string, string> Trailers => Volatile.Read(ref _trailers);

    private bool IsEnded => Volatile.Read(ref _state) != Running;

    public void Start(Uri uri, HttpContent content, GrpcCallOptions options)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, uri)
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = content,
        };
        _request = request;
        var headers = request.Headers;

        // te: trailers is required by the spec (it lets servers detect proxies that drop trailers).
        headers.TryAddWithoutValidation("te", "trailers");
        headers.TryAddWithoutValidation("user-agent", GrpcProtocol.UserAgent);
        headers.TryAddWithoutValidation(GrpcProtocol.AcceptEncodingHeader, GrpcProtocol.IdentityEncoding);
        if (_timeout is { } timeout)
        {
            headers.TryAddWithoutValidation(GrpcProtocol.TimeoutHeader, GrpcTimeout.Format(timeout));
        }

        if (options.Headers is { } metadata)
        {
            foreach (var (name, value) in metadata)
            {
                AddMetadata(headers, name, value);
            }
        }

        ResponseHeadersTask = IsEnded ? Task.FromException(EndStatus()) : SendAsync(request);
    }

    /// <summary>Ends the call from the client side: the HTTP/2 stream is reset and the call reports CANCELLED.</summary>
    public void Cancel() => End(EndedCancelled);

    /// <summary>Next response message, or null (default) at the end of an OK call.</summary>
    /// <exception cref="GrpcStatusException">The call ended with a non-OK status (received, or local: cancel, deadline, limits).</exception>
    public ValueTask<T?> ReadMessageAsync<T>(MessageParser<T> parser, CancellationToken cancellationToken)
        where T : IMessage<T> => ReadMessageAsync(parser.ParseFrom, cancellationToken);

    /// <summary>Next response message decoded by <paramref name="decode"/>, or null (default) at the end of an OK call.</summary>
    /// <exception cref="GrpcStatusException">The call ended with a non-OK status (received, or local: cancel, deadline, limits).</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<T?> ReadMessageAsync<T>(Func<System.Buffers.ReadOnlySequence<byte>, T> decode, CancellationToken cancellationToken)
    {
        try
        {
            await ResponseHeadersTask.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            End(EndedCancelled);
            throw EndStatus();
        }

        if (Volatile.Read(ref _state) == EndedCompleted)
        {
            return default;
        }

        if (IsEnded)
        {
            throw EndStatus();
        }

        try
        {
            if (_reader is null)
            {
                var stream = await _response!.Content.ReadAsStreamAsync(cancellationToken);
                _reader = new GrpcMessageReader(
                    PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 16 * 1024, minimumReadSize: 4 * 1024, leaveOpen: true)),
                    _channel.Options.MaxReceiveMessageSize);
            }

            var message = await _reader.ReadAsync(decode, cancellationToken);
            if (message is not null)
            {
                return message;
            }
        }
        catch (GrpcStatusException ex)
        {
            // A local protocol error (size limit, compression, framing): reset the stream.
            throw Fail(ex);
        }
        catch (Exception ex)
        {
            throw Fail(MapTransportFailure(ex, cancellationToken));
        }

        // End of the response body: the status is in the trailers.
        var status = ReadStatus(_response!.TrailingHeaders);
        if (status is not null)
        {
            throw Fail(status);
        }

        End(EndedCompleted);
        return default;
    }

    /// <summary>Records a local failure as the call's status and resets the stream; returns the status to throw.</summary>
    public GrpcStatusException Fail(GrpcStatusException status)
    {
        Interlocked.CompareExchange(ref _failure, status, null);
        End(EndedFailed);

        // A cancel or deadline that ended the call first wins; after an OK status the failure stands alone.
        return Volatile.Read(ref _state) switch
        {
            EndedCancelled or EndedDeadline => EndStatus(),
            _ => Volatile.Read(ref _failure) ?? status,
        };
    }

    /// <summary>The exception for a failed write: the call's status if it has ended, else a transport status.</summary>
    public Exception MapWriteFailure(Exception ex, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            End(EndedCancelled);
        }

        return Volatile.Read(ref _state) switch
        {
            Running => MapTransportFailure(ex, cancellationToken),
            EndedCompleted => new InvalidOperationException("The call is complete: the server has sent its status.", ex),
            _ => EndStatus(),
        };
    }

    /// <summary>Throws when the call can no longer send.</summary>
    public void ThrowIfEnded()
    {
        switch (Volatile.Read(ref _state))
        {
            case Running:
                return;
            case EndedCompleted:
                throw new InvalidOperationException("The call is complete: the server has sent its status.");
            default:
                throw EndStatus();
        }
    }

    public void Dispose()
    {
        // A call disposed before its status arrived is cancelled: the stream is reset.
        End(EndedCancelled);
        _deadlineTimer?.Dispose();
        _userRegistration.Dispose();
        _abortRegistration.Dispose();
        _response?.Dispose();
        _request?.Dispose();
        _cts.Dispose();
    }

    private async Task SendAsync(HttpRequestMessage request)
    {
        HttpResponseMessage response;
        try
        {
            response = await _channel.HttpClient.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, _cts.Token);
        }
        catch (Exception ex)
        {
            throw Fail(MapTransportFailure(ex, default));
        }

        Volatile.Write(ref _response, response);
        if (IsEnded)
        {
            // Ended while the headers were on their way: Abort ran before the response was known.
            response.Dispose();
            throw EndStatus();
        }

        if (response.StatusCode != HttpStatusCode.OK)
        {
            // Broken deployments (proxies) answer with other statuses: synthesize a status from the HTTP one.
            var fromHeaders = response.Headers.NonValidated.Contains(GrpcProtocol.StatusHeader) ? ReadStatus(response.Headers) : null;
            throw Fail(fromHeaders ?? new GrpcStatusException(
                GrpcProtocol.StatusFromHttp(response.StatusCode),
                $"Bad gRPC response: HTTP status {(int)response.StatusCode} {response.ReasonPhrase}.",
                null));
        }

        if (response.Headers.NonValidated.Contains(GrpcProtocol.StatusHeader))
        {
            // Trailers-only: the status came with the headers and there is no body.
            var status = ReadStatus(response.Headers);
            if (status is not null)
            {
                throw Fail(status);
            }

            End(EndedCompleted);
            return;
        }

        var contentType = response.Content.Headers.NonValidated.TryGetValues("Content-Type", out var values) ? values.ToString() : null;
        if (!GrpcProtocol.IsGrpcContentType(contentType))
        {
            throw Fail(new GrpcStatusException(
                GrpcStatusCode.Internal,
                $"Bad gRPC response: content-type '{contentType}' is not application/grpc.",
                null));
        }
    }

    /// <summary>Parses grpc-status/grpc-message and keeps every field as the call's trailers; null for OK.</summary>
    private GrpcStatusException? ReadStatus(HttpHeaders headers)
    {
        var trailers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, values) in headers.NonValidated)
        {
            trailers[name.ToLowerInvariant()] = values.ToString();
        }

        Volatile.Write(ref _trailers, trailers);
        if (!trailers.TryGetValue(GrpcProtocol.StatusHeader, out var statusText))
        {
            return new GrpcStatusException(GrpcStatusCode.Internal, "The response ended without a grpc-status.", trailers);
        }

        if (!GrpcProtocol.TryParseStatus(statusText, out var status))
        {
            return new GrpcStatusException(GrpcStatusCode.Unknown, $"The response has an invalid grpc-status '{statusText}'.", trailers);
        }

        if (status == GrpcStatusCode.OK)
        {
            return null;
        }

        var detail = trailers.TryGetValue(GrpcProtocol.MessageHeader, out var message) ? GrpcMessageText.Decode(message) : "";
        return new GrpcStatusException(status, detail, trailers);
    }

    private GrpcStatusException MapTransportFailure(Exception ex, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            End(EndedCancelled);
        }

        if (IsEnded && Volatile.Read(ref _state) != EndedCompleted)
        {
            return EndStatus();
        }

        for (var inner = ex; inner is not null; inner = inner.InnerException)
        {
            if (inner is HttpProtocolException protocol)
            {
                return new GrpcStatusException(
                    GrpcProtocol.StatusFromHttp2Error(protocol.ErrorCode),
                    $"The HTTP/2 stream was reset (error code {protocol.ErrorCode}).",
                    null,
                    ex);
            }
        }

        return ex switch
        {
            HttpRequestException or IOException => new GrpcStatusException(
                GrpcStatusCode.Unavailable, $"Error talking to the server: {ex.Message}", null, ex),
            OperationCanceledException => new GrpcStatusException(GrpcStatusCode.Cancelled, "The call was cancelled.", null, ex),
            _ => new GrpcStatusException(GrpcStatusCode.Unknown, $"{ex.GetType().Name}: {ex.Message}", null, ex),
        };
    }

    private GrpcStatusException EndStatus() => Volatile.Read(ref _state) switch
    {
        EndedDeadline => new GrpcStatusException(GrpcStatusCode.DeadlineExceeded, "Deadline exceeded."),
        EndedFailed when Volatile.Read(ref _failure) is { } failure => failure,
        _ => new GrpcStatusException(GrpcStatusCode.Cancelled, "The call was cancelled by the client."),
    };

    private void End(int state)
    {
        if (Interlocked.CompareExchange(ref _state, state, Running) != Running)
        {
            return;
        }

        if (state == EndedCompleted)
        {
            // The server has finished: half-close our side gracefully if it is still open.
            _duplexContent?.Complete();
            return;
        }

        try
        {
            _cts.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Disposed concurrently: nothing left to abort.
        }
    }

    private void Abort()
    {
        // Runs when _cts is cancelled: cancelling SendAsync covers the time before headers; afterwards
        // disposing the response resets the HTTP/2 stream (RST_STREAM CANCEL) and wakes pending reads.
        _duplexContent?.Abort();
        Volatile.Read(ref _response)?.Dispose();
    }

    private static void AddMetadata(HttpRequestHeaders headers, string name, string value)
    {
        var lower = name.ToLowerInvariant();
        if (!GrpcProtocol.IsValidMetadataName(lower)
            || lower is "te" or "content-type" or "user-agent" or GrpcProtocol.TimeoutHeader
                or GrpcProtocol.EncodingHeader or GrpcProtocol.AcceptEncodingHeader)
        {
            throw new ArgumentException($"Request metadata name '{name}' is not allowed (reserved, or not a lowercase token).", nameof(name));
        }

        if (value is null || !GrpcProtocol.IsValidMetadataValue(value))
        {
            throw new ArgumentException($"Request metadata '{name}' has a value with characters outside printable ASCII; base64-encode binary values and name them '*-bin'.", nameof(value));
        }

        headers.TryAddWithoutValidation(lower, value);
    }
}
