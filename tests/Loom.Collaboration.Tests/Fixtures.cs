using System.Text;
using Google.Protobuf;
using Loom.Core;
using Loom.Core.Collaboration;
using Loom.Protocol.V1;

namespace Loom.Collaboration.Tests;

/// <summary>A core (bus, broker, coordinator) for one test.</summary>
internal sealed class Core : IDisposable
{
    public Core()
    {
        Bus = new EventBus();
        Broker = new ActionBroker(new ActionBrokerOptions { UnhealthyCooldown = TimeSpan.FromMilliseconds(1) }, new Router());
        Coordinator = new Coordinator(Bus, Broker);
    }

    public EventBus Bus { get; }

    public ActionBroker Broker { get; }

    public Coordinator Coordinator { get; }

    /// <summary>An agent answering requests on <paramref name="pattern"/> with <paramref name="answer"/> (null: stays silent) after <paramref name="delay"/>.</summary>
    public BusResponder Responder(string agentId, string pattern, Func<Envelope, string?> answer, TimeSpan? delay = null) =>
        new(Bus, agentId, pattern, answer, delay ?? TimeSpan.Zero);

    /// <summary>Registers <paramref name="agentId"/> as a provider of <paramref name="capability"/>.</summary>
    public CapabilityRegistration Provide(string agentId, string capability, Func<ActionInvocation, CancellationToken, Task<string>> handler) =>
        Broker.Register(new CapabilityDescriptor { Name = capability, InputSchemaJson = "{}", OutputSchemaJson = "{}" }, new Provider(agentId, handler));

    public void Dispose()
    {
        Coordinator.Dispose();
        Bus.Dispose();
    }

    private sealed class Provider(string agentId, Func<ActionInvocation, CancellationToken, Task<string>> handler) : ICapabilityProvider
    {
        public string ProviderId => agentId;

        public string AgentId => agentId;

        public bool IsLocal => false;

        public async ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken) =>
            Encoding.UTF8.GetBytes(await handler(invocation, cancellationToken));
    }
}

/// <summary>Answers requests from a bus subscription owned by an agent id.</summary>
internal sealed class BusResponder : IDisposable
{
    private readonly EventSubscription _subscription;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _pump;
    private int _answered;

    public BusResponder(EventBus bus, string agentId, string pattern, Func<Envelope, string?> answer, TimeSpan delay)
    {
        _subscription = bus.Subscribe(pattern, new SubscriptionOptions(Owner: agentId));
        _pump = Task.Run(async () =>
        {
            try
            {
                while (await _subscription.WaitToReadAsync(_stop.Token))
                {
                    while (_subscription.TryRead(out var request))
                    {
                        if (request.ReplyTo.Length == 0 || answer(request) is not { } text)
                        {
                            continue;
                        }

                        var r = request;
                        _ = Task.Run(async () =>
                        {
                            await Task.Delay(delay, _stop.Token);
                            await bus.PublishAsync(new Envelope
                            {
                                Topic = r.ReplyTo,
                                CorrelationId = r.CorrelationId,
                                ThreadId = r.ThreadId,
                                Sender = agentId,
                                ContentType = "application/json",
                                Payload = ByteString.CopyFromUtf8(text),
                            });
                            Interlocked.Increment(ref _answered);
                        });
                    }
                }
            }
            catch (OperationCanceledException)
            {
            }
        });
    }

    public int Answered => Volatile.Read(ref _answered);

    public void Dispose()
    {
        _stop.Cancel();
        _subscription.Dispose();
        _pump.Wait(TimeSpan.FromSeconds(2));
        _stop.Dispose();
    }
}

/// <summary>Records every envelope on a pattern.</summary>
internal sealed class Recorder : IDisposable
{
    private readonly EventSubscription _subscription;

    public Recorder(EventBus bus, string pattern) => _subscription = bus.Subscribe(pattern, new SubscriptionOptions(Owner: "_loom.test-recorder"));

    public List<Envelope> Drain()
    {
        var list = new List<Envelope>();
        while (_subscription.TryRead(out var e))
        {
            list.Add(e);
        }

        return list;
    }

    public void Dispose() => _subscription.Dispose();
}
