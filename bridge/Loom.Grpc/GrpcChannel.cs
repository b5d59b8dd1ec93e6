using System.Collections.Concurrent;
using System.Net;
using Google.Protobuf;
using Loom.Grpc.Internal;

namespace Loom.Grpc;

/// <summary>
/// A gRPC client over HttpClient. <c>http://</c> addresses use cleartext HTTP/2 with prior knowledge (h2c),
/// <c>https://</c> addresses HTTP/2 over TLS. Calls share connections; more open as streams pass a connection's limit.
/// </summary>
public sealed class GrpcChannel : IDisposable
{
    private static readonly GrpcCallOptions DefaultCallOptions = new();

    private readonly Uri _address;
    private readonly ConcurrentDictionary<string, Uri> _methodUris = new(StringComparer.Ordinal);
    private volatile bool _disposed;

    private GrpcChannel(Uri address, GrpcChannelOptions options)
    {
        _address = address;
        Options = options;
        var ownsHandler = options.Handler is null;
        var handler = options.Handler ?? CreateHandlerCore(options);
        HttpClient = new HttpClient(handler, disposeHandler: ownsHandler)
        {
            // Deadlines are per call (grpc-timeout); HttpClient's own timeout would cut long streams.
            Timeout = Timeout.InfiniteTimeSpan,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
    }

    internal GrpcChannelOptions Options { get; }

    internal HttpClient HttpClient { get; }

    /// <summary>Creates a channel to <paramref name="address"/> (scheme http or https; a path, if any, prefixes method paths).</summary>
    public static GrpcChannel ForAddress(Uri address, GrpcChannelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (!address.IsAbsoluteUri || (address.Scheme != Uri.UriSchemeHttp && address.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"Address '{address}' must be an absolute http:// or https:// URI.", nameof(address));
        }

        options ??= new GrpcChannelOptions();
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxReceiveMessageSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxSendMessageSize);
        return new GrpcChannel(address, options);
    }

    /// <summary>Calls a unary method.</summary>
    /// <exception cref="GrpcStatusException">The call ended with a non-OK status (from the server, or local: deadline, cancel, limits, transport).</exception>
    public async Task<TResponse> UnaryAsync<TRequest, TResponse>(
        string service,
        string method,
        TRequest request,
        MessageParser<TResponse> parser,
        GrpcCallOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(parser);
        ObjectDisposedException.ThrowIf(_disposed, this);
        options ??= DefaultCallOptions;
        var uri = MethodUri(service, method);
        var size = GrpcFraming.MeasureForSend(request, Options.MaxSendMessageSize);

        using var call = new ClientCall(this, options, duplexContent: null);
        call.Start(uri, new UnaryRequestContent(request, size), options);

        // The call's token is cancelled by the caller's token and the deadline, so every wait below is bounded.
        await call.ResponseHeadersTask;
        var token = call.CallToken;
        var response = await call.ReadMessageAsync(parser, token);
        if (response is null)
        {
            throw call.Fail(new GrpcStatusException(GrpcStatusCode.Internal, "The response ended without a message; a unary call returns exactly one."));
        }

        if (await call.ReadMessageAsync(parser, token) is not null)
        {
            throw call.Fail(new GrpcStatusException(GrpcStatusCode.Internal, "The response has more than one message; a unary call returns exactly one."));
        }

        return response;
    }

    /// <summary>
    /// Starts a bidirectional streaming call (also usable for server streaming: write one request, complete, read).
    /// The request is sent at once; await <see cref="GrpcDuplexCall{TRequest, TResponse}.ResponseHeadersAsync"/> to know the server accepted it.
    /// </summary>
    public GrpcDuplexCall<TRequest, TResponse> Duplex<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TResponse> parser,
        GrpcCallOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        return Duplex<TRequest, TResponse>(service, method, parser.ParseFrom, options);
    }

    /// <summary>
    /// Starts a bidirectional streaming call whose responses are decoded by <paramref name="decode"/> instead of a
    /// generated parser. The bytes are valid only during the call; <paramref name="decode"/> throws
    /// <see cref="InvalidProtocolBufferException"/> for bytes it cannot decode.
    /// </summary>
    public GrpcDuplexCall<TRequest, TResponse> Duplex<TRequest, TResponse>(
        string service,
        string method,
        Func<System.Buffers.ReadOnlySequence<byte>, TResponse> decode,
        GrpcCallOptions? options = null)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(decode);
        ObjectDisposedException.ThrowIf(_disposed, this);
        options ??= DefaultCallOptions;
        return new GrpcDuplexCall<TRequest, TResponse>(this, MethodUri(service, method), decode, options);
    }

    /// <summary>Closes the channel's connections (when it created its handler); calls in flight fail.</summary>
    public void Dispose()
    {
        _disposed = true;
        HttpClient.Dispose();
    }

    private Uri MethodUri(string service, string method)
    {
        var path = GrpcServiceRegistry.MethodPath(service, method);
        return _methodUris.GetOrAdd(path, static (p, address) =>
            new UriBuilder(address) { Path = address.AbsolutePath.TrimEnd('/') + p }.Uri, _address);
    }

    /// <summary>
    /// Creates the handler a channel uses by default, for sharing: channels given the same handler in
    /// <see cref="GrpcChannelOptions.Handler"/> multiplex their calls over the same HTTP/2 connections
    /// (up to the server's stream limit each; more connections open beyond it). The caller disposes it.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(GrpcChannelOptions? options = null) => CreateHandlerCore(options ?? new GrpcChannelOptions());

    private static SocketsHttpHandler CreateHandlerCore(GrpcChannelOptions options) => new()
    {
        // A connection carries at most the server's MaxConcurrentStreams (often 100): open more beyond that.
        EnableMultipleHttp2Connections = true,
        KeepAlivePingDelay = options.KeepAlivePingDelay,
        KeepAlivePingTimeout = options.KeepAlivePingTimeout,
        KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
        ConnectTimeout = options.ConnectTimeout,
        InitialHttp2StreamWindowSize = 1024 * 1024,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        UseCookies = false,
        UseProxy = false,
    };
}
