using System.Buffers;
using System.Diagnostics;
using CsCheck;
using Google.Protobuf;
using Loom.Protocol.V1;
using Xunit;

namespace Loom.Bridge.Tests;

/// <summary>
/// Fuzzing of every decoder the bridge and the SDK run on bytes from the network: the hand decoders
/// (ClientFrameDecoder, ServerFrameDecoder, EnvelopeCodec) and the generated parser of every request
/// message the bridge accepts. Random bytes and mutated valid encodings (bit flips, truncation,
/// insertion, corrupted length prefixes, huge varints, deep nesting) are either parsed or refused
/// with <see cref="InvalidProtocolBufferException"/>: never another exception, never a hang, never
/// an allocation out of proportion to the input. Seeds and counts: <see cref="FuzzSettings"/>.
/// </summary>
public sealed class DecoderFuzzTests
{
    /// <summary>The most a decode may allocate: a fixed allowance plus a multiple of the input's size.</summary>
    private static long AllocationBudget(int inputLength) => (256 * 1024) + (64L * inputLength);

    private static readonly TimeSpan MaxDecodeTime = TimeSpan.FromSeconds(2);

    private static readonly Gen<string> Text = Gen.OneOf(
        Gen.Const(""),
        Gen.OneOf("orders.eu.created", "_loom.reply.x", "*", ">", "a..b", "agent-7"),
        Gen.String[Gen.Char.AlphaNumeric, 1, 30],
        Gen.String[Gen.Char, 0, 12]);

    private static readonly Gen<Envelope> Envelopes =
        Gen.Select(Text, Text, Gen.Long, Gen.UInt, Gen.Int[-2, 9], Gen.Byte.Array[0, 64], Gen.Bool)
            .Select((id, topic, deadline, ttl, qos, payload, headers) =>
            {
                var envelope = new Envelope
                {
                    Id = id,
                    Topic = topic,
                    DeadlineUnixMs = deadline,
                    TtlMs = ttl,
                    Qos = (QosClass)qos,
                    Payload = ByteString.CopyFrom(payload),
                    Sender = id,
                    ContentType = "application/json",
                };
                if (headers)
                {
                    envelope.Headers[topic] = id;
                }

                return envelope;
            });

    private static readonly Gen<Error> Errors =
        Gen.Select(Gen.Int[-1, 20], Text).Select((code, message) => new Error { Code = (ErrorCode)code, Message = message, Details = { ["k"] = message } });

    private static readonly Gen<ActionCall> Calls =
        Gen.Select(Text, Text, Gen.Byte.Array[0, 40], Gen.UInt, Gen.Int[-1, 8], Text)
            .Select((id, capability, input, timeout, routing, target) => new ActionCall
            {
                CallId = id,
                Capability = capability,
                InputJson = ByteString.CopyFrom(input),
                TimeoutMs = timeout,
                Routing = (RoutingPolicy)routing,
                TargetAgent = target,
                Headers = { [id] = target },
            });

