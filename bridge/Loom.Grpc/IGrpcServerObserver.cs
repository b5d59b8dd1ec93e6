namespace Loom.Grpc;

/// <summary>Observes the messages of a gRPC server (for metrics). Called on the call's thread: must be cheap and must not throw.</summary>
public interface IGrpcServerObserver
{
    /// <summary>A request message of <paramref name="bytes"/> bytes (framing included) arrived for <paramref name="method"/> (e.g. <c>/loom.v1.Bridge/EventStream</c>).</summary>
    void MessageReceived(string method, int bytes);

    /// <summary>A response message of <paramref name="bytes"/> bytes (framing included) was written for <paramref name="method"/>.</summary>
    void MessageSent(string method, int bytes);
}
