using System.Text;
using System.Text.Json;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk;

/// <summary>Reading envelope payloads.</summary>
public static class EnvelopeExtensions
{
    /// <summary>The payload deserialized from JSON (web defaults unless options are given).</summary>
    /// <exception cref="InvalidParamsException">The payload is not JSON of that shape (the path names the failing value).</exception>
    public static T? PayloadAs<T>(this Envelope envelope, JsonSerializerOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        try
        {
            return JsonSerializer.Deserialize<T>(envelope.Payload.Span, options ?? JsonSerializerOptions.Web);
        }
        catch (JsonException ex)
        {
            throw new InvalidParamsException($"The payload on '{envelope.Topic}' is not a {typeof(T).Name}: {ex.Message}", JsonPointer.FromJsonPath(ex.Path));
        }
    }

    /// <summary>The payload as UTF-8 text.</summary>
    public static string PayloadText(this Envelope envelope)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        return Encoding.UTF8.GetString(envelope.Payload.Span);
    }
}
