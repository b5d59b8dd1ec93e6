using System.Collections.Concurrent;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk.Internal;

/// <summary>
/// Runs an agent against the core in the same process: EventBus for pub/sub (its queues and QoS
/// policies apply as they do for remote agents), ActionBroker for calls (this agent registers as a
/// local provider), MemoryStore for memory. No network, no serialization of frames.
/// </summary>
internal sealed class InProcessTransport : IAgentTransport, IAsyncDisposable
{
    private readonly EventBus _bus;
    private readonly ActionBroker _broker;
    private readonly MemoryStore _memory;
    private readonly AgentDirectory? _directory;
    private readonly ILogger _logger;
    private readonly TimeSpan _stopTimeout;
    private readonly IdGenerator _ids = new();
    private readonly ReplyRouter _replies;
    private readonly ConcurrentDictionary<InProcessSubscription, byte> _subscriptions = new();
    private readonly List<CapabilityRegistration> _registrations = [];
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Provider _provider;
    private int _disposed;

    public InProcessTransport(string agentId, string ns, EventBus bus, ActionBroker broker, MemoryStore memory, AgentDirectory? directory, TimeProvider time, ILogger logger, TimeSpan stopTimeout)
    {
        AgentId = agentId;
        Namespace = ns;
        _bus = bus;
        _broker = broker;
        _memory = memory;
        _directory = directory;
        Time = time;
        _logger = logger;
        _stopTimeout = stopTimeout;
        _replies = new ReplyRouter(agentId, _ids, time);
        _provider = new Provider(agentId);
    }

    public string AgentId { get; }

    public string Namespace { get; }

    public TimeProvider Time { get; }

    public string ProviderId => _provider.ProviderId;

    /// <summary>The core this agent runs against (collaboration operations use its coordinator).</summary>
    public EventBus Bus => _bus;

    public ActionBroker Broker => _broker;

    /// <summary>Registers the capabilities and the inbox. All or nothing.</summary>
    public void Start(
        IReadOnlyList<LoomCapability> capabilities,
        string name,
        IReadOnlyDictionary<string, string>? metadata,
        IReadOnlyList<(string Pattern, SubscribeOptions? Options)> topics,
        Func<Envelope, CancellationToken, Task> onEvent)
    {
        foreach (var capability in capabilities)
        {
            if (!_provider.Capabilities.TryAdd(capability.Descriptor.Name, capability))
            {
                throw new InvalidParamsException($"Capability '{capability.Descriptor.Name}' is given twice.", "/capabilities");
            }
        }

        try
        {
            foreach (var capability in capabilities)
            {
                _registrations.Add(_broker.Register(capability.Descriptor, _provider));
            }

            Subscribe(_replies.InboxPattern, (e, _) =>
            {
                if (!_replies.Complete(e))
                {
                    Log.LateReply(_logger, AgentId, e.Topic, e.CorrelationId);
                }

                return Task.CompletedTask;
            }, SubscribeOptions.Default);
            foreach (var (pattern, options) in topics)
            {
                Subscribe(pattern, onEvent, options ?? SubscribeOptions.Default);
            }
        }
        catch
        {
            _broker.UnregisterProvider(_provider.ProviderId);
            foreach (var registration in _registrations)
            {
                registration.Dispose();
            }

            _registrations.Clear();
            foreach (var subscription in _subscriptions.Keys)
            {
                subscription.Subscription.Dispose();
            }

            _subscriptions.Clear();
            throw;
        }

        _directory?.Upsert(new AgentInfo(
            AgentId,
            name,
            Namespace,
            "in-process",
            topics.Select(t => t.Pattern).ToArray(),
            capabilities.Select(c => c.Descriptor.Name).ToArray(),
            metadata ?? new Dictionary<string, string>(),
            Time.GetUtcNow(),
            "loom-dotnet/0.1.0 (in-process)"));
    }

    public async ValueTask PublishAsync(Envelope envelope, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(envelope);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        envelope.Sender = AgentId;
        Tracing.OnPublish(envelope);
        var result = await _bus.PublishAsync(envelope, cancellationToken);
        if (result.Status is PublishStatus.TtlExpired or PublishStatus.HopLimitExceeded or PublishStatus.MemoryLimit or PublishStatus.TooLarge)
        {
            Log.PublishNotAccepted(_logger, AgentId, envelope.Topic, result.Status.ToString());
        }
    }

    public Task<Envelope> RequestAsync(Envelope request, TimeSpan timeout, CancellationToken cancellationToken)
        => _replies.RequestAsync(request, PublishAsync, timeout, cancellationToken);

    public Task<LoomSubscription> SubscribeAsync(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        ArgumentNullException.ThrowIfNull(handler);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        var subscription = Subscribe(pattern, handler, options ?? SubscribeOptions.Default);
        return Task.FromResult(new LoomSubscription(
            pattern,
            () => subscription.Subscription.Id,
            () => subscription.Delivered,
            () => subscription.Subscription.Stats.DroppedTotal,
            () => StopSubscriptionAsync(subscription)));
    }

    private InProcessSubscription Subscribe(string pattern, Func<Envelope, CancellationToken, Task> handler, SubscribeOptions options)
    {
        var qos = options.Qos == QosClass.Unspecified ? QosClass.Normal : options.Qos;
        var core = _bus.Subscribe(pattern, new SubscriptionOptions(qos, options.Overflow, Math.Max(0, options.QueueCapacity), options.BlockTimeout, AgentId));
        var subscription = new InProcessSubscription(core, handler, AgentId, _logger, _lifetime.Token);
        _subscriptions[subscription] = 0;
        subscription.Start();
        return subscription;
    }

