using System.ComponentModel;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Schema;
using System.Text.RegularExpressions;
using Loom.Core;
using Loom.Protocol.V1;

namespace Loom.Sdk.Internal;

/// <summary>
/// Turns the <see cref="CapabilityAttribute"/> methods of an agent into capabilities: descriptors
/// with JSON Schemas generated from the signature (System.Text.Json's JsonSchemaExporter), and
/// handlers that deserialize the input, call the method and serialize the output.
/// Failures are typed: bad input is INVALID_PARAMS with the JSON pointer of the failing value; a
/// method that throws is TOOL_ERROR with the exception's message (a <see cref="LoomException"/>
/// it throws keeps its own code).
/// </summary>
internal static partial class CapabilityBinder
{
    private static readonly byte[] NullJson = "null"u8.ToArray();
    private static readonly MethodInfo AwaitTaskMethod = typeof(CapabilityBinder).GetMethod(nameof(AwaitTask), BindingFlags.NonPublic | BindingFlags.Static)!;
    private static readonly MethodInfo AwaitValueTaskMethod = typeof(CapabilityBinder).GetMethod(nameof(AwaitValueTask), BindingFlags.NonPublic | BindingFlags.Static)!;

    private static readonly JsonSchemaExporterOptions ExporterOptions = new()
    {
        // The root input must be present: callers send an object, not null.
        TreatNullObliviousAsNonNullable = true,
        TransformSchemaNode = AddDescription,
    };

    private enum ParameterKind
    {
        Input,
        Token,
        Context,
        Invocation,
    }

    [GeneratedRegex("^[A-Za-z0-9_.:\\-]{1,128}$")]
    private static partial Regex NamePattern();

