using System.Runtime.CompilerServices;
using Google.Protobuf;

namespace Loom.Grpc.Internal;

/// <summary>A registered method: reads its request(s), runs the handler, writes its response(s). The status is the caller's job.</summary>
internal abstract class ServerMethod(string path)
{
    public string Path { get; } = path;

    public abstract Task InvokeAsync(GrpcServerCall call);
}

internal sealed class UnaryServerMethod<TRequest, TResponse>(
    string path,
    MessageParser<TRequest> parser,
    Func<TRequest, GrpcServerCallContext, Task<TResponse>> handler) : ServerMethod(path)
    where TRequest : IMessage<TRequest>
    where TResponse : IMessage<TResponse>
{
    public override async Task InvokeAsync(GrpcServerCall call)
    {
        var request = await call.ReadSingleMessageAsync(parser);
        var response = await handler(request, call.Context);
        if (response is null)
        {
            throw new InvalidOperationException($"The handler of {Path} returned a null response.");
        }

        call.WriteUnaryResponse(response);
    }
}

internal sealed class ServerStreamingServerMethod<TRequest, TResponse>(
    string path,
    MessageParser<TRequest> parser,
    Func<TRequest, IGrpcStreamWriter<TResponse>, GrpcServerCallContext, Task> handler) : ServerMethod(path)
    where TRequest : IMessage<TRequest>
    where TResponse : IMessage<TResponse>
{
    public override async Task InvokeAsync(GrpcServerCall call)
    {
        var request = await call.ReadSingleMessageAsync(parser);
        await call.RunStreamingHandlerAsync(handler(request, new ServerStreamWriter<TResponse>(call), call.Context));
    }
}

internal sealed class DuplexServerMethod<TRequest, TResponse>(
    string path,
    Func<System.Buffers.ReadOnlySequence<byte>, TRequest> decode,
    Func<IGrpcStreamReader<TRequest>, IGrpcStreamWriter<TResponse>, GrpcServerCallContext, Task> handler) : ServerMethod(path)
    where TRequest : IMessage<TRequest>
    where TResponse : IMessage<TResponse>
{
    public override Task InvokeAsync(GrpcServerCall call) =>
        call.RunStreamingHandlerAsync(handler(
            new ServerStreamReader<TRequest>(call, decode),
            new ServerStreamWriter<TResponse>(call),
            call.Context));
}

internal sealed class ServerStreamReader<T>(GrpcServerCall call, Func<System.Buffers.ReadOnlySequence<byte>, T> decode) : IGrpcStreamReader<T>
    where T : IMessage<T>
{
    private T? _current;

    public T Current => _current ?? throw new InvalidOperationException("No current message: call MoveNextAsync first.");

    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))]
    public async ValueTask<bool> MoveNextAsync(CancellationToken cancellationToken)
    {
        _current = await call.ReadMessageAsync(decode, cancellationToken);
        return _current is not null;
    }
}

internal sealed class ServerStreamWriter<T>(GrpcServerCall call) : IGrpcStreamWriter<T>, IGrpcRawStreamWriter
    where T : IMessage<T>
{
    public ValueTask WriteAsync(T message, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(message);
        return call.WriteMessageAsync(message, cancellationToken);
    }

    public ValueTask WriteRawAsync(ReadOnlyMemory<byte> message, CancellationToken cancellationToken) =>
        call.WriteRawMessageAsync(message, cancellationToken);
}
