using System.Net.Sockets;
using Grpc.Net.Client;

namespace Loom.Sdk.Tests;

/// <summary>Agents in one process sharing HTTP/2 connections through one gRPC channel.</summary>
public sealed class SharedConnectionTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task Agents_given_one_channel_share_one_connection_and_stay_independent()
    {
        await using var bridge = await TestBridge.StartAsync();
        var connects = 0;
        var channelOptions = LoomConnection.CreateChannelOptions();
        var handler = (SocketsHttpHandler)channelOptions.HttpHandler!;
        handler.ConnectCallback = async (context, cancellationToken) =>
        {
            Interlocked.Increment(ref connects);
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(context.DnsEndPoint, cancellationToken);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        };

        using var channel = GrpcChannel.ForAddress(bridge.GrpcAddress, channelOptions);

        AgentHostOptions Shared()
        {
            var options = TestBridge.Options();
            return new AgentHostOptions
            {
                LoggerFactory = options.LoggerFactory,
                Connection = new LoomConnectionOptions
                {
                    ReconnectInitialDelay = options.Connection!.ReconnectInitialDelay,
                    ReconnectMaxDelay = options.Connection.ReconnectMaxDelay,
                    DisposeTimeout = options.Connection.DisposeTimeout,
                    Channel = channel,
                },
            };
        }

        var collectors = Enumerable.Range(0, 30).Select(_ => new CollectorAgent("shared.>")).ToArray();
        var running = new List<RunningAgent>();
        try
        {
            foreach (var collector in collectors)
            {
                running.Add(await LoomAgentHost.StartAsync(collector, bridge.GrpcAddress, Shared()));
            }

            await using var provider = await LoomAgentHost.StartAsync(new MathAgent(), bridge.GrpcAddress, Shared());
            await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Shared());

            // 32 agents, 32 sessions and streams on the bridge, one TCP connection.
            Assert.Equal(1, Volatile.Read(ref connects));
            Assert.All(running.Append(provider).Append(caller), a => Assert.NotNull(bridge.Agents.Find(a.AgentId)));

            await caller.Context.EmitAsync("shared.first", new { n = 1 });
            await Poll.UntilAsync(() => collectors.All(c => c.Events.Count == 1), Short, "every collector got the first event");
            var sum = await caller.Context.InvokeAsync<AddOutput>("math.add", new AddInput(40, 2), Short);
            Assert.Equal(42, sum!.Sum);
            Assert.All(collectors, c => Assert.Equal(caller.AgentId, Assert.Single(c.Events).Sender));

            // One agent leaving closes its stream, not the connection: the others go on.
            var leaving = running[0];
            running.RemoveAt(0);
            await leaving.DisposeAsync();
            await Poll.UntilAsync(() => bridge.Agents.Find(leaving.AgentId) is null, Short, "the leaving agent is gone");
            await caller.Context.EmitAsync("shared.second", new { n = 2 });
            await Poll.UntilAsync(() => collectors.Skip(1).All(c => c.Events.Count == 2), Short, "the others got the second event");
            Assert.Single(collectors[0].Events);
            Assert.Equal(1, Volatile.Read(ref connects));
        }
        finally
        {
            foreach (var agent in running)
            {
                await agent.DisposeAsync();
            }
        }
    }
}

/// <summary>Client interceptors given to a connection see every call it makes.</summary>
public sealed class InterceptorTests
{
    private sealed class Recorder : Grpc.Core.Interceptors.Interceptor
    {
        public System.Collections.Concurrent.ConcurrentQueue<string> Methods { get; } = new();

        public override Grpc.Core.AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, Grpc.Core.Interceptors.ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            Methods.Enqueue(context.Method.FullName);
            return continuation(request, context);
        }

        public override Grpc.Core.AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Grpc.Core.Interceptors.ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation)
        {
            Methods.Enqueue(context.Method.FullName);
            return continuation(context);
        }
    }

    [Fact]
    public async Task Registration_the_stream_and_collaboration_calls_go_through_the_interceptors()
    {
        await using var bridge = await TestBridge.StartAsync();
        var recorder = new Recorder();
        await using var connection = await LoomConnection.ConnectAsync(bridge.GrpcAddress, new LoomConnectionOptions { Name = "intercepted", Interceptors = [recorder] });
        var barrier = await connection.BarrierAsync(new Loom.Protocol.V1.BarrierRequest { BarrierId = "solo", Count = 1, TimeoutMs = 5000 });
        Assert.Equal(Loom.Protocol.V1.CollabOutcome.Completed, barrier.Outcome);
        Assert.Equal(["/loom.v1.Bridge/RegisterAgent", "/loom.v1.Bridge/EventStream", "/loom.v1.Collaboration/Barrier"], recorder.Methods);
    }
}
