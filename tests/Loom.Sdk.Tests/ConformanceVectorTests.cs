using System.Buffers;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Sdk.Internal;

namespace Loom.Sdk.Tests;

/// <summary>
/// The conformance vectors (tests/vectors/*.json) that the Python and TypeScript suites run too:
/// topic validity and matching, error codes and statuses, frame bytes (Google.Protobuf and the hand
/// codecs in proto/), option defaults. Each vector is its own case, named by its "name".
/// </summary>
public sealed class ConformanceVectorTests
{
    private static readonly Lazy<string> s_folder = new(FindFolder);

    private static string FindFolder()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
            {
                var folder = Path.Combine(dir.FullName, "tests", "vectors");
                return Directory.Exists(folder)
                    ? folder
                    : throw new DirectoryNotFoundException($"The conformance vectors folder {folder} is missing; every suite must run it.");
            }
        }

        throw new DirectoryNotFoundException($"No Loom.sln above {AppContext.BaseDirectory}: cannot find tests/vectors.");
    }

    private static JsonNode Load(string file) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(s_folder.Value, file)))
        ?? throw new InvalidDataException($"tests/vectors/{file} is empty.");

    private static JsonArray List(string file, string key) => Load(file)[key]!.AsArray();

    private static JsonNode Case(string file, string key, string name, string nameKey = "name") =>
        List(file, key).Single(c => (string?)c![nameKey] == name)!;

    private static TheoryData<string> Names(string file, string key, string nameKey = "name")
    {
        var data = new TheoryData<string>();
        foreach (var item in List(file, key))
        {
            data.Add((string)item![nameKey]!);
        }

        return data;
    }

    [Fact]
    public void The_vectors_folder_has_every_file()
    {
        foreach (var file in new[] { "topics.json", "errors.json", "frames.json", "options.json", "README.md" })
        {
            Assert.True(File.Exists(Path.Combine(s_folder.Value, file)), $"tests/vectors/{file} is missing");
        }
    }

    // ------------------------------------------------------------------ topics

    public static TheoryData<string> TopicCases => Names("topics.json", "topics");

    public static TheoryData<string> PatternCases => Names("topics.json", "patterns");

    public static TheoryData<string> MatchCases => Names("topics.json", "matches");

    [Theory]
    [MemberData(nameof(TopicCases))]
    public void Topic(string name)
    {
        var c = Case("topics.json", "topics", name);
        var value = (string)c["value"]!;
        Assert.Equal((bool)c["valid"]!, Topics.IsValidTopic(value));
        if ((bool)c["valid"]!)
        {
            Topics.ValidateTopic(value);
        }
        else
        {
            var error = Assert.Throws<InvalidParamsException>(() => Topics.ValidateTopic(value));
            Assert.Equal((string)Load("topics.json")["error"]!["code"]!, ErrorCodes.Name(error.Code));
            Assert.Equal((string)Load("topics.json")["error"]!["topic_path"]!, error.Path);
            Assert.False(string.IsNullOrEmpty(error.Message));
        }
    }

    [Theory]
    [MemberData(nameof(PatternCases))]
    public void Pattern(string name)
    {
        var c = Case("topics.json", "patterns", name);
        var value = (string)c["value"]!;
        Assert.Equal((bool)c["valid"]!, Topics.IsValidPattern(value));
        if ((bool)c["valid"]!)
        {
            Topics.ValidatePattern(value);
        }
        else
        {
            var error = Assert.Throws<InvalidParamsException>(() => Topics.ValidatePattern(value));
            Assert.Equal((string)Load("topics.json")["error"]!["code"]!, ErrorCodes.Name(error.Code));
            Assert.Equal((string)Load("topics.json")["error"]!["pattern_path"]!, error.Path);
            Assert.False(string.IsNullOrEmpty(error.Message));
        }
    }

    [Theory]
    [MemberData(nameof(MatchCases))]
    public void Match(string name)
    {
        var c = Case("topics.json", "matches", name);
        Assert.Equal((bool)c["match"]!, Topics.Matches((string)c["pattern"]!, (string)c["topic"]!));
    }

    // ------------------------------------------------------------------ errors

    public static TheoryData<string> CodeCases => Names("errors.json", "codes", "code");

    public static TheoryData<string> FromErrorCases => Names("errors.json", "from_error");

    public static TheoryData<string> FromStatusCases => Names("errors.json", "from_status");

    public static TheoryData<string> NameCases => Names("errors.json", "names", "text");

    [Theory]
    [MemberData(nameof(CodeCases))]
    public void Error_code(string code)
    {
        var c = Case("errors.json", "codes", code, "code");
        var value = (ErrorCode)(int)c["number"]!;
        Assert.Equal(code, ErrorCodes.Name(value));
        Assert.Equal((int)c["grpc_status_number"]!, ErrorCodes.ToGrpcStatus(value));
        Assert.Equal(ToStatusName((StatusCode)ErrorCodes.ToGrpcStatus(value)), (string)c["grpc_status"]!);
        Assert.Equal((bool)c["retryable"]!, ErrorCodes.IsRetryable(value));
        if (c["exception"] is not { } exception)
        {
            return;
        }

        var expected = (string)exception["dotnet"]!;
        var fromError = LoomException.FromError(new Error { Code = value, Message = "m" });
        Assert.Equal(expected, fromError.GetType().Name);
        Assert.Equal(value, fromError.Code);
        Assert.Equal((bool)c["retryable"]!, fromError.Retryable);
        var created = ErrorMapping.Create(value, "m");
        Assert.Equal(expected, created.GetType().Name);
        Assert.Equal(value, created.Code);
    }

    [Theory]
    [MemberData(nameof(FromErrorCases))]
    public void Error_from_error_message(string name)
    {
        var c = Case("errors.json", "from_error", name);
        var error = LoomException.FromError(new Error { Code = (ErrorCode)(int)c["number"]!, Message = "m" });
        Assert.Equal((string)c["code"]!, ErrorCodes.Name(error.Code));
        var type = Case("errors.json", "codes", (string)c["code"]!, "code")["exception"]!["dotnet"]!;
        Assert.Equal((string)type!, error.GetType().Name);
    }

    [Theory]
    [MemberData(nameof(FromStatusCases))]
    public void Error_from_status(string name)
    {
        var c = Case("errors.json", "from_status", name);
        var status = (StatusCode)(int)c["grpc_status_number"]!;
        Assert.Equal((string)c["grpc_status"]!, ToStatusName(status));
        var trailers = new Metadata();
        foreach (var (key, value) in c["trailers"]?.AsObject() ?? [])
        {
            trailers.Add(key, (string)value!);
        }

        var error = ErrorMapping.FromStatus(new RpcException(new Status(status, "detail"), trailers), new Uri("http://127.0.0.1:1"));
        Assert.Equal((string)c["code"]!, ErrorCodes.Name(error.Code));
        Assert.Equal((string?)c["path"], error.Path);
        var type = Case("errors.json", "codes", (string)c["code"]!, "code")["exception"]!["dotnet"]!;
        Assert.Equal((string)type!, error.GetType().Name);
    }

    [Theory]
    [MemberData(nameof(NameCases))]
    public void Error_code_name(string text)
    {
        var c = Case("errors.json", "names", text, "text");
        var expected = (string?)c["code"];
        Assert.Equal(expected is not null, ErrorCodes.TryParse(text, out var code));
        if (expected is not null)
        {
            Assert.Equal(expected, ErrorCodes.Name(code));
        }
    }

    /// <summary>INVALID_ARGUMENT for <see cref="StatusCode.InvalidArgument"/>: the names of grpc/status.proto.</summary>
    private static string ToStatusName(StatusCode status) => status switch
    {
        StatusCode.OK => "OK",
        StatusCode.DeadlineExceeded => "DEADLINE_EXCEEDED",
        _ => string.Concat(status.ToString().Select((ch, i) => i > 0 && char.IsUpper(ch) ? "_" + ch : ch.ToString())).ToUpperInvariant(),
    };

    // ------------------------------------------------------------------ frames

    public static TheoryData<string> FrameCases => Names("frames.json", "cases");

    private static readonly Dictionary<string, MessageDescriptor> s_types = new(StringComparer.Ordinal)
    {
        ["loom.v1.Envelope"] = Envelope.Descriptor,
        ["loom.v1.ClientFrame"] = ClientFrame.Descriptor,
        ["loom.v1.ServerFrame"] = ServerFrame.Descriptor,
    };

    [Theory]
    [MemberData(nameof(FrameCases))]
    public void Frame_bytes(string name)
    {
        var c = Case("frames.json", "cases", name);
        var descriptor = s_types[(string)c["type"]!];
        var message = JsonParser.Default.Parse(c["json"]!.ToJsonString(), descriptor);
        var hex = (string)c["hex"]!;
        var bytes = Convert.FromHexString(hex);
        Assert.Equal(hex, Convert.ToHexStringLower(message.ToByteArray()));
        Assert.Equal(message, descriptor.Parser.ParseFrom(bytes));

        switch (message)
        {
            case Envelope envelope:
                var size = EnvelopeCodec.Size(envelope);
                Assert.Equal(bytes.Length, size);
                var written = new byte[size];
                EnvelopeCodec.Write(envelope, size, written);
                Assert.Equal(hex, Convert.ToHexStringLower(written));
                Assert.Equal(envelope, EnvelopeCodec.Parse(bytes));
                break;
            case ClientFrame frame:
                var clientEncoder = new FrameEncoder();
                foreach (var m in frame.Messages)
                {
                    if (m.KindCase == ClientMessage.KindOneofCase.Publish)
                    {
                        clientEncoder.AddPublish(m.Publish);
                    }
                    else
                    {
                        clientEncoder.AddMessage(m);
                    }
                }

                Assert.Equal(hex, Convert.ToHexStringLower(clientEncoder.Written.Span));
                clientEncoder.Reset();
                Assert.Equal(frame, ClientFrameDecoder.Decode(bytes));
                Assert.Equal(frame, ClientFrameDecoder.Decode(new ReadOnlySequence<byte>(bytes)));
                break;
            case ServerFrame frame:
                var serverEncoder = new FrameEncoder();
                foreach (var m in frame.Messages)
                {
                    if (m.KindCase == ServerMessage.KindOneofCase.Deliver)
                    {
                        serverEncoder.AddDelivery(m.Deliver.SubscriptionId, m.Deliver.Envelope);
                    }
                    else
                    {
                        serverEncoder.AddMessage(m);
                    }
                }

                Assert.Equal(hex, Convert.ToHexStringLower(serverEncoder.Written.Span));
                serverEncoder.Reset();
                Assert.Equal(frame, new ServerFrameDecoder().Decode(new ReadOnlySequence<byte>(bytes)));
                break;
            default:
                Assert.Fail($"No hand codec check for {c["type"]}.");
                break;
        }
    }

    // ------------------------------------------------------------------ options

    public static TheoryData<string> OptionCases => Names("options.json", "options");

    [Theory]
    [MemberData(nameof(OptionCases))]
    public void Option_default(string name)
    {
        var c = Case("options.json", "options", name);
        var sdk = c["sdk"]!["dotnet"]!;
        var property = typeof(LoomConnectionOptions).GetProperty((string)sdk["option"]!)
            ?? throw new InvalidOperationException($"LoomConnectionOptions has no {sdk["option"]}.");
        var expected = sdk.AsObject().ContainsKey("default") ? sdk["default"] : c["default"];
        var actual = property.GetValue(new LoomConnectionOptions());
        var unit = (string)c["unit"]!;
        switch (actual)
        {
            case null:
                Assert.Null(expected);
                break;
            case TimeSpan span:
                Assert.Equal("ms", unit);
                Assert.Equal((double)expected!, span.TotalMilliseconds);
                break;
            case int count:
                Assert.Equal((int)expected!, count);
                break;
            case double fraction:
                Assert.Equal((double)expected!, fraction);
                break;
            default:
                Assert.Fail($"{property.Name} is a {actual.GetType().Name}; the vectors know TimeSpan, int and double.");
                break;
        }
    }

    [Theory]
    [MemberData(nameof(OptionCases))]
    public void Option_bounds(string name)
    {
        var c = Case("options.json", "options", name);
        var option = (string)c["sdk"]!["dotnet"]!["option"]!;
        var property = typeof(LoomConnectionOptions).GetProperty(option)!;
        var unit = (string)c["unit"]!;
        object Value(double v) => property.PropertyType == typeof(int) ? (object)(int)v
            : property.PropertyType == typeof(double) ? (object)v
            : (object)TimeSpan.FromMilliseconds(v);
        LoomConnectionOptions With(double v)
        {
            var options = new LoomConnectionOptions();
            property.SetValue(options, Value(v)); // init-only: set on a fresh copy by reflection
            return options;
        }

        var min = (double)c["min"]!;
        With(min).Validate();
        var step = unit == "fraction" ? 0.01 : 1;
        var below = Assert.Throws<InvalidParamsException>(() => With(min - step).Validate());
        Assert.Equal("/" + option, below.Path);
        if (c["max"] is { } maxNode)
        {
            var max = (double)maxNode;
            With(max).Validate();
            var above = Assert.Throws<InvalidParamsException>(() => With(max + step).Validate());
            Assert.Equal("/" + option, above.Path);
        }
    }

    [Fact]
    public void Bridge_heartbeat_default_and_bounds()
    {
        var hb = Load("options.json")["bridge"]!["heartbeat_interval"]!;
        var options = new BridgeOptions();
        Assert.Equal((double)hb["default"]!, options.HeartbeatInterval.TotalMilliseconds);
        Assert.Equal((double)hb["min"]!, options.MinHeartbeatInterval.TotalMilliseconds);
        Assert.Equal((double)hb["max"]!, options.MaxHeartbeatInterval.TotalMilliseconds);
    }
}