    public static IReadOnlyList<LoomCapability> Bind(Agent agent, JsonSerializerOptions json, Func<AgentContext> context)
    {
        ArgumentNullException.ThrowIfNull(agent);
        var capabilities = new List<LoomCapability>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var method in agent.GetType().GetMethods(BindingFlags.Instance | BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
        {
            var attribute = method.GetCustomAttribute<CapabilityAttribute>(inherit: true);
            if (attribute is null)
            {
                continue;
            }

            if (!NamePattern().IsMatch(attribute.Name ?? ""))
            {
                throw new InvalidOperationException($"[Capability(\"{attribute.Name}\")] on {Describe(method)}: the name must be 1-128 characters from A-Z a-z 0-9 _ . : -.");
            }

            if (!names.Add(attribute.Name!))
            {
                throw new InvalidOperationException($"Capability '{attribute.Name}' is declared twice on {agent.GetType().Name}; each name once.");
            }

            capabilities.Add(BindMethod(agent, method, attribute, json, context));
        }

        return capabilities;
    }

    /// <summary>The JSON Schema of a type, as the SDK registers it.</summary>
    public static string SchemaOf(Type type, JsonSerializerOptions json)
    {
        var schema = JsonSchemaExporter.GetJsonSchemaAsNode(json, type, ExporterOptions);

        // Boolean schemas (JsonElement, object) as objects: "{}" accepts anything, "not {}" nothing.
        return schema.GetValueKind() switch
        {
            JsonValueKind.True => "{}",
            JsonValueKind.False => "{\"not\":{}}",
            _ => schema.ToJsonString(),
        };
    }

    private static LoomCapability BindMethod(Agent agent, MethodInfo method, CapabilityAttribute attribute, JsonSerializerOptions json, Func<AgentContext> context)
    {
        if (method.IsGenericMethodDefinition)
        {
            throw new InvalidOperationException($"{Describe(method)} is generic; a capability needs concrete input and output types.");
        }

        var parameters = method.GetParameters();
        var kinds = new ParameterKind[parameters.Length];
        Type? inputType = null;
        var inputAllowsNull = false;
        for (var i = 0; i < parameters.Length; i++)
        {
            var type = parameters[i].ParameterType;
            if (type.IsByRef)
            {
                throw new InvalidOperationException($"{Describe(method)}: parameter '{parameters[i].Name}' is by-ref; capabilities take values.");
            }

            if (type == typeof(CancellationToken))
            {
                kinds[i] = ParameterKind.Token;
            }
            else if (type == typeof(AgentContext))
            {
                kinds[i] = ParameterKind.Context;
            }
            else if (type == typeof(ActionInvocation))
            {
                kinds[i] = ParameterKind.Invocation;
            }
            else if (inputType is null)
            {
                kinds[i] = ParameterKind.Input;
                inputType = type;
                inputAllowsNull = type.IsValueType
                    ? Nullable.GetUnderlyingType(type) is not null
                    : new NullabilityInfoContext().Create(parameters[i]).ReadState != NullabilityState.NotNull;
            }
            else
            {
                throw new InvalidOperationException($"{Describe(method)} takes more than one input ('{parameters[i].Name}'); wrap the inputs in one type (a record) so they have one schema.");
            }
        }

        var (outputType, unwrap) = AnalyzeReturn(method);
        var descriptor = new CapabilityDescriptor
        {
            Name = attribute.Name,
            Version = attribute.Version ?? "1.0.0",
            Description = attribute.Description ?? "",
            InputSchemaJson = inputType is null ? "{}" : SchemaOf(inputType, json),
            OutputSchemaJson = outputType is null ? "{}" : SchemaOf(outputType, json),
            CostHint = attribute.CostHint,
            LatencyHintMs = (uint)Math.Max(0, attribute.LatencyHintMs),
            MaxConcurrency = (uint)Math.Max(0, attribute.MaxConcurrency),
        };
        if (attribute.Tags is not null)
        {
            descriptor.Tags.Add(attribute.Tags);
        }

        var target = method.IsStatic ? null : agent;
        var name = attribute.Name;
        async ValueTask<ReadOnlyMemory<byte>> HandleAsync(ActionInvocation invocation, CancellationToken cancellationToken)
        {
            var args = new object?[kinds.Length];
            for (var i = 0; i < kinds.Length; i++)
            {
                args[i] = kinds[i] switch
                {
                    ParameterKind.Token => cancellationToken,
                    ParameterKind.Context => context(),
                    ParameterKind.Invocation => invocation,
                    _ => ReadInput(name, invocation.InputJson, inputType!, inputAllowsNull, json),
                };
            }

            try
            {
                var returned = method.Invoke(target, BindingFlags.DoNotWrapExceptions, binder: null, args, culture: null);
                var value = await unwrap(returned);
                return outputType is null ? NullJson : JsonSerializer.SerializeToUtf8Bytes(value, outputType, json);
            }
            catch (LoomException)
            {
                throw;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                throw;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                throw new ToolErrorException(ex.Message, ex);
            }
        }

        return new LoomCapability(descriptor, HandleAsync);
    }

    private static object? ReadInput(string capability, ReadOnlyMemory<byte> inputJson, Type inputType, bool allowsNull, JsonSerializerOptions json)
    {
        object? value;
        try
        {
            value = inputJson.IsEmpty ? null : JsonSerializer.Deserialize(inputJson.Span, inputType, json);
        }
        catch (JsonException ex)
        {
            throw new InvalidParamsException($"The input of '{capability}' is not a valid {inputType.Name}: {ex.Message}", JsonPointer.FromJsonPath(ex.Path));
        }
        catch (NotSupportedException ex)
        {
            throw new InvalidParamsException($"The input of '{capability}' cannot be read as {inputType.Name}: {ex.Message}");
        }

        if (value is null && !allowsNull)
        {
            throw new InvalidParamsException($"'{capability}' needs an input ({inputType.Name}); it got none (null).");
        }

        return value;
    }

    private static (Type? OutputType, Func<object?, ValueTask<object?>> Unwrap) AnalyzeReturn(MethodInfo method)
    {
        var type = method.ReturnType;
        if (type == typeof(void))
        {
            return (null, static _ => ValueTask.FromResult<object?>(null));
        }

        if (type == typeof(Task))
        {
            return (null, static async r =>
            {
                await ((Task)r!).ConfigureAwait(false);
                return null;
            }
            );
        }

        if (type == typeof(ValueTask))
        {
            return (null, static async r =>
            {
                await ((ValueTask)r!).ConfigureAwait(false);
                return null;
            }
            );
        }

        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Task<>))
        {
            var inner = type.GetGenericArguments()[0];
            return (inner, AwaitTaskMethod.MakeGenericMethod(inner).CreateDelegate<Func<object?, ValueTask<object?>>>());
        }

        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(ValueTask<>))
        {
            var inner = type.GetGenericArguments()[0];
            return (inner, AwaitValueTaskMethod.MakeGenericMethod(inner).CreateDelegate<Func<object?, ValueTask<object?>>>());
        }

        return (type, static r => ValueTask.FromResult(r));
    }

    private static async ValueTask<object?> AwaitTask<T>(object? task) => await ((Task<T>)task!).ConfigureAwait(false);

    private static async ValueTask<object?> AwaitValueTask<T>(object? task) => await ((ValueTask<T>)task!).ConfigureAwait(false);

    private static JsonNode AddDescription(JsonSchemaExporterContext context, JsonNode schema)
    {
        if (schema is not JsonObject obj || obj.ContainsKey("description"))
        {
            return schema;
        }

        var provider = context.PropertyInfo?.AttributeProvider ?? (context.Path.IsEmpty ? context.TypeInfo.Type : null);
        if (provider?.GetCustomAttributes(typeof(DescriptionAttribute), inherit: true).FirstOrDefault() is DescriptionAttribute description)
        {
            obj.Insert(0, "description", description.Description);
        }

        return schema;
    }

    private static string Describe(MethodInfo method) => $"{method.DeclaringType?.Name}.{method.Name}";
}
