using System.Collections.ObjectModel;

namespace Loom.Grpc;

/// <summary>
/// A non-OK gRPC status. Handlers throw it to end a call with that status (and extra trailers);
/// the client throws it when a call ends with a non-OK status.
/// </summary>
public sealed class GrpcStatusException : Exception
{
    private static readonly IReadOnlyDictionary<string, string> NoTrailers =
        ReadOnlyDictionary<string, string>.Empty;

    /// <param name="status">The status code.</param>
    /// <param name="detail">Human readable detail; sent as <c>grpc-message</c> (any Unicode text).</param>
    /// <param name="trailers">Extra trailers (server: sent with the status; client: every trailer received).</param>
    public GrpcStatusException(GrpcStatusCode status, string detail, IReadOnlyDictionary<string, string>? trailers = null)
        : base(FormatMessage(status, detail))
    {
        Status = status;
        Detail = detail ?? "";
        Trailers = trailers ?? NoTrailers;
    }

    internal GrpcStatusException(GrpcStatusCode status, string detail, IReadOnlyDictionary<string, string>? trailers, Exception? innerException)
        : base(FormatMessage(status, detail), innerException)
    {
        Status = status;
        Detail = detail ?? "";
        Trailers = trailers ?? NoTrailers;
    }

    public GrpcStatusCode Status { get; }

    public string Detail { get; }

    public IReadOnlyDictionary<string, string> Trailers { get; }

    private static string FormatMessage(GrpcStatusCode status, string? detail) =>
        $"Status(StatusCode=\"{status}\", Detail=\"{detail}\")";
}
