using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Net.Client;
using Loom.Protocol.V1;

namespace Loom.Bench.Soak;

/// <summary>
/// A bare protocol client for the offenders (Grpc.Net.Client and the generated BridgeClient, no SDK,
/// as tests/Loom.Bridge.Tests/RawAgent.cs): registers, opens its EventStream on its own channel (its
/// own HTTP/2 connection, so flow control on it touches nobody else in this process), sends its own
/// heartbeats, and re-registers when the stream has ended. Every stream end is counted.
/// </summary>
internal sealed class RawSession : IAsyncDisposable
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly GrpcChannel _channel;
    private readonly Protocol.V1.Bridge.BridgeClient _client;
    private readonly string _name;
    private readonly Func<RegisterAgentRequest> _request;
    private readonly bool _read;
    private readonly Tally _tally;
    private readonly ConcurrentDictionary<string, TaskCompletionSource<ServerMessage>> _pending = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SemaphoreSlim _openLock = new(1, 1);
    private Stream? _stream;
    private long _ids;

    /// <param name="url">The bridge's gRPC address.</param>
    /// <param name="name">The offender's name, the prefix of its tally keys.</param>
    /// <param name="request">The registration, asked again at each (re)registration.</param>
    /// <param name="read">False for a client that never reads its stream.</param>
    /// <param name="tally">Where its outcomes are counted.</param>
    public RawSession(Uri url, string name, Func<RegisterAgentRequest> request, bool read, Tally tally)
    {
        _channel = GrpcChannel.ForAddress(url);
        _client = new Protocol.V1.Bridge.BridgeClient(_channel);
        _name = name;
        _request = request;
        _read = read;
        _tally = tally;
    }

    public string NextId() => _name + "-" + Interlocked.Increment(ref _ids);

    /// <summary>Registers and opens the stream unless one is open.</summary>
    public async Task EnsureOpenAsync(CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _stream) is { Ended: false })
        {
            return;
        }

        await _openLock.WaitAsync(cancellationToken);
        try
        {
            if (_stream is { Ended: false })
            {
                return;
            }

            _stream?.Close();
            var registration = await _client.RegisterAgentAsync(_request(), new CallOptions(deadline: DateTime.UtcNow + Bound, cancellationToken: cancellationToken));
            var stream = new Stream(this, registration);
            try
            {
                await stream.OpenAsync(cancellationToken);
            }
            catch
            {
                stream.Close();
                throw;
            }

            _tally.Add(_name + "/stream_opened");
            Volatile.Write(ref _stream, stream);
        }
        finally
        {
            _openLock.Release();
        }
    }

    /// <summary>Sends messages in one frame; a write that fails or takes longer than the bound ends the stream.</summary>
    public async Task SendAsync(CancellationToken cancellationToken, params ClientMessage[] messages)
    {
        await EnsureOpenAsync(cancellationToken);
        var stream = Volatile.Read(ref _stream)!;
        await stream.WriteAsync(messages, cancellationToken);
    }

    /// <summary>Sends one request and waits for the answer that echoes <paramref name="correlationId"/>.</summary>
    public async Task<ServerMessage> RequestAsync(string correlationId, ClientMessage message, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var answer = new TaskCompletionSource<ServerMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[correlationId] = answer;
        try
        {
            await SendAsync(cancellationToken, message);
            return await answer.Task.WaitAsync(timeout, cancellationToken);
        }
        finally
        {
            _pending.TryRemove(correlationId, out _);
        }
    }

    public ValueTask DisposeAsync()
    {
        Volatile.Read(ref _stream)?.Close();
        _channel.Dispose();
        _writeLock.Dispose();
        _openLock.Dispose();
        return ValueTask.CompletedTask;
    }

    /// <summary>One EventStream: its call, reader and heartbeat loop.</summary>
    private sealed class Stream(RawSession owner, RegisterAgentResponse registration)
    {
        private readonly CancellationTokenSource _cancel = new();
        private AsyncDuplexStreamingCall<ClientFrame, ServerFrame>? _call;
        private int _ended;

        public bool Ended => Volatile.Read(ref _ended) == 1;

        public async Task OpenAsync(CancellationToken cancellationToken)
        {
            _call = owner._client.EventStream(new Metadata { { "loom-session-id", registration.SessionId } }, cancellationToken: _cancel.Token);
            await _call.ResponseHeadersAsync.WaitAsync(Bound, cancellationToken);
            if (owner._read)
            {
                _ = Task.Run(ReadAsync, CancellationToken.None);
            }

            _ = Task.Run(HeartbeatAsync, CancellationToken.None);
        }

        public async Task WriteAsync(ClientMessage[] messages, CancellationToken cancellationToken)
        {
            var frame = new ClientFrame();
            frame.Messages.Add(messages);
            await owner._writeLock.WaitAsync(cancellationToken);
            try
            {
                await _call!.RequestStream.WriteAsync(frame, cancellationToken).WaitAsync(Bound, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                End(ex is TimeoutException ? "write_timeout" : "write_failed_" + Outcome.Of(ex), ex);
                throw;
            }
            finally
            {
                owner._writeLock.Release();
            }
        }

        private async Task ReadAsync()
        {
            try
            {
                while (await _call!.ResponseStream.MoveNext(_cancel.Token))
                {
                    foreach (var message in _call.ResponseStream.Current.Messages)
                    {
                        Dispatch(message);
                    }
                }

                End(Outcome.StreamEnded(null));
            }
            catch (Exception ex)
            {
                End(Outcome.StreamEnded(ex), ex);
            }
        }

        private void Dispatch(ServerMessage message)
        {
            var correlationId = message.KindCase switch
            {
                ServerMessage.KindOneofCase.Memory => message.Memory.CorrelationId,
                ServerMessage.KindOneofCase.Error => message.Error.CorrelationId,
                ServerMessage.KindOneofCase.Ack => message.Ack.CorrelationId,
                _ => null,
            };
            if (correlationId is not null && owner._pending.TryGetValue(correlationId, out var waiter))
            {
                waiter.TrySetResult(message);
            }
            else if (message.KindCase == ServerMessage.KindOneofCase.Error)
            {
                // An error nobody waits for (e.g. a refused publish): counted by code.
                owner._tally.Add(owner._name + "/" + Loom.Core.ErrorCodes.Name(message.Error.Error?.Code ?? ErrorCode.Unspecified));
            }
        }

        private async Task HeartbeatAsync()
        {
            var interval = TimeSpan.FromMilliseconds(Math.Max(100, registration.HeartbeatIntervalMs));
            ulong sequence = 0;
            try
            {
                while (!Ended)
                {
                    await Task.Delay(interval, _cancel.Token);
                    await WriteAsync([new ClientMessage { Heartbeat = new HeartbeatPing { Sequence = ++sequence, SentUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() } }], _cancel.Token);
                }
            }
            catch (Exception)
            {
                // WriteAsync has ended the stream and counted why; Close cancels the delay.
            }
        }

        private void End(string why, Exception? ex = null)
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0)
            {
                // A cancel by this client is its own doing, never the bridge's: Close, or a caller's
                // token firing during a write (grpc-dotnet then cancels the whole call, so the
                // reader sees the end before the writer's catch runs). Only the bridge's ends count.
                var ownCancel = _cancel.IsCancellationRequested || ex is RpcException { StatusCode: StatusCode.Cancelled } cancelled && cancelled.Status.Detail.Contains("canceled by the client", StringComparison.OrdinalIgnoreCase);
                if (!ownCancel)
                {
                    owner._tally.Add(owner._name + "/" + why, ex is RpcException rpc ? rpc.Status.Detail : ex?.Message);
                }

                foreach (var waiter in owner._pending.Values)
                {
                    waiter.TrySetException(new StreamEndedException(why));
                }

                Close();
            }
        }

        public void Close()
        {
            Interlocked.Exchange(ref _ended, 1);
            try
            {
                _cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }

            _call?.Dispose();
        }
    }
}

/// <summary>The stream ended before the answer came (the end itself is counted with its reason).</summary>
internal sealed class StreamEndedException(string why) : Exception(why);