    private static readonly Gen<ClientMessage> ClientMessages = Gen.OneOf(
        Envelopes.Select(e => new ClientMessage { Publish = e }),
        Gen.Select(Text, Text).Select((c, p) => new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = c, Subscription = new Subscription { Pattern = p } } }),
        Gen.Select(Text, Text).Select((c, s) => new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = c, SubscriptionId = s } }),
        Calls.Select(c => new ClientMessage { Call = c }),
        Gen.Select(Text, Gen.Byte.Array[0, 40], Errors, Gen.Bool).Select((id, output, error, ok) =>
            ok ? new ClientMessage { Result = new ActionResult { CallId = id, OutputJson = ByteString.CopyFrom(output) } }
               : new ClientMessage { Result = new ActionResult { CallId = id, Error = error } }),
        Gen.Select(Gen.ULong, Gen.Long).Select((s, t) => new ClientMessage { Heartbeat = new HeartbeatPing { Sequence = s, SentUnixMs = t } }),
        Gen.Select(Text, Gen.Byte.Array[0, 40], Gen.UInt, Gen.ULong).Select((k, v, ttl, version) => new ClientMessage
        {
            Memory = new MemoryRequest { CorrelationId = k, CompareAndSet = new MemoryCompareAndSet { Key = k, Value = ByteString.CopyFrom(v), TtlMs = ttl, ExpectedVersion = version } },
        }),
        Text.Select(id => new ClientMessage { Cancel = new CancelCall { CallId = id } }));

    private static readonly Gen<ClientFrame> ClientFrames =
        ClientMessages.Array[0, 6].Select(messages => new ClientFrame { Messages = { messages } });

    private static readonly Gen<ServerFrame> ServerFrames =
        Gen.OneOf(
            Gen.Select(Text, Envelopes).Select((id, e) => new ServerMessage { Deliver = new Delivery { SubscriptionId = id, Envelope = e } }),
            Calls.Select(c => new ServerMessage { Call = c }),
            Gen.Select(Text, Errors).Select((id, e) => new ServerMessage { Error = new ErrorReply { CorrelationId = id, Error = e } }),
            Text.Select(id => new ServerMessage { Ack = new Ack { CorrelationId = id, SubscriptionId = id } }))
        .Array[0, 6].Select(messages => new ServerFrame { Messages = { messages } });

    private static readonly Gen<IMessage> Requests = Gen.OneOf<IMessage>(
        Gen.Select(Text, Text, Gen.UInt).Select((id, pattern, capacity) => (IMessage)new RegisterAgentRequest
        {
            AgentId = id,
            Name = id,
            Sdk = pattern,
            Subscriptions = { new Subscription { Pattern = pattern } },
            Capabilities = { new CapabilityDescriptor { Name = pattern, Version = id, InputSchemaJson = "{" } },
        }),
        Calls.Select(c => (IMessage)new ForwardActionRequest { Call = c }),
        Gen.Select(Text, Gen.ULong).Select((s, n) => (IMessage)new HeartbeatRequest { SessionId = s, Sequence = n }),
        Gen.Select(Text, Text.Array[0, 4], Gen.UInt).Select((topic, agents, timeout) => (IMessage)new GatherRequest { Topic = topic, Agents = { agents }, TimeoutMs = timeout }),
        Gen.Select(Text, Text.Array[0, 4], Gen.UInt).Select((name, participants, timeout) => (IMessage)new BarrierRequest { BarrierId = name, Participants = { participants }, TimeoutMs = timeout }),
        Gen.Select(Text, Text.Array[0, 4], Gen.UInt).Select((task, bidders, timeout) => (IMessage)new ContractNetRequest { Topic = task, Task = ByteString.CopyFromUtf8(task), Capability = bidders.Length > 0 ? bidders[0] : "", BidTimeoutMs = timeout }));

    private static readonly byte[][] HugeVarints =
    [
        [0xFF, 0xFF, 0xFF, 0xFF, 0x07], [0xFF, 0xFF, 0xFF, 0xFF, 0x0F], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        [0x80, 0x80, 0x80, 0x80, 0x10], [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    ];

    /// <summary>A damage done to valid bytes.</summary>
    private static readonly Gen<Func<byte[], byte[]>> Mutations = Gen.OneOf(
        // A flipped bit.
        Gen.Select(Gen.Int[0, int.MaxValue], Gen.Int[0, 7]).Select<int, int, Func<byte[], byte[]>>((at, bit) => bytes =>
        {
            if (bytes.Length == 0)
            {
                return bytes;
            }

            var copy = (byte[])bytes.Clone();
            copy[at % copy.Length] ^= (byte)(1 << bit);
            return copy;
        }),
        // Truncated.
        Gen.Int[0, int.MaxValue].Select<int, Func<byte[], byte[]>>(at => bytes => bytes[..(bytes.Length == 0 ? 0 : at % bytes.Length)]),
        // Random bytes inserted.
        Gen.Select(Gen.Int[0, int.MaxValue], Gen.Byte.Array[1, 12]).Select<int, byte[], Func<byte[], byte[]>>((at, inserted) => bytes =>
        {
            var i = bytes.Length == 0 ? 0 : at % (bytes.Length + 1);
            return [.. bytes[..i], .. inserted, .. bytes[i..]];
        }),
        // A byte replaced by a value typical of a corrupted length prefix or tag.
        Gen.Select(Gen.Int[0, int.MaxValue], Gen.OneOf<byte>(0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x0B, 0x0C, 0x0F)).Select<int, byte, Func<byte[], byte[]>>((at, value) => bytes =>
        {
            if (bytes.Length == 0)
            {
                return bytes;
            }

            var copy = (byte[])bytes.Clone();
            copy[at % copy.Length] = value;
            return copy;
        }),
        // A huge varint spliced in after a length-delimited tag (the length of a field claims gigabytes).
        Gen.Select(Gen.Int[0, int.MaxValue], Gen.Int[0, HugeVarints.Length - 1].Select(i => HugeVarints[i]))
            .Select<int, byte[], Func<byte[], byte[]>>((at, varint) => bytes =>
            {
                var i = bytes.Length == 0 ? 0 : at % (bytes.Length + 1);
                return [.. bytes[..i], 0x0A, .. varint, .. bytes[i..]];
            }),
        // Deep nesting: the message as field 1 of itself many times, or open groups.
        Gen.Int[50, 400].Select<int, Func<byte[], byte[]>>(depth => bytes =>
        {
            var nested = bytes;
            for (var d = 0; d < depth; d++)
            {
                var length = new byte[5];
                var n = 0;
                var value = (uint)nested.Length;
                while (value >= 0x80)
                {
                    length[n++] = (byte)(value | 0x80);
                    value >>= 7;
                }

                length[n++] = (byte)value;
                nested = [0x0A, .. length[..n], .. nested];
            }

            return nested;
        }),
        Gen.Int[50, 2000].Select<int, Func<byte[], byte[]>>(depth => bytes => [.. Enumerable.Repeat((byte)0x4B, depth), .. bytes])); // field 9, start group

    /// <summary>Mutated valid bytes, one to four mutations deep, or plain random bytes.</summary>
    private static Gen<byte[]> Damaged(Gen<byte[]> valid) => Gen.OneOf(
        Gen.Byte.Array[0, 300],
        Gen.Select(valid, Mutations.Array[1, 4]).Select((bytes, mutations) => mutations.Aggregate(bytes, (b, m) => m(b))));

    private static void Sample(Gen<byte[]> inputs, Action<byte[]> decode, long iterations) =>
        inputs.Sample(bytes => DecodesOrRefuses(bytes, decode), seed: FuzzSettings.Seed, iter: FuzzSettings.Iterations(iterations), print: Convert.ToHexString);

    /// <summary>The property: parsed, or refused as invalid protobuf, quickly and within the allocation budget.</summary>
    private static void DecodesOrRefuses(byte[] bytes, Action<byte[]> decode)
    {
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        var clock = Stopwatch.StartNew();
        try
        {
            decode(bytes);
        }
        catch (InvalidProtocolBufferException)
        {
            // Refused: the bridge answers INVALID_ARGUMENT naming the message.
        }

        var used = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Assert.True(used <= AllocationBudget(bytes.Length), $"Decoding {bytes.Length} bytes allocated {used:N0} bytes (budget {AllocationBudget(bytes.Length):N0}).");
        Assert.True(clock.Elapsed < MaxDecodeTime, $"Decoding {bytes.Length} bytes took {clock.Elapsed.TotalMilliseconds:N0} ms.");
    }

    /// <summary>The bytes as a sequence of several segments, the shape a transport may hand the decoders.</summary>
    private static ReadOnlySequence<byte> Segmented(byte[] bytes)
    {
        if (bytes.Length < 2)
        {
            return new ReadOnlySequence<byte>(bytes);
        }

        var first = new Segment(bytes.AsMemory(0, bytes.Length / 2), 0);
        var last = first.Append(bytes.AsMemory(bytes.Length / 2));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    [Fact]
    public void Client_frame_decoder_parses_or_refuses_damaged_frames()
    {
        Sample(Damaged(ClientFrames.Select(f => f.ToByteArray())), bytes =>
        {
            var frame = ClientFrameDecoder.Decode(bytes);
            // What it reads, it reads as the generated parser does.
            Assert.Equal(ClientFrame.Parser.ParseFrom(bytes), frame);
            Assert.Equal(frame, ClientFrameDecoder.Decode(Segmented(bytes)));
        }, 4000);
    }

    [Fact]
    public void Server_frame_decoder_parses_or_refuses_damaged_frames()
    {
        Sample(Damaged(ServerFrames.Select(f => f.ToByteArray())), bytes =>
        {
            var decoder = new ServerFrameDecoder();
            var frame = decoder.Decode(new ReadOnlySequence<byte>(bytes)).Clone();
            Assert.Equal(ServerFrame.Parser.ParseFrom(bytes), frame);
            Assert.Equal(frame, decoder.Decode(Segmented(bytes)));
        }, 4000);
    }

    [Fact]
    public void Envelope_codec_parses_or_refuses_damaged_envelopes()
    {
        Sample(Damaged(Envelopes.Select(e => e.ToByteArray())), bytes => Assert.Equal(Envelope.Parser.ParseFrom(bytes), EnvelopeCodec.Parse(bytes)), 4000);
    }

    [Fact]
    public void Generated_parsers_of_every_request_parse_or_refuse_damaged_requests()
    {
        Gen.Select(Damaged(Requests.Select(r => r.ToByteArray())), Gen.Int[0, 5]).Sample((bytes, which) => DecodesOrRefuses(bytes, b =>
        {
            // Every request message the bridge accepts, through the bridge's own marshallers.
            _ = which switch
            {
                0 => (IMessage)RegisterAgentRequest.Parser.ParseFrom(new ReadOnlySequence<byte>(b)),
                1 => ForwardActionRequest.Parser.ParseFrom(Segmented(b)),
                2 => HeartbeatRequest.Parser.ParseFrom(b),
                3 => GatherRequest.Parser.ParseFrom(Segmented(b)),
                4 => BarrierRequest.Parser.ParseFrom(b),
                _ => ContractNetRequest.Parser.ParseFrom(Segmented(b)),
            };
        }), seed: FuzzSettings.Seed, iter: FuzzSettings.Iterations(6000), print: t => $"{t.Item2}: {Convert.ToHexString(t.Item1)}");
    }

    [Fact]
    public void Deep_nesting_and_huge_lengths_are_refused_as_invalid_protobuf()
    {
        // Recursion past the parser's limit (100): 5,000 nested ClientMessage-in-ClientFrame levels, and 100,000 open groups.
        var nested = Array.Empty<byte>();
        for (var d = 0; d < 5000; d++)
        {
            var length = nested.Length;
            var prefix = new List<byte> { 0x0A };
            while (length >= 0x80)
            {
                prefix.Add((byte)(length | 0x80));
                length >>= 7;
            }

            prefix.Add((byte)length);
            nested = [.. prefix, .. nested];
        }

        byte[] groups = [.. Enumerable.Repeat((byte)0x4B, 100_000)];
        byte[] hugeLength = [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, 0x01, 0x02];
        byte[] overlongVarint = [0x08, .. Enumerable.Repeat((byte)0xFF, 20), 0x01];
        foreach (var bytes in new[] { nested, groups, hugeLength, overlongVarint })
        {
            DecodesOrRefuses(bytes, b => ClientFrameDecoder.Decode(b));
            DecodesOrRefuses(bytes, b => new ServerFrameDecoder().Decode(new ReadOnlySequence<byte>(b)));
            DecodesOrRefuses(bytes, b => EnvelopeCodec.Parse(b));
            DecodesOrRefuses(bytes, b => RegisterAgentRequest.Parser.ParseFrom(b));
            DecodesOrRefuses(bytes, b => GatherRequest.Parser.ParseFrom(b));
        }

        Assert.Throws<InvalidProtocolBufferException>(() => ClientFrameDecoder.Decode(nested));
        Assert.Throws<InvalidProtocolBufferException>(() => ClientFrameDecoder.Decode(groups));
        Assert.Throws<InvalidProtocolBufferException>(() => ClientFrameDecoder.Decode(hugeLength));
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
