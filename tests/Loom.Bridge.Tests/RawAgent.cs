using System.Threading.Channels;
using Google.Protobuf;
using Loom.Grpc;
using Loom.Protocol.V1;

namespace Loom.Bridge.Tests;

/// <summary>
/// A bare protocol client for bridge tests: registers, opens the EventStream and collects every
/// server message, so tests see exactly what the bridge puts on the wire.
/// </summary>
internal sealed class RawAgent : IAsyncDisposable
{
    private readonly Channel<ServerMessage> _inbox = System.Threading.Channels.Channel.CreateUnbounded<ServerMessage>();
    private readonly CancellationTokenSource _stop = new();
    private GrpcDuplexCall<ClientFrame, ServerFrame>? _stream;
    private Task? _reader;

    private RawAgent(GrpcChannel channel, RegisterAgentResponse registration)
    {
        Channel = channel;
        Registration = registration;
    }

    public GrpcChannel Channel { get; }

    public RegisterAgentResponse Registration { get; }

    public string AgentId => Registration.AgentId;

    public Exception? StreamError { get; private set; }

    public static async Task<RawAgent> RegisterAsync(Uri address, RegisterAgentRequest request, bool openStream = true)
    {
        var channel = GrpcChannel.ForAddress(address);
        var response = await channel.UnaryAsync<RegisterAgentRequest, RegisterAgentResponse>(
            "loom.v1.Bridge", "RegisterAgent", request, RegisterAgentResponse.Parser, Options());
        var agent = new RawAgent(channel, response);
        if (openStream)
        {
            await agent.OpenStreamAsync();
        }

        return agent;
    }

    public static GrpcCallOptions Options(TimeSpan? timeout = null, CancellationToken cancellationToken = default) =>
        new() { Deadline = DateTimeOffset.UtcNow + (timeout ?? TimeSpan.FromSeconds(10)), CancellationToken = cancellationToken };

    public async Task OpenStreamAsync()
    {
        _stream = Channel.Duplex<ClientFrame, ServerFrame>(
            "loom.v1.Bridge",
            "EventStream",
            ServerFrame.Parser,
            new GrpcCallOptions { Headers = [new("loom-session-id", Registration.SessionId)], CancellationToken = _stop.Token });
        await _stream.ResponseHeadersAsync.WaitAsync(TimeSpan.FromSeconds(10));
        _reader = Task.Run(ReadLoopAsync);
    }

    private async Task ReadLoopAsync()
    {
        try
        {
            while (await _stream!.MoveNextAsync(_stop.Token))
            {
                foreach (var m in _stream.Current.Messages)
                {
                    _inbox.Writer.TryWrite(m);
                }
            }
        }
        catch (Exception ex)
        {
            StreamError = ex;
        }
        finally
        {
            _inbox.Writer.TryComplete();
        }
    }

    public ValueTask SendAsync(params ClientMessage[] messages)
    {
        var frame = new ClientFrame();
        frame.Messages.Add(messages);
        return _stream!.WriteAsync(frame, CancellationToken.None);
    }

    public ValueTask PublishAsync(string topic, string payload, Action<Envelope>? configure = null)
    {
        var envelope = new Envelope { Topic = topic, Payload = ByteString.CopyFromUtf8(payload) };
        configure?.Invoke(envelope);
        return SendAsync(new ClientMessage { Publish = envelope });
    }

    /// <summary>Waits for the next server message that matches, skipping heartbeats and others.</summary>
    public async Task<ServerMessage> WaitForAsync(Func<ServerMessage, bool> match, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            while (await _inbox.Reader.WaitToReadAsync(cts.Token))
            {
                while (_inbox.Reader.TryRead(out var m))
                {
                    if (match(m))
                    {
                        return m;
                    }
                }
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException("No matching server message arrived in time.");
        }

        throw new InvalidOperationException($"The stream ended before a matching message arrived: {StreamError?.Message}");
    }

    /// <summary>Ends the stream without a clean half-close, as a killed process would.</summary>
    public void Abort()
    {
        _stream?.Cancel();
        _stop.Cancel();
    }

    /// <summary>Half-closes cleanly: the agent leaves.</summary>
    public async Task LeaveAsync()
    {
        if (_stream is not null)
        {
            await _stream.CompleteRequestAsync();
            if (_reader is not null)
            {
                await _reader.WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        Abort();
        if (_reader is not null)
        {
            await _reader.WaitAsync(TimeSpan.FromSeconds(10));
        }

        if (_stream is not null)
        {
            await _stream.DisposeAsync();
        }

        Channel.Dispose();
        _stop.Dispose();
    }
}
