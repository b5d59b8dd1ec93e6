using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client;
using Loom.Protocol.V1;
using Xunit;
using Xunit.Abstractions;

namespace Loom.Bridge.Tests;

/// <summary>
/// Fuzzing of the bridge's message handlers over real sockets: random and mutated ClientFrames on
/// EventStream, random RegisterAgent / ForwardAction / Heartbeat / collaboration requests, and raw
/// garbage bytes as the message of every method. Properties: the bridge stays up (health check),
/// every refusal is clear (an ErrorReply or error field with a documented code other than
/// UNSPECIFIED/INTERNAL and a message; a gRPC status other than INTERNAL, and UNKNOWN only with a
/// message), every memory request is answered, a healthy pair of agents keeps publishing, receiving,
/// calling and answering after every round, and the managed heap stays under a bound afterwards.
/// A CI run is a fixed seed and a random one; the seed of a failure is in the message, and
/// <c>LOOM_FUZZ_SEED</c> / <c>LOOM_FUZZ_ITERATIONS</c> replay or lengthen a run (<see cref="FuzzSettings"/>).
/// </summary>
public sealed class HandlerFuzzTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int FixedSeed = 16_0001;
    private const long HeapGrowthBoundBytes = 96L * 1024 * 1024;

    private LoomBridge _bridge = null!;
    private RawAgent _listener = null!;
    private RawAgent _caller = null!;
    private int _healthyRound;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _tally = new();

    private void Count(string what) => _tally.AddOrUpdate(what, 1, (_, n) => n + 1);

    private void WriteTally() => output.WriteLine(string.Join(", ", _tally.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value}")));

    public async Task InitializeAsync()
    {
        _bridge = new LoomBridge(new BridgeOptions { GrpcPort = 0, HttpPort = 0, HeartbeatInterval = TimeSpan.FromSeconds(5) }, _ => { });
        await _bridge.StartAsync();
        _listener = await RawAgent.RegisterAsync(_bridge.GrpcAddress, new RegisterAgentRequest
        {
            AgentId = "healthy-listener",
            Sdk = "test",
            Subscriptions = { new Protocol.V1.Subscription { Pattern = "healthy.check.>" } },
            Capabilities = { new CapabilityDescriptor { Name = "healthy.echo", Version = "1.0.0", InputSchemaJson = "{}", OutputSchemaJson = "{}" } },
        });
        _caller = await RawAgent.RegisterAsync(_bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "healthy-caller", Sdk = "test" });
    }

    public async Task DisposeAsync()
    {
        await _listener.DisposeAsync();
        await _caller.DisposeAsync();
        await _bridge.DisposeAsync();
    }

    private static IEnumerable<int> Seeds() => FuzzSettings.Seed is { } replay && int.TryParse(replay, out var s) ? [s] : [FixedSeed, Random.Shared.Next()];

    [Fact]
    public async Task Random_client_frames_get_clear_answers_and_the_bridge_and_healthy_agents_carry_on()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();
        foreach (var seed in Seeds())
        {
            output.WriteLine($"EventStream fuzz seed {seed} (replay: LOOM_FUZZ_SEED={seed})");
            try
            {
                await FuzzStreamAsync(seed, (int)FuzzSettings.Iterations(600));
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"EventStream fuzz failed with seed {seed} (replay: LOOM_FUZZ_SEED={seed}): {ex.Message}", ex);
            }
        }

        await AssertBridgeUpAsync();
        await AssertHeapBoundedAsync(heapBefore);
        WriteTally();
        output.WriteLine($"done in {clock.Elapsed.TotalSeconds:N1} s");
    }

    [Fact]
    public async Task Random_unary_requests_and_raw_garbage_get_clear_statuses_and_the_bridge_and_healthy_agents_carry_on()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        var clock = Stopwatch.StartNew();
        foreach (var seed in Seeds())
        {
            output.WriteLine($"unary fuzz seed {seed} (replay: LOOM_FUZZ_SEED={seed})");
            try
            {
                await FuzzUnaryAsync(seed, (int)FuzzSettings.Iterations(1000));
                await FuzzRawAsync(seed, (int)FuzzSettings.Iterations(300));
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"unary fuzz failed with seed {seed} (replay: LOOM_FUZZ_SEED={seed}): {ex.Message}", ex);
            }
        }

        await AssertBridgeUpAsync();
        await AssertHeapBoundedAsync(heapBefore);
        WriteTally();
        output.WriteLine($"done in {clock.Elapsed.TotalSeconds:N1} s");
    }

    // ---------------------------------------------------------------------------------------
    // EventStream
    // ---------------------------------------------------------------------------------------

    private async Task FuzzStreamAsync(int seed, int frames)
    {
        var random = new Random(seed);
        var fuzzer = await RegisterFuzzerAsync(random);
        try
        {
            for (var f = 0; f < frames; f++)
            {
                var messages = Enumerable.Range(0, random.Next(1, 6)).Select(_ => RandomClientMessage(random)).ToArray();
                var memoryRequests = messages.Count(m => m.KindCase == ClientMessage.KindOneofCase.Memory);
                var sentinel = "sentinel-" + f;
                try
                {
                    await fuzzer.SendAsync([.. messages, new ClientMessage { Memory = new MemoryRequest { CorrelationId = sentinel, Get = new MemoryGet { Key = "sentinel" } } }]);
                    var answered = 0;
                    await fuzzer.WaitForAsync(m =>
                    {
                        AssertClear(m, $"frame {f}: {Describe(messages)}");
                        Count(m.KindCase == ServerMessage.KindOneofCase.Error ? "stream error " + m.Error.Error.Code : m.KindCase == ServerMessage.KindOneofCase.Memory && m.Memory.Error is not null ? "memory error " + m.Memory.Error.Code : "stream " + m.KindCase);
                        if (m.KindCase == ServerMessage.KindOneofCase.Memory && m.Memory.CorrelationId != sentinel)
                        {
                            answered++;
                        }

                        return m.KindCase == ServerMessage.KindOneofCase.Memory && m.Memory.CorrelationId == sentinel;
                    }, TimeSpan.FromSeconds(15));
                    Assert.True(answered >= memoryRequests, $"frame {f}: {memoryRequests} memory requests, {answered} answers: {Describe(messages)}");
                }
                catch (Exception ex) when (ex is InvalidOperationException or RpcException || fuzzer.StreamError is not null)
                {
                    // The bridge ended the stream: it must say why, clearly; then a new fuzzer carries on.
                    var error = fuzzer.StreamError as RpcException ?? ex as RpcException;
                    Assert.True(error is not null, $"frame {f}: the stream ended without a status ({fuzzer.StreamError?.Message ?? ex.Message}): {Describe(messages)}");
                    AssertClear(error!.Status, $"frame {f}: {Describe(messages)}");
                    Count("stream ended " + error.StatusCode);
                    await fuzzer.DisposeAsync();
                    fuzzer = await RegisterFuzzerAsync(random);
                }

                if (f % 10 == 9)
                {
                    await AssertHealthyAsync();
                }
            }
        }
        finally
        {
            await fuzzer.DisposeAsync();
        }

        await AssertHealthyAsync();
    }

    private async Task<RawAgent> RegisterFuzzerAsync(Random random) =>
        await RawAgent.RegisterAsync(_bridge.GrpcAddress, new RegisterAgentRequest
        {
            AgentId = "fuzzer-" + random.Next(4),
            Sdk = "fuzz",
            Subscriptions = { new Protocol.V1.Subscription { Pattern = "fuzz.>" } },
            Capabilities = { new CapabilityDescriptor { Name = "fuzz.sink", Version = "1.0.0", InputSchemaJson = "{}", OutputSchemaJson = "{}" } },
        });

    private static readonly string[] Topics = ["fuzz.a", "fuzz.b.c", "", ".", "a..b", "*", ">", "fuzz.>", "_loom.audit", "_loom.reply.x", "x y", "é.ü", new string('t', 300), "fuzz." + new string('a', 5000), "\0", "a.*.b"];
    private static readonly string[] Ids = ["", "", "1", "1", "dup", "dup", "sub-unknown", "call-never-made", "\u0000", new string('i', 2000), "😀"];
    private static readonly string[] Capabilities = ["fuzz.sink", "nope", "", "fuzz.*", new string('c', 1000)];

    private static string Pick(Random random, string[] values) => random.Next(4) == 0 ? RandomString(random) : values[random.Next(values.Length)];

    private static string RandomString(Random random)
    {
        var length = random.Next(0, 40);
        var chars = new char[length];
        for (var i = 0; i < length; i++)
        {
            chars[i] = (char)(random.Next(3) == 0 ? random.Next(0, 0xFFFF) : random.Next(0x20, 0x7F));
        }

        return new string(chars);
    }

    private static long OddLong(Random random) => random.Next(6) switch
    {
        0 => 0,
        1 => -1,
        2 => long.MaxValue,
        3 => long.MinValue,
        4 => random.NextInt64(),
        _ => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + random.Next(-100_000, 100_000),
    };

    private static uint OddUInt(Random random) => random.Next(5) switch { 0 => 0, 1 => uint.MaxValue, 2 => 1, 3 => (uint)random.Next(), _ => (uint)random.Next(0, 2000) };

    private static byte[] Bytes(Random random, int max)
    {
        var bytes = new byte[random.Next(0, max)];
        random.NextBytes(bytes);
        return bytes;
    }

    private static ByteString Json(Random random) => random.Next(3) switch
    {
        0 => ByteString.CopyFromUtf8("{}"),
        1 => ByteString.CopyFromUtf8("{\"text\":\"" + new string('j', random.Next(0, 50)) + "\"}"),
        _ => ByteString.CopyFrom(Bytes(random, 60)),
    };

    private static Envelope RandomEnvelope(Random random)
    {
        var envelope = new Envelope
        {
            Id = Pick(random, Ids),
            Topic = Pick(random, Topics),
            Sender = Pick(random, Ids),
            ThreadId = Pick(random, Ids),
            CorrelationId = Pick(random, Ids),
            ReplyTo = Pick(random, Topics),
            TtlMs = OddUInt(random),
            DeadlineUnixMs = OddLong(random),
            HopCount = OddUInt(random),
            Qos = (QosClass)random.Next(-3, 8),
            TimestampUnixMs = OddLong(random),
            ContentType = Pick(random, Ids),
            Payload = ByteString.CopyFrom(Bytes(random, random.Next(10) == 0 ? 200_000 : 100)),
            Traceparent = Pick(random, Ids),
        };
        for (var i = random.Next(0, 3); i > 0; i--)
        {
            envelope.Headers[Pick(random, Ids)] = Pick(random, Ids);
        }

        return envelope;
    }

    private static Protocol.V1.Subscription RandomSubscription(Random random) => new()
    {
        Pattern = Pick(random, Topics),
        Qos = (QosClass)random.Next(-3, 8),
        Overflow = (OverflowPolicy)random.Next(-3, 8),
        QueueCapacity = OddUInt(random),
        BlockTimeoutMs = random.Next(2) == 0 ? 0 : OddUInt(random) % 200,
        SubscriptionId = Pick(random, Ids),
    };

    private static ActionCall RandomCall(Random random)
    {
        var call = new ActionCall
        {
            CallId = Pick(random, Ids),
            Capability = Pick(random, Capabilities),
            Version = random.Next(3) == 0 ? "9.9" : "",
            InputJson = Json(random),
            TimeoutMs = 1 + (OddUInt(random) % 300),
            DeadlineUnixMs = OddLong(random),
            Caller = Pick(random, Ids),
            ThreadId = Pick(random, Ids),
            Traceparent = Pick(random, Ids),
            Routing = (RoutingPolicy)random.Next(-2, 8),
            TargetAgent = Pick(random, Ids),
        };
        if (random.Next(4) == 0)
        {
            call.Headers[Pick(random, Ids)] = Pick(random, Ids);
        }

        return call;
    }

    private static ClientMessage RandomClientMessage(Random random)
    {
        switch (random.Next(10))
        {
            case 0:
            case 1:
                return new ClientMessage { Publish = RandomEnvelope(random) };
            case 2:
                return new ClientMessage { Subscribe = new SubscribeRequest { CorrelationId = Pick(random, Ids), Subscription = random.Next(6) == 0 ? null : RandomSubscription(random) } };
            case 3:
                return new ClientMessage { Unsubscribe = new UnsubscribeRequest { CorrelationId = Pick(random, Ids), SubscriptionId = Pick(random, Ids) } };
            case 4:
                return new ClientMessage { Call = RandomCall(random) };
            case 5:
                var result = new ActionResult { CallId = Pick(random, Ids), Provider = Pick(random, Ids), DurationUs = (ulong)OddLong(random) };
                if (random.Next(2) == 0)
                {
                    result.OutputJson = Json(random);
                }
                else
                {
                    result.Error = new Error { Code = (ErrorCode)random.Next(-2, 20), Message = Pick(random, Ids) };
                }

                return new ClientMessage { Result = result };
            case 6:
                return new ClientMessage { Heartbeat = new HeartbeatPing { Sequence = (ulong)OddLong(random), SentUnixMs = OddLong(random) } };
            case 7:
                var memory = new MemoryRequest { CorrelationId = Pick(random, Ids), Namespace = random.Next(3) == 0 ? Pick(random, Ids) : "" };
                var key = Pick(random, Ids);
                switch (random.Next(5))
                {
                    case 0: memory.Get = new MemoryGet { Key = key }; break;
                    case 1: memory.Set = new MemorySet { Key = key, Value = ByteString.CopyFrom(Bytes(random, 300)), TtlMs = OddUInt(random) }; break;
                    case 2: memory.Delete = new MemoryDelete { Key = key }; break;
                    case 3: memory.List = new MemoryList { Prefix = key, Limit = OddUInt(random) }; break;
                    default: memory.CompareAndSet = new MemoryCompareAndSet { Key = key, ExpectedVersion = (ulong)OddLong(random), Value = ByteString.CopyFrom(Bytes(random, 300)), TtlMs = OddUInt(random) }; break;
                }

                return new ClientMessage { Memory = memory };
            case 8:
                return new ClientMessage { Cancel = new CancelCall { CallId = Pick(random, Ids) } };
            default:
                // An unknown oneof case (a field this bridge does not know), or an empty message.
                return random.Next(2) == 0 ? new ClientMessage() : ClientMessage.Parser.ParseFrom([(byte)((random.Next(13, 16) << 3) | 2), 0x01, 0x00]); // 13-15: past the last kind (stream_admin = 12)
        }
    }

    private static string Describe(ClientMessage[] messages)
    {
        var text = string.Join(" ", messages.Select(m => Show(m)));
        return text.Length > 2000 ? text[..2000] + "…" : text;
    }

    // ---------------------------------------------------------------------------------------
    // Unary methods
    // ---------------------------------------------------------------------------------------

    private async Task FuzzUnaryAsync(int seed, int requests)
    {
        var random = new Random(seed);
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var bridge = new Protocol.V1.Bridge.BridgeClient(channel);
        var collaboration = new Collaboration.CollaborationClient(channel);
        var sessions = new List<string> { "", "no-such-session", _caller.Registration.SessionId };
        for (var r = 0; r < requests; r++)
        {
            var kind = random.Next(6);
            IMessage request = null!;
            var refused = false;
            try
            {
                var options = new CallOptions(deadline: DateTime.UtcNow.AddSeconds(3));
                switch (kind)
                {
                    case 0:
                        var register = new RegisterAgentRequest
                        {
                            AgentId = "fuzz-agent-" + random.Next(8) + (random.Next(4) == 0 ? Pick(random, Ids) : ""),
                            Name = Pick(random, Ids),
                            Namespace = random.Next(3) == 0 ? Pick(random, Ids) : "",
                            Sdk = Pick(random, Ids),
                            HeartbeatIntervalMs = OddUInt(random),
                        };
                        for (var i = random.Next(0, 4); i > 0; i--)
                        {
                            register.Subscriptions.Add(RandomSubscription(random));
                        }

                        for (var i = random.Next(0, 3); i > 0; i--)
                        {
                            register.Capabilities.Add(new CapabilityDescriptor
                            {
                                Name = Pick(random, Capabilities),
                                Version = Pick(random, ["1.0.0", "", "x", "1.0.0-beta+7", "99999999999.0.0"]),
                                InputSchemaJson = Pick(random, ["{}", "", "{", "[]", "{\"type\":\"nope\"}", "{\"$ref\":\"#\"}"]),
                                OutputSchemaJson = Pick(random, ["{}", "", "null"]),
                            });
                        }

                        if (random.Next(3) == 0)
                        {
                            register.Metadata[Pick(random, Ids)] = Pick(random, Ids);
                        }

                        request = register;
                        var registered = await bridge.RegisterAgentAsync(register, options);
                        sessions.Add(registered.SessionId);
                        break;
                    case 1:
                        var forward = new ForwardActionRequest { Call = RandomCall(random) };
                        if (random.Next(2) == 0)
                        {
                            forward.SessionId = sessions[random.Next(sessions.Count)];
                        }

                        request = forward;
                        await bridge.ForwardActionAsync(forward, options);
                        break;
                    case 2:
                        var heartbeat = new HeartbeatRequest { SessionId = random.Next(2) == 0 ? sessions[random.Next(sessions.Count)] : Pick(random, Ids), Sequence = (ulong)OddLong(random) };
                        request = heartbeat;
                        await bridge.HeartbeatAsync(heartbeat, options);
                        break;
                    case 3:
                        var gather = new GatherRequest
                        {
                            SessionId = sessions[random.Next(sessions.Count)],
                            OpId = Pick(random, Ids),
                            ThreadId = Pick(random, Ids),
                            Topic = random.Next(2) == 0 ? Pick(random, Topics) : "",
                            Capability = random.Next(2) == 0 ? Pick(random, Capabilities) : "",
                            Payload = Json(random),
                            Strategy = (JoinStrategy)random.Next(-2, 8),
                            K = OddUInt(random),
                            Quorum = OddUInt(random),
                            ComparePointer = Pick(random, ["", "/a", "~", "/", "a/b"]),
                            TimeoutMs = 1 + (OddUInt(random) % 300),
                        };
                        gather.Agents.Add(Enumerable.Range(0, random.Next(0, 4)).Select(_ => Pick(random, Ids)));
                        request = gather;
                        await collaboration.GatherAsync(gather, options);
                        break;
                    case 4:
                        var barrier = new BarrierRequest
                        {
                            SessionId = sessions[random.Next(sessions.Count)],
                            BarrierId = Pick(random, Ids),
                            Participant = Pick(random, Ids),
                            Observe = random.Next(2) == 0,
                            Count = OddUInt(random),
                            TimeoutMs = 1 + (OddUInt(random) % 300),
                            ThreadId = Pick(random, Ids),
                            NoWait = random.Next(2) == 0,
                        };
                        barrier.Participants.Add(Enumerable.Range(0, random.Next(0, 4)).Select(_ => Pick(random, Ids)));
                        request = barrier;
                        await collaboration.BarrierAsync(barrier, options);
                        break;
                    default:
                        var contract = new ContractNetRequest
                        {
                            SessionId = sessions[random.Next(sessions.Count)],
                            OpId = Pick(random, Ids),
                            ThreadId = Pick(random, Ids),
                            Topic = random.Next(2) == 0 ? Pick(random, Topics) : "",
                            Task = Json(random),
                            Capability = Pick(random, Capabilities),
                            InputJson = Json(random),
                            BidTimeoutMs = 1 + (OddUInt(random) % 200),
                            MaxBids = OddUInt(random),
                            Scoring = (ScoringRule)random.Next(-2, 9),
                            ScorePointer = Pick(random, ["", "/cost", "~", "/"]),
                            ExecutionTimeoutMs = OddUInt(random) % 300,
                            MaxAttempts = OddUInt(random),
                            TimeoutMs = 1 + (OddUInt(random) % 400),
                        };
                        request = contract;
                        await collaboration.ContractNetAsync(contract, options);
                        break;
                }
            }
            catch (RpcException ex)
            {
                AssertClear(ex.Status, $"request {r}: {request?.GetType().Name} {Truncate(request is null ? null : Show(request))}");
                Count($"{request?.GetType().Name} {ex.StatusCode}");
                refused = true;
            }

            if (!refused)
            {
                Count($"{request?.GetType().Name} OK");
            }

            if (r % 15 == 14)
            {
                await AssertHealthyAsync();
            }
        }

        await AssertHealthyAsync();
    }

    /// <summary>Raw bytes as the message of every method: random, or a valid request damaged.</summary>
    private async Task FuzzRawAsync(int seed, int messages)
    {
        var random = new Random(seed ^ 0x5A5A);
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var invoker = channel.CreateCallInvoker();
        var raw = new Marshaller<byte[]>(static b => b, static b => b);
        string[] unary = ["loom.v1.Bridge/RegisterAgent", "loom.v1.Bridge/ForwardAction", "loom.v1.Bridge/Heartbeat", "loom.v1.Collaboration/Gather", "loom.v1.Collaboration/Barrier", "loom.v1.Collaboration/ContractNet"];
        for (var m = 0; m < messages; m++)
        {
            var bytes = random.Next(2) == 0 ? Bytes(random, 200) : Damage(random, new RegisterAgentRequest { AgentId = "raw", Subscriptions = { new Protocol.V1.Subscription { Pattern = "a.b" } } }.ToByteArray());
            var which = random.Next(unary.Length + 1);
            try
            {
                if (which < unary.Length)
                {
                    var parts = unary[which].Split('/');
                    var method = new Method<byte[], byte[]>(MethodType.Unary, parts[0], parts[1], raw, raw);
                    await invoker.AsyncUnaryCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(3)), bytes);
                }
                else
                {
                    // Garbage as an EventStream frame of a registered session.
                    await using var agent = await RawAgent.RegisterAsync(_bridge.GrpcAddress, new RegisterAgentRequest { AgentId = "raw-stream", Sdk = "fuzz" }, openStream: false);
                    var method = new Method<byte[], byte[]>(MethodType.DuplexStreaming, "loom.v1.Bridge", "EventStream", raw, raw);
                    using var call = invoker.AsyncDuplexStreamingCall(method, null, new CallOptions(new Metadata { { "loom-session-id", agent.Registration.SessionId } }, DateTime.UtcNow.AddSeconds(5)));
                    await call.RequestStream.WriteAsync(bytes);
                    await call.RequestStream.WriteAsync(ClientFrameBytes(new ClientMessage { Memory = new MemoryRequest { CorrelationId = "after", Get = new MemoryGet { Key = "k" } } }));
                    await call.RequestStream.CompleteAsync();
                    while (await call.ResponseStream.MoveNext(CancellationToken.None))
                    {
                        var frame = ServerFrame.Parser.ParseFrom(call.ResponseStream.Current);
                        foreach (var message in frame.Messages)
                        {
                            AssertClear(message, $"raw frame {Convert.ToHexString(bytes)}");
                        }
                    }
                }
            }
            catch (RpcException ex)
            {
                Count($"raw {(which < unary.Length ? unary[which].Split('/')[1] : "EventStream")} {ex.StatusCode}" + (ex.StatusCode == StatusCode.Cancelled ? " [" + ex.Status.Detail + "]" : ""));
                AssertClear(ex.Status, $"raw message {m} to {(which < unary.Length ? unary[which] : "EventStream")}: {Convert.ToHexString(bytes)}");
            }
        }

        await AssertHealthyAsync();
    }

    private static byte[] ClientFrameBytes(params ClientMessage[] messages) => new ClientFrame { Messages = { messages } }.ToByteArray();

    private static byte[] Damage(Random random, byte[] bytes)
    {
        for (var n = random.Next(1, 4); n > 0 && bytes.Length > 0; n--)
        {
            var at = random.Next(bytes.Length);
            bytes = random.Next(4) switch
            {
                0 => [.. bytes[..at], (byte)(bytes[at] ^ (1 << random.Next(8))), .. bytes[(at + 1)..]],
                1 => bytes[..at],
                2 => [.. bytes[..at], 0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x07, .. bytes[at..]],
                _ => [.. bytes[..at], .. Bytes(random, 8), .. bytes[at..]],
            };
        }

        return bytes;
    }

    /// <summary>A message as JSON, or its bytes in hex when it holds text JSON cannot show (lone surrogates).</summary>
    private static string Show(IMessage message)
    {
        try
        {
            return message.ToString() ?? "";
        }
        catch (ArgumentException)
        {
            return message.GetType().Name + " bytes " + Convert.ToHexString(message.ToByteArray());
        }
    }

    private static string Truncate(string? text) => text is null ? "" : text.Length > 1500 ? text[..1500] + "…" : text;

    // ---------------------------------------------------------------------------------------
    // Properties
    // ---------------------------------------------------------------------------------------

    private static void AssertClear(Error error, string context)
    {
        Assert.True(error.Code is > ErrorCode.Unspecified and <= ErrorCode.Unavailable, $"Error code {error.Code} ({(int)error.Code}) is not a documented refusal ({error.Message}); {context}");
        Assert.False(string.IsNullOrWhiteSpace(error.Message), $"Error {error.Code} has no message; {context}");
    }

    private static void AssertClear(ServerMessage message, string context)
    {
        switch (message.KindCase)
        {
            case ServerMessage.KindOneofCase.Error:
                AssertClear(message.Error.Error, context);
                break;
            case ServerMessage.KindOneofCase.Result when message.Result.OutcomeCase == ActionResult.OutcomeOneofCase.Error:
                // A provider's own error (TOOL_ERROR etc.) is passed on as it sent it; the fuzzer's sink never answers.
                AssertClear(message.Result.Error, context);
                break;
            case ServerMessage.KindOneofCase.Memory when message.Memory.Error is not null:
                AssertClear(message.Memory.Error, context);
                break;
        }
    }

    private static void AssertClear(Status status, string context)
    {
        Assert.True(status.StatusCode != StatusCode.Internal, $"INTERNAL ({status.Detail}); {context}");
        Assert.True(status.StatusCode != StatusCode.Unknown || !string.IsNullOrWhiteSpace(status.Detail), $"UNKNOWN without a message; {context}");
        Assert.False(string.IsNullOrWhiteSpace(status.Detail) && status.StatusCode != StatusCode.DeadlineExceeded && status.StatusCode != StatusCode.Cancelled, $"{status.StatusCode} without a message; {context}");
    }

    /// <summary>The healthy pair still works: an event published is delivered, a call is pushed, answered and its result returned.</summary>
    private async Task AssertHealthyAsync()
    {
        var round = ++_healthyRound;
        var topic = $"healthy.check.{round}";
        await _caller.PublishAsync(topic, "ping-" + round, e => e.Id = "healthy-" + round);
        await _listener.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Deliver && m.Deliver.Envelope.Topic == topic, TimeSpan.FromSeconds(15));

        var callId = "healthy-call-" + round;
        await _caller.SendAsync(new ClientMessage { Call = new ActionCall { CallId = callId, Capability = "healthy.echo", InputJson = ByteString.CopyFromUtf8("{\"n\":" + round + "}"), TimeoutMs = 15_000 } });
        var pushed = await _listener.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Call && m.Call.Capability == "healthy.echo", TimeSpan.FromSeconds(15));
        await _listener.SendAsync(new ClientMessage { Result = new ActionResult { CallId = pushed.Call.CallId, OutputJson = pushed.Call.InputJson } });
        var result = await _caller.WaitForAsync(m => m.KindCase == ServerMessage.KindOneofCase.Result && m.Result.CallId == callId, TimeSpan.FromSeconds(15));
        Assert.Equal("{\"n\":" + round + "}", result.Result.OutputJson.ToStringUtf8());
    }

    private async Task AssertBridgeUpAsync()
    {
        using var channel = GrpcChannel.ForAddress(_bridge.GrpcAddress);
        var health = await new Health.HealthClient(channel).CheckAsync(new HealthCheckRequest(), RawAgent.Options());
        Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        await AssertHealthyAsync();
    }

    private async Task AssertHeapBoundedAsync(long before)
    {
        // Registrations the fuzzer left without streams expire with their heartbeats; what remains must be bounded.
        long after = 0;
        for (var attempt = 0; attempt < 5; attempt++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            after = GC.GetTotalMemory(forceFullCollection: true);
            if (after - before < HeapGrowthBoundBytes)
            {
                break;
            }

            await Task.Delay(500);
        }

        output.WriteLine($"managed heap {before / 1024 / 1024} MiB before, {after / 1024 / 1024} MiB after");
        Assert.True(after - before < HeapGrowthBoundBytes, $"The managed heap grew by {(after - before) / 1024 / 1024} MiB (bound {HeapGrowthBoundBytes / 1024 / 1024} MiB).");
    }
}
