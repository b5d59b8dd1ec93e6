using System.Collections.Concurrent;
using Google.Protobuf;
using Loom.Grpc.Internal;

namespace Loom.Grpc;

/// <summary>The methods a gRPC server serves, by path "/{service}/{method}".</summary>
public sealed class GrpcServiceRegistry
{
    private readonly ConcurrentDictionary<string, ServerMethod> _methods = new(StringComparer.Ordinal);

    /// <summary>Registers a unary method. <paramref name="service"/> is the fully qualified service name, e.g. "loom.v1.Bridge".</summary>
    /// <exception cref="InvalidOperationException">The method is already registered.</exception>
    public void AddUnary<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<TRequest, GrpcServerCallContext, Task<TResponse>> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        Add(new UnaryServerMethod<TRequest, TResponse>(MethodPath(service, method), parser, handler));
    }

    /// <summary>Registers a server-streaming method (one request, a stream of responses).</summary>
    /// <exception cref="InvalidOperationException">The method is already registered.</exception>
    public void AddServerStreaming<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<TRequest, IGrpcStreamWriter<TResponse>, GrpcServerCallContext, Task> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        Add(new ServerStreamingServerMethod<TRequest, TResponse>(MethodPath(service, method), parser, handler));
    }

    /// <summary>Registers a bidirectional streaming method.</summary>
    /// <exception cref="InvalidOperationException">The method is already registered.</exception>
    public void AddDuplexStreaming<TRequest, TResponse>(
        string service,
        string method,
        MessageParser<TRequest> parser,
        Func<IGrpcStreamReader<TRequest>, IGrpcStreamWriter<TResponse>, GrpcServerCallContext, Task> handler)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ArgumentNullException.ThrowIfNull(parser);
        ArgumentNullException.ThrowIfNull(handler);
        Add(new DuplexServerMethod<TRequest, TResponse>(MethodPath(service, method), parser.ParseFrom, handler));
    }

    internal ServerMethod? Find(string? path) =>
        path is not null && _methods.TryGetValue(path, out var method) ? method : null;

    internal static string MethodPath(string service, string method)
    {
        ArgumentException.ThrowIfNullOrEmpty(service);
        ArgumentException.ThrowIfNullOrEmpty(method);
        if (service.Contains('/', StringComparison.Ordinal) || method.Contains('/', StringComparison.Ordinal))
        {
            throw new ArgumentException($"Service '{service}' and method '{method}' must not contain '/'.");
        }

        return "/" + service + "/" + method;
    }

    private void Add(ServerMethod method)
    {
        if (!_methods.TryAdd(method.Path, method))
        {
            throw new InvalidOperationException($"Method '{method.Path}' is already registered.");
        }
    }
}
