using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Health.V1;
using Loom.Protocol.V1;

namespace Loom.Grpc.Tests;

/// <summary>One server with every method the call tests need; the handlers report what they saw.</summary>
public sealed class GrpcServerFixture : IAsyncLifetime
{
    public const string Bridge = "loom.v1.Bridge";
    public const string Test = "loom.test.Test";
    public const int MaxReceive = 64 * 1024;
    public const string Secret = "secret connection string: Password=hunter2";

    private TestServer? _server;

    public TestServer Server => _server ?? throw new InvalidOperationException("Not started.");

    /// <summary>Per-test probes, keyed by a test-chosen id sent as the x-probe header.</summary>
    public ConcurrentDictionary<string, Probe> Probes { get; } = new();

    public Probe ProbeFor(string id) => Probes.GetOrAdd(id, _ => new Probe());

    public async Task InitializeAsync()
    {
        _server = await TestServer.StartAsync(Register, new GrpcServerOptions { MaxReceiveMessageSize = MaxReceive });
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    private Probe ProbeOf(GrpcServerCallContext context) => ProbeFor(context.GetHeader("x-probe") ?? "none");

    private void Register(GrpcServiceRegistry registry)
    {
        registry.AddUnary(Bridge, "Heartbeat", HeartbeatRequest.Parser, (request, context) =>
        {
            var probe = ProbeOf(context);
            probe.Peer = context.Peer;
            probe.Method = context.Method;
            probe.Te = context.GetHeader("te");
            probe.UserAgent = context.GetHeader("user-agent");
            probe.Timeout = context.GetHeader("grpc-timeout");
            context.SetTrailer("x-echo-session", request.SessionId);
            return Task.FromResult(new HeartbeatResponse { HeartbeatIntervalMs = 1000, ServerUnixMs = (long)request.Sequence * 2 });
        });

        registry.AddUnary(Test, "Echo", Envelope.Parser, (request, _) => Task.FromResult(request));

        registry.AddUnary(Test, "Big", HeartbeatRequest.Parser, (request, _) =>
            Task.FromResult(new Envelope { Payload = ByteString.CopyFrom(new byte[(int)request.Sequence]) }));

        registry.AddUnary<HeartbeatRequest, HeartbeatResponse>(Test, "Fail", HeartbeatRequest.Parser, (request, _) =>
            throw new GrpcStatusException(
                (GrpcStatusCode)(int)request.Sequence,
                request.SessionId,
                new Dictionary<string, string> { ["x-extra"] = "extra-value", ["Bad Name"] = "dropped" }));

        registry.AddUnary<HeartbeatRequest, HeartbeatResponse>(Test, "Throw", HeartbeatRequest.Parser, async (_, _) =>
        {
            await Task.Yield();
            throw new InvalidOperationException(Secret);
        });

        registry.AddUnary<HeartbeatRequest, HeartbeatResponse>(Test, "WaitForCancel", HeartbeatRequest.Parser, async (_, context) =>
        {
            var probe = ProbeOf(context);
            probe.Deadline = context.Deadline;
            probe.Started.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                probe.Cancelled.TrySetResult();
                throw;
            }

            return new HeartbeatResponse();
        });

        registry.AddServerStreaming<HealthCheckRequest, HealthCheckResponse>("grpc.health.v1.Health", "Watch", HealthCheckRequest.Parser, async (request, writer, context) =>
        {
            var count = int.Parse(request.Service, System.Globalization.CultureInfo.InvariantCulture);
            for (var i = 0; i < count; i++)
            {
                var status = i % 2 == 0 ? HealthCheckResponse.Types.ServingStatus.Serving : HealthCheckResponse.Types.ServingStatus.NotServing;
                await writer.WriteAsync(new HealthCheckResponse { Status = status }, context.CancellationToken);
            }
        });

        registry.AddDuplexStreaming<ClientFrame, ServerFrame>(Bridge, "EventStream", ClientFrame.Parser, async (reader, writer, context) =>
        {
            // Echo heartbeats in order; verify the order the client sent them in.
            var probe = ProbeOf(context);
            ulong expected = 0;
            while (await reader.MoveNextAsync(context.CancellationToken))
            {
                foreach (var message in reader.Current.Messages)
                {
                    if (message.Heartbeat.Sequence != expected)
                    {
                        throw new GrpcStatusException(GrpcStatusCode.DataLoss, $"Expected {expected}, got {message.Heartbeat.Sequence}.");
                    }

                    expected++;
                }

                var reply = new ServerFrame();
                foreach (var message in reader.Current.Messages)
                {
                    reply.Messages.Add(new ServerMessage { Heartbeat = message.Heartbeat });
                }

                await writer.WriteAsync(reply, context.CancellationToken);
            }

            probe.Received = (long)expected;
        });

        registry.AddDuplexStreaming<ClientFrame, ServerFrame>(Test, "StreamWaitForCancel", ClientFrame.Parser, async (_, _, context) =>
        {
            var probe = ProbeOf(context);
            probe.Started.TrySetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, context.CancellationToken);
            }
            catch (OperationCanceledException)
            {
                probe.Cancelled.TrySetResult();
                throw;
            }
        });

        registry.AddDuplexStreaming<ClientFrame, ServerFrame>(Test, "RejectAtOnce", ClientFrame.Parser, (_, _, _) =>
            throw new GrpcStatusException(GrpcStatusCode.PermissionDenied, "not allowed: no token"));
    }

    public sealed class Probe
    {
        public TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Cancelled { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public DateTimeOffset? Deadline { get; set; }

        public string? Peer { get; set; }

        public string? Method { get; set; }

        public string? Te { get; set; }

        public string? UserAgent { get; set; }

        public string? Timeout { get; set; }

        public long Received { get; set; } = -1;
    }
}
