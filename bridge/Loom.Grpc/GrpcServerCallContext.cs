using System.Globalization;
using System.Net.Sockets;
using Loom.Grpc.Internal;
using Microsoft.AspNetCore.Http;

namespace Loom.Grpc;

/// <summary>What a server handler knows about its call. Valid only until the handler's task completes (the request is pooled).</summary>
public sealed class GrpcServerCallContext
{
    private readonly HttpContext _http;
    private readonly Lock _trailersLock = new();
    private Dictionary<string, string>? _trailers;
    private string? _peer;

    internal GrpcServerCallContext(HttpContext http, string method, DateTimeOffset? deadline, CancellationToken cancellationToken)
    {
        _http = http;
        Method = method;
        CancellationToken = cancellationToken;
        Deadline = deadline;
    }

    /// <summary>The request path, e.g. "/loom.v1.Bridge/EventStream".</summary>
    public string Method { get; }

    /// <summary>Cancelled when the client cancels or resets the call, the connection drops, or the deadline passes.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>From the request's <c>grpc-timeout</c>; null when the client set none.</summary>
    public DateTimeOffset? Deadline { get; }

    /// <summary>"ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000" (gRPC's peer notation).</summary>
    public string Peer => _peer ??= FormatPeer(_http.Connection);

    /// <summary>A request metadata value (names are case-insensitive; repeated values are joined with ","); null when absent.</summary>
    public string? GetHeader(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _http.Request.Headers.TryGetValue(name, out var values) && values.Count > 0 ? values.ToString() : null;
    }

    /// <summary>Adds a trailer sent with the call's status (also with an error status).</summary>
    /// <param name="name">Lowercase metadata name; not a reserved "grpc-" name.</param>
    /// <param name="value">Printable ASCII (base64 for names ending in "-bin").</param>
    /// <exception cref="ArgumentException">The name or value cannot be sent.</exception>
    public void SetTrailer(string name, string value)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(value);
        if (!GrpcProtocol.IsValidMetadataName(name) || name.StartsWith("grpc-", StringComparison.Ordinal))
        {
            throw new ArgumentException($"Trailer name '{name}' is not allowed: use lowercase letters, digits, '-', '_' or '.', and no reserved 'grpc-' prefix.", nameof(name));
        }

        if (!GrpcProtocol.IsValidMetadataValue(value))
        {
            throw new ArgumentException($"Trailer '{name}' has a value with characters outside printable ASCII; base64-encode binary values and name them '*-bin'.", nameof(value));
        }

        lock (_trailersLock)
        {
            (_trailers ??= new Dictionary<string, string>(StringComparer.Ordinal))[name] = value;
        }
    }

    /// <summary>A snapshot of the trailers set by the handler.</summary>
    internal KeyValuePair<string, string>[] TakeTrailers()
    {
        lock (_trailersLock)
        {
            return _trailers is null ? [] : [.. _trailers];
        }
    }

    private static string FormatPeer(ConnectionInfo connection)
    {
        var address = connection.RemoteIpAddress;
        if (address is null)
        {
            return "unknown";
        }

        if (address.IsIPv4MappedToIPv6)
        {
            address = address.MapToIPv4();
        }

        return address.AddressFamily == AddressFamily.InterNetworkV6
            ? string.Create(CultureInfo.InvariantCulture, $"ipv6:[{address}]:{connection.RemotePort}")
            : string.Create(CultureInfo.InvariantCulture, $"ipv4:{address}:{connection.RemotePort}");
    }
}
