using System.Net.Http.Json;
using System.Text.Json;
using Google.Protobuf;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk;

namespace Loom.Mcp.Internal;

/// <summary>A capability as MCP exposure sees it.</summary>
internal sealed record ExposedCapability(string Name, string Description, string InputSchemaJson, string OutputSchemaJson, IReadOnlyList<string> Tags);

/// <summary>Where exposed capabilities come from and calls go: the broker in the bridge, or a bridge over the network.</summary>
internal interface ICapabilitySource
{
    Task<IReadOnlyList<ExposedCapability>> ListAsync(CancellationToken cancellationToken);

    /// <summary>Calls a capability; failures come back as an <see cref="Error"/>, never thrown.</summary>
    Task<(ReadOnlyMemory<byte> Output, Error? Error)> InvokeAsync(string capability, ReadOnlyMemory<byte> inputJson, TimeSpan timeout, string caller, CancellationToken cancellationToken);
}

/// <summary>The bridge's own ActionBroker (streamable HTTP exposure inside the bridge).</summary>
internal sealed class BrokerCapabilitySource(ActionBroker broker) : ICapabilitySource
{
    public Task<IReadOnlyList<ExposedCapability>> ListAsync(CancellationToken cancellationToken)
    {
        var byName = new Dictionary<string, ExposedCapability>(StringComparer.Ordinal);

        // Ordered by name then version: the last version listed wins (calls name no version).
        foreach (var info in broker.Capabilities)
        {
            var d = info.Descriptor;
            byName[info.Name] = new ExposedCapability(info.Name, d.Description, d.InputSchemaJson, d.OutputSchemaJson, d.Tags.ToArray());
        }

        return Task.FromResult<IReadOnlyList<ExposedCapability>>(byName.Values.ToArray());
    }

    public async Task<(ReadOnlyMemory<byte> Output, Error? Error)> InvokeAsync(string capability, ReadOnlyMemory<byte> inputJson, TimeSpan timeout, string caller, CancellationToken cancellationToken)
    {
        var outcome = await broker.InvokeAsync(
            new ActionRequest { Capability = capability, InputJson = inputJson, Timeout = timeout, Caller = caller },
            cancellationToken).ConfigureAwait(false);
        return (outcome.OutputJson, outcome.Error);
    }
}

/// <summary>
/// A running bridge reached as an agent: capabilities listed from its <c>GET /v1/capabilities</c>,
/// calls made over gRPC through a <see cref="LoomConnection"/> (so they take the ActionBroker path).
/// </summary>
internal sealed class RemoteCapabilitySource(LoomConnection connection, HttpClient http, Uri httpAddress) : ICapabilitySource
{
    public async Task<IReadOnlyList<ExposedCapability>> ListAsync(CancellationToken cancellationToken)
    {
        using var document = await http.GetFromJsonAsync<JsonDocument>(new Uri(httpAddress, "/v1/capabilities"), cancellationToken).ConfigureAwait(false)
            ?? throw new InvalidOperationException("the bridge answered /v1/capabilities with null");
        var byName = new Dictionary<string, ExposedCapability>(StringComparer.Ordinal);
        foreach (var item in document.RootElement.GetProperty("capabilities").EnumerateArray())
        {
            var name = item.GetProperty("name").GetString() ?? "";
            byName[name] = new ExposedCapability(
                name,
                item.TryGetProperty("description", out var description) ? description.GetString() ?? "" : "",
                item.TryGetProperty("input_schema", out var input) ? input.GetRawText() : "",
                item.TryGetProperty("output_schema", out var output) ? output.GetRawText() : "",
                item.TryGetProperty("tags", out var tags) && tags.ValueKind == JsonValueKind.Array ? tags.EnumerateArray().Select(t => t.GetString() ?? "").ToArray() : []);
        }

        return byName.Values.ToArray();
    }

    public async Task<(ReadOnlyMemory<byte> Output, Error? Error)> InvokeAsync(string capability, ReadOnlyMemory<byte> inputJson, TimeSpan timeout, string caller, CancellationToken cancellationToken)
    {
        try
        {
            var output = await connection.CallAsync(
                new ActionCall { Capability = capability, InputJson = ByteString.CopyFrom(inputJson.Span), TimeoutMs = (uint)Math.Clamp(timeout.TotalMilliseconds, 1, uint.MaxValue) },
                cancellationToken).ConfigureAwait(false);
            return (output, null);
        }
        catch (LoomException ex)
        {
            return (default, ex.ToError());
        }
    }
}
