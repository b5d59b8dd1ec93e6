using Google.Protobuf;
using Grpc.Core;
using Loom.Protocol.V1;

namespace Loom.Bridge.Internal;

/// <summary>
/// The gRPC methods the bridge serves, with Loom's marshallers instead of the generated ones:
/// EventStream writes hand-encoded frames (<see cref="FrameMarshallers.Encoded"/>), every message
/// is counted on the wire for <c>/metrics</c>, and a malformed request is INVALID_ARGUMENT.
/// </summary>
internal static class WireMethods
{
    public static readonly Method<RegisterAgentRequest, RegisterAgentResponse> RegisterAgent = Unary(BridgeService.ServiceName, "RegisterAgent", RegisterAgentRequest.Parser, RegisterAgentResponse.Parser);

    public static readonly Method<ClientFrame, FrameEncoder> EventStream = new(
        MethodType.DuplexStreaming,
        BridgeService.ServiceName,
        "EventStream",
        Counted(FrameMarshallers.ClientFrames),
        Counted(FrameMarshallers.Encoded));

    public static readonly Method<ForwardActionRequest, ForwardActionResponse> ForwardAction = Unary(BridgeService.ServiceName, "ForwardAction", ForwardActionRequest.Parser, ForwardActionResponse.Parser);

    public static readonly Method<HeartbeatRequest, HeartbeatResponse> Heartbeat = Unary(BridgeService.ServiceName, "Heartbeat", HeartbeatRequest.Parser, HeartbeatResponse.Parser);

    public static readonly Method<GatherRequest, GatherResult> Gather = Unary(CollaborationService.ServiceName, "Gather", GatherRequest.Parser, GatherResult.Parser);

    public static readonly Method<BarrierRequest, BarrierResult> Barrier = Unary(CollaborationService.ServiceName, "Barrier", BarrierRequest.Parser, BarrierResult.Parser);

    public static readonly Method<ContractNetRequest, ContractNetResult> ContractNet = Unary(CollaborationService.ServiceName, "ContractNet", ContractNetRequest.Parser, ContractNetResult.Parser);

    private static Method<TRequest, TResponse> Unary<TRequest, TResponse>(string service, string name, MessageParser<TRequest> request, MessageParser<TResponse> response)
        where TRequest : class, IMessage<TRequest>, IBufferMessage
        where TResponse : class, IMessage<TResponse>, IBufferMessage =>
        new(MethodType.Unary, service, name, Counted(FrameMarshallers.For(request)), Counted(FrameMarshallers.For(response)));

    /// <summary>
    /// Adds the message and its size to the wire counters of the call being served. The counters
    /// come from <see cref="WireCounters.Current"/>, set per request by the bridge's middleware: the
    /// methods are static (grpc-dotnet binds them once per service type) while counters belong to one bridge.
    /// </summary>
    private static Marshaller<T> Counted<T>(Marshaller<T> inner) => new(
        (message, context) =>
        {
            var counting = new CountingSerializationContext(context);
            inner.ContextualSerializer(message, counting);
            WireCounters.Current?.Sent(counting.PayloadLength);
        },
        context =>
        {
            WireCounters.Current?.Received(context.PayloadLength);
            return inner.ContextualDeserializer(context);
        });

    /// <summary>Passes through to the transport's context and remembers the payload length it was told.</summary>
    private sealed class CountingSerializationContext(SerializationContext inner) : SerializationContext
    {
        public int PayloadLength { get; private set; }

        public override void SetPayloadLength(int payloadLength)
        {
            PayloadLength = payloadLength;
            inner.SetPayloadLength(payloadLength);
        }

        public override System.Buffers.IBufferWriter<byte> GetBufferWriter() => inner.GetBufferWriter();

        public override void Complete() => inner.Complete();

        public override void Complete(byte[] payload)
        {
            PayloadLength = payload.Length;
            inner.Complete(payload);
        }
    }
}

/// <summary>Bytes and messages of one gRPC method on the wire, counted by its marshallers (framing included).</summary>
internal sealed class WireCounters
{
    private const int FramingBytes = 5;
    private static readonly AsyncLocal<WireCounters?> CurrentCall = new();

    public long BytesIn;
    public long BytesOut;
    public long MessagesIn;
    public long MessagesOut;

    /// <summary>The counters of the call whose execution context this is (set by the bridge's middleware).</summary>
    public static WireCounters? Current
    {
        get => CurrentCall.Value;
        set => CurrentCall.Value = value;
    }

    public void Received(int payloadBytes)
    {
        Interlocked.Add(ref BytesIn, payloadBytes + FramingBytes);
        Interlocked.Increment(ref MessagesIn);
    }

    public void Sent(int payloadBytes)
    {
        Interlocked.Add(ref BytesOut, payloadBytes + FramingBytes);
        Interlocked.Increment(ref MessagesOut);
    }
}