    private async ValueTask StopSubscriptionAsync(InProcessSubscription subscription)
    {
        _subscriptions.TryRemove(subscription, out _);
        await subscription.StopAsync(_stopTimeout, Time);
    }

    public async Task<ReadOnlyMemory<byte>> CallAsync(ActionCall call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        using var activity = Tracing.OnCall(call);
        call.Headers.TryGetValue(LoomTelemetry.TracestateHeader, out var tracestate);
        var outcome = await _broker.InvokeAsync(
            new ActionRequest
            {
                Capability = call.Capability,
                Version = string.IsNullOrEmpty(call.Version) ? null : call.Version,
                InputJson = call.InputJson.Memory,
                Timeout = call.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(call.TimeoutMs) : null,
                Caller = AgentId,
                ThreadId = call.ThreadId,
                Traceparent = call.Traceparent,
                Tracestate = tracestate ?? "",
                Policy = call.Routing,
                TargetAgent = string.IsNullOrEmpty(call.TargetAgent) ? null : call.TargetAgent,
                CallId = string.IsNullOrEmpty(call.CallId) ? _ids.Next() : call.CallId,
                Headers = call.Headers.Count == 0 ? null : new Dictionary<string, string>(call.Headers, StringComparer.Ordinal),
                IdempotencyKey = string.IsNullOrEmpty(call.IdempotencyKey) ? null : call.IdempotencyKey,
            },
            cancellationToken);
        if (outcome.Error is { } error)
        {
            activity?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, error.Message);
            if (error.Code == ErrorCode.Cancelled)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            throw LoomException.FromError(error);
        }

        return outcome.OutputJson;
    }

    public Task<MemoryResponse> MemoryAsync(MemoryRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        cancellationToken.ThrowIfCancellationRequested();
        var response = _memory.Execute(request, Namespace);
        if (response.Error is { } error && error.Code != ErrorCode.Unspecified)
        {
            throw LoomException.FromError(error);
        }

        return Task.FromResult(response);
    }

    /// <summary>Unregisters the capabilities, lets handlers finish what is queued (bounded), and fails pending requests.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        _broker.UnregisterProvider(_provider.ProviderId);
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _directory?.Remove(AgentId);
        var subscriptions = _subscriptions.Keys.ToArray();
        _subscriptions.Clear();
        await Task.WhenAll(subscriptions.Select(s => s.StopAsync(_stopTimeout, Time)));
        await _lifetime.CancelAsync();
        _replies.FailAll(new LoomException(ErrorCode.Cancelled, "The agent stopped."));
        _lifetime.Dispose();
    }

    /// <summary>This agent as a local capability provider of the broker.</summary>
    private sealed class Provider(string agentId) : ICapabilityProvider
    {
        public ConcurrentDictionary<string, LoomCapability> Capabilities { get; } = new(StringComparer.Ordinal);

        public string ProviderId { get; } = "local:" + agentId;

        public string AgentId => agentId;

        public bool IsLocal => true;

        public ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken) =>
            Capabilities.TryGetValue(invocation.Capability, out var capability)
                ? capability.Handler(invocation, cancellationToken)
                : throw new CapabilityNotFoundException($"Agent '{agentId}' does not provide '{invocation.Capability}'.");
    }
}

/// <summary>A core subscription and the pump that hands its envelopes to the handler, in order.</summary>
internal sealed class InProcessSubscription(EventSubscription subscription, Func<Envelope, CancellationToken, Task> handler, string owner, ILogger logger, CancellationToken lifetime)
{
    private readonly CancellationTokenSource _stop = CancellationTokenSource.CreateLinkedTokenSource(lifetime);
    private Task _pump = Task.CompletedTask;
    private long _delivered;
    private int _stopped;

    public EventSubscription Subscription => subscription;

    public long Delivered => Interlocked.Read(ref _delivered);

    public void Start()
    {
        // The pump must not inherit the subscriber's ambient state (e.g. the span current when it subscribed).
        using (ExecutionContext.SuppressFlow())
        {
            _pump = Task.Run(PumpAsync);
        }
    }

    private async Task PumpAsync()
    {
        var token = _stop.Token;
        try
        {
            while (await subscription.WaitToReadAsync(token))
            {
                while (subscription.TryRead(out var envelope))
                {
                    Interlocked.Increment(ref _delivered);
                    try
                    {
                        await Tracing.RunHandlerAsync(envelope, subscription.Pattern, handler, token);
                    }
                    catch (OperationCanceledException) when (token.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        Log.HandlerFailed(logger, owner, subscription.Pattern, ex);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Stopped.
        }
    }

    public async Task StopAsync(TimeSpan drain, TimeProvider time)
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 1)
        {
            return;
        }

        // Unsubscribe first (no new envelopes), then let the handler finish what is queued.
        subscription.Dispose();
        try
        {
            await _pump.WaitAsync(drain, time);
        }
        catch (TimeoutException)
        {
            Log.SubscriptionDrainTimedOut(logger, owner, subscription.Pattern, subscription.Count);
        }
        finally
        {
            await _stop.CancelAsync();
        }

        try
        {
            await _pump.WaitAsync(TimeSpan.FromSeconds(1), time);
        }
        catch (TimeoutException)
        {
            // A handler that ignores cancellation; it is left behind.
        }

        _stop.Dispose();
    }
}
