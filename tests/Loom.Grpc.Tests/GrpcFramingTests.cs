using System.Buffers;
using System.IO.Pipelines;
using Google.Protobuf;
using Loom.Grpc.Internal;
using Loom.Protocol.V1;

namespace Loom.Grpc.Tests;

public class GrpcFramingTests
{
    [Fact]
    public void Parses_messages_split_at_every_byte_boundary()
    {
        var first = new HeartbeatPing { Sequence = 1, SentUnixMs = 12345 };
        var second = new HeartbeatPing { Sequence = 2 };
        var wire = TestUtil.Frame(first).Concat(TestUtil.Frame(second)).ToArray();

        for (var split = 0; split <= wire.Length; split++)
        {
            var buffer = Segmented(wire, split);
            Assert.True(GrpcFraming.TryReadMessage(ref buffer, 1024, out var payload));
            Assert.Equal(first, HeartbeatPing.Parser.ParseFrom(payload));
            Assert.True(GrpcFraming.TryReadMessage(ref buffer, 1024, out payload));
            Assert.Equal(second, HeartbeatPing.Parser.ParseFrom(payload));
            Assert.Equal(0, buffer.Length);
        }
    }

    [Fact]
    public void Incomplete_input_asks_for_more()
    {
        var wire = TestUtil.Frame(new HeartbeatPing { Sequence = 7 });
        for (var length = 0; length < wire.Length; length++)
        {
            var buffer = new ReadOnlySequence<byte>(wire, 0, length);
            Assert.False(GrpcFraming.TryReadMessage(ref buffer, 1024, out _));
            Assert.Equal(length, buffer.Length);
        }
    }

    [Fact]
    public void Oversized_message_is_refused_from_its_header_alone()
    {
        var header = new byte[] { 0, 0, 0x10, 0, 0 }; // 1 MiB announced, no body yet
        var buffer = new ReadOnlySequence<byte>(header);
        var error = Assert.Throws<GrpcStatusException>(() => GrpcFraming.TryReadMessage(ref buffer, 4096, out _));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, error.Status);
        Assert.Contains("1048576", error.Detail, StringComparison.Ordinal);
        Assert.Contains("4096", error.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Compressed_flag_is_unimplemented_and_bad_flag_is_internal()
    {
        var compressed = new ReadOnlySequence<byte>(TestUtil.Frame(new HeartbeatPing(), compressedFlag: 1));
        var error = Assert.Throws<GrpcStatusException>(() => GrpcFraming.TryReadMessage(ref compressed, 1024, out _));
        Assert.Equal(GrpcStatusCode.Unimplemented, error.Status);
        Assert.Equal("identity", error.Trailers["grpc-accept-encoding"]);

        var bad = new ReadOnlySequence<byte>(TestUtil.Frame(new HeartbeatPing(), compressedFlag: 2));
        Assert.Equal(GrpcStatusCode.Internal, Assert.Throws<GrpcStatusException>(() => GrpcFraming.TryReadMessage(ref bad, 1024, out _)).Status);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(4000)]
    [InlineData(200_000)] // past the contiguous limit: written through IBufferWriter in pieces
    public void Written_frames_parse_back(int payloadSize)
    {
        var message = new Envelope { Topic = "a.b", Payload = ByteString.CopyFrom(new byte[payloadSize]) };
        var output = new ArrayBufferWriter<byte>(16);
        GrpcFraming.WriteMessage(output, message, GrpcFraming.MeasureForSend(message, int.MaxValue));
        Assert.Equal(TestUtil.Frame(message), output.WrittenSpan.ToArray());
    }

    [Fact]
    public void Send_limit_names_size_and_limit()
    {
        var message = new Envelope { Payload = ByteString.CopyFrom(new byte[2000]) };
        var error = Assert.Throws<GrpcStatusException>(() => GrpcFraming.MeasureForSend(message, 1000));
        Assert.Equal(GrpcStatusCode.ResourceExhausted, error.Status);
        Assert.Contains(message.CalculateSize().ToString(System.Globalization.CultureInfo.InvariantCulture), error.Detail, StringComparison.Ordinal);
        Assert.Contains("1000", error.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reader_parses_a_trickling_pipe_and_reports_the_end()
    {
        var pipe = new Pipe();
        var reader = new GrpcMessageReader(pipe.Reader, 1024);
        var wire = Enumerable.Range(1, 3).SelectMany(i => TestUtil.Frame(new HeartbeatPing { Sequence = (ulong)i })).ToArray();
        var writing = Task.Run(async () =>
        {
            foreach (var b in wire)
            {
                await pipe.Writer.WriteAsync(new[] { b });
            }

            await pipe.Writer.CompleteAsync();
        });

        using var timeout = new CancellationTokenSource(TestUtil.Patience);
        for (ulong i = 1; i <= 3; i++)
        {
            var message = await reader.ReadAsync(HeartbeatPing.Parser, timeout.Token);
            Assert.Equal(i, message!.Sequence);
        }

        Assert.Null(await reader.ReadAsync(HeartbeatPing.Parser, timeout.Token));
        await writing;
    }

    [Fact]
    public async Task Reader_reports_a_stream_cut_inside_a_message()
    {
        var pipe = new Pipe();
        var wire = TestUtil.Frame(new HeartbeatPing { Sequence = 9 });
        await pipe.Writer.WriteAsync(wire.AsMemory(0, wire.Length - 1));
        await pipe.Writer.CompleteAsync();
        var reader = new GrpcMessageReader(pipe.Reader, 1024);
        var error = await Assert.ThrowsAsync<GrpcStatusException>(async () => await reader.ReadAsync(HeartbeatPing.Parser, CancellationToken.None));
        Assert.Equal(GrpcStatusCode.Internal, error.Status);
    }

    private static ReadOnlySequence<byte> Segmented(byte[] data, int split)
    {
        if (split == 0 || split == data.Length)
        {
            return new ReadOnlySequence<byte>(data);
        }

        var first = new Segment(data.AsMemory(0, split));
        var last = first.Append(data.AsMemory(split));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
