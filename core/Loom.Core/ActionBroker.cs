using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Loom.Core.Internal;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Loom.Core;

/// <summary>
/// Registry of capabilities and the path every call takes: find the providers, validate the
/// input against the input schema, route (through <see cref="IRouter"/>), call with a deadline,
/// check the output against the output schema, and track each provider's latency (EWMA),
/// in-flight calls, failures and health. Call failures come back as <see cref="ActionOutcome"/>
/// values, never as exceptions.
/// </summary>
public sealed partial class ActionBroker
{
    private const string DefaultVersion = "1.0.0";
    private const double EwmaAlpha = 0.2;
    private const int MaxCachedSchemas = 4096;
    private static readonly ReadOnlyMemory<byte> s_emptyObject = "{}"u8.ToArray();
    private static readonly ReadOnlyMemory<byte> s_null = "null"u8.ToArray();

    private readonly ActionBrokerOptions _options;
    private readonly IRouter _router;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly ConcurrentDictionary<string, ProviderSlot[]> _byName = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ProviderHealth> _health = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, JsonSchema> _schemaCache = new(StringComparer.Ordinal);

    // Under _gate: provider id -> capability name -> its slots there, so removing a provider
    // touches its own capabilities only, not every name.
    private readonly Dictionary<string, Dictionary<string, int>> _slotsByProvider = new(StringComparer.Ordinal);
    private CoreMetrics? _metrics;

    public ActionBroker(ActionBrokerOptions? options = null, IRouter? router = null, TimeProvider? time = null, ILogger<ActionBroker>? logger = null)
    {
        _options = options ?? new ActionBrokerOptions();
        if (_options.DefaultTimeout <= TimeSpan.Zero || _options.MaxTimeout <= TimeSpan.Zero || _options.MaxInputBytes <= 0 || _options.UnhealthyCooldown < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "DefaultTimeout, MaxTimeout and MaxInputBytes must be positive and UnhealthyCooldown not negative.");
        }

        _router = router ?? new Router();
        _time = time ?? TimeProvider.System;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
    }

    /// <summary>The broker settings.</summary>
    public ActionBrokerOptions Options => _options;

    [GeneratedRegex(@"^[A-Za-z0-9_.:\-]{1,128}$", RegexOptions.CultureInvariant)]
    private static partial Regex CapabilityName();

    [GeneratedRegex(@"^[0-9A-Za-z.+\-]{1,64}$", RegexOptions.CultureInvariant)]
    private static partial Regex VersionText();

    /// <summary>
    /// Registers a capability for a provider. Registering the same name and version again for
    /// the same provider replaces the earlier registration. The descriptor is copied; an empty
    /// version becomes "1.0.0".
    /// </summary>
    /// <exception cref="InvalidParamsException">The name, version, cost or a schema is invalid; the path names the descriptor field.</exception>
    public CapabilityRegistration Register(CapabilityDescriptor descriptor, ICapabilityProvider provider)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        ArgumentNullException.ThrowIfNull(provider);
        if (string.IsNullOrEmpty(provider.ProviderId))
        {
            throw new InvalidParamsException("The provider has no id; give every provider a unique ProviderId.", "/provider_id");
        }

        if (!CapabilityName().IsMatch(descriptor.Name))
        {
            throw new InvalidParamsException(
                descriptor.Name.Length == 0
                    ? "The capability has no name; use 1-128 characters of letters, digits, '_', '.', ':' and '-', e.g. 'web.search'."
                    : $"The capability name '{descriptor.Name}' is invalid; use 1-128 characters of letters, digits, '_', '.', ':' and '-', e.g. 'web.search'.",
                "/name");
        }

        var version = descriptor.Version.Length == 0 ? DefaultVersion : descriptor.Version;
        if (!VersionText().IsMatch(version))
        {
            throw new InvalidParamsException($"The version '{descriptor.Version}' of '{descriptor.Name}' is invalid; use a semantic version such as '1.2.0'.", "/version");
        }

        if (double.IsNaN(descriptor.CostHint) || double.IsInfinity(descriptor.CostHint) || descriptor.CostHint < 0)
        {
            throw new InvalidParamsException($"cost_hint of '{descriptor.Name}' is {descriptor.CostHint}; use a finite number of 0 or more.", "/cost_hint");
        }

        var input = ParseSchema(descriptor.InputSchemaJson, descriptor.Name, "input_schema_json");
        var output = ParseSchema(descriptor.OutputSchemaJson, descriptor.Name, "output_schema_json");

        var copy = descriptor.Clone();
        copy.Version = version;
        var registration = new CapabilityRegistration(this, copy, provider);
        lock (_gate)
        {
            // Under the lock: UnregisterProvider drops health entries under it too.
            var slot = new ProviderSlot(registration, version, input, output, HealthOf(provider.ProviderId));
            var current = _byName.TryGetValue(copy.Name, out var existing) ? existing : [];
            var replaced = Array.FindIndex(current, s => s.Version == version && s.Provider.ProviderId == provider.ProviderId);
            ProviderSlot[] next;
            if (replaced >= 0)
            {
                next = (ProviderSlot[])current.Clone();
                next[replaced] = slot;
            }
            else
            {
                next = [.. current, slot];
                CountSlot(provider.ProviderId, copy.Name, +1);
            }

            _byName[copy.Name] = next;
        }

        return registration;
    }

    /// <summary>Removes every capability of a provider (e.g. its agent left); only the names it provides are touched.</summary>
    public void UnregisterProvider(string providerId)
    {
        ArgumentNullException.ThrowIfNull(providerId);
        lock (_gate)
        {
            if (_slotsByProvider.Remove(providerId, out var names))
            {
                foreach (var name in names.Keys)
                {
                    if (_byName.TryGetValue(name, out var slots))
                    {
                        Replace(name, Array.FindAll(slots, s => s.Provider.ProviderId != providerId));
                    }
                }
            }

            _health.TryRemove(providerId, out _);
        }
    }

    /// <summary>
    /// Unregisters several registrations at once (e.g. many agents expiring together): each
    /// capability name's provider list is rebuilt once for all of them, not once per registration.
    /// Registrations already unregistered are skipped, as <see cref="CapabilityRegistration.Dispose"/> does.
    /// </summary>
    /// <exception cref="ArgumentException">A registration belongs to another broker.</exception>
    public void UnregisterAll(IEnumerable<CapabilityRegistration> registrations)
    {
        ArgumentNullException.ThrowIfNull(registrations);
        Dictionary<string, HashSet<CapabilityRegistration>>? byName = null;
        foreach (var registration in registrations)
        {
            if (!registration.IsOf(this))
            {
                throw new ArgumentException($"The registration of '{registration.Descriptor.Name}' belongs to another broker.", nameof(registrations));
            }

            if (registration.TryRetire())
            {
                byName ??= new(StringComparer.Ordinal);
                if (!byName.TryGetValue(registration.Descriptor.Name, out var set))
                {
                    byName[registration.Descriptor.Name] = set = [];
                }

                set.Add(registration);
            }
        }

        if (byName is not null)
        {
            lock (_gate)
            {
                foreach (var (name, set) in byName)
                {
                    RemoveLocked(name, set);
                }
            }
        }
    }

    /// <summary>Marks a provider unhealthy for <see cref="ActionBrokerOptions.UnhealthyCooldown"/> (e.g. its session died).</summary>
    public void MarkUnhealthy(string providerId)
    {
        ArgumentNullException.ThrowIfNull(providerId);
        if (_health.TryGetValue(providerId, out var health))
        {
            MarkUnhealthy(health, providerId);
        }
    }

    /// <summary>Ends a provider's cooldown at once (e.g. its stream is back).</summary>
    public void MarkHealthy(string providerId)
    {
        ArgumentNullException.ThrowIfNull(providerId);
        if (_health.TryGetValue(providerId, out var health))
        {
            Volatile.Write(ref health.UnhealthyUntilTicks, 0);
        }
    }

    /// <summary>Every capability (name and version) with its providers' health and statistics, ordered by name and version.</summary>
    public IReadOnlyList<CapabilityInfo> Capabilities
    {
        get
        {
            var result = new List<CapabilityInfo>();
            foreach (var (name, slots) in _byName)
            {
                foreach (var version in slots.Select(s => s.Version).Distinct(StringComparer.Ordinal))
                {
                    var providers = slots.Where(s => s.Version == version).Select(Snapshot).ToArray();
                    result.Add(new CapabilityInfo(name, version, providers[0].Descriptor, providers));
                }
            }

            result.Sort(static (a, b) =>
            {
                var byName = string.CompareOrdinal(a.Name, b.Name);
                return byName != 0 ? byName : string.CompareOrdinal(a.Version, b.Version);
            });
            return result;
        }
    }

    /// <summary>The providers of a capability (any version) with health and statistics.</summary>
    public IReadOnlyList<ProviderCandidate> FindProviders(string capability)
    {
        ArgumentNullException.ThrowIfNull(capability);
        return _byName.TryGetValue(capability, out var slots) ? slots.Select(Snapshot).ToArray() : [];
    }

    /// <summary>
    /// Calls a capability. Never throws for call failures: the outcome carries
    /// CAPABILITY_NOT_FOUND, PROVIDER_UNAVAILABLE, INVALID_PARAMS (with the JSON pointer of the bad
    /// value), RESOURCE_EXHAUSTED, TIMEOUT, TOOL_ERROR or CANCELLED. A provider that answers
    /// PROVIDER_UNAVAILABLE is put in cooldown and the call goes to another one if there is any.
    /// </summary>
    public Task<ActionOutcome> InvokeAsync(ActionRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!string.IsNullOrEmpty(request.IdempotencyKey))
        {
            if (IdempotencyKeys.Problem(request.IdempotencyKey) is { } problem)
            {
                return Task.FromResult(Failure(_time.GetTimestamp(), ErrorCode.InvalidParams, problem));
            }

            if (Volatile.Read(ref _idempotency) is { } store)
            {
                return store.InvokeAsync(request, _invokeOnce ??= InvokeOnceAsync, cancellationToken);
            }
        }

        return InvokeOnceAsync(request, cancellationToken);
    }

    private IIdempotencyStore? _idempotency;
    private Func<ActionRequest, CancellationToken, Task<ActionOutcome>>? _invokeOnce;

    /// <summary>Where outcomes of calls with an idempotency key are kept; null (the default): keys are checked and otherwise ignored.</summary>
    public IIdempotencyStore? Idempotency
    {
        get => Volatile.Read(ref _idempotency);
        set => Volatile.Write(ref _idempotency, value);
    }

    private Task<ActionOutcome> InvokeOnceAsync(ActionRequest request, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _metrics) is null && Volatile.Read(ref _callObserver) is null && !LoomTelemetry.Source.HasListeners())
        {
            return InvokeCoreAsync(request, request.Traceparent, request.Tracestate, cancellationToken);
        }

        return InvokeObservedAsync(request, cancellationToken);
    }

    private Action<ActionRequest, ActionOutcome, TimeSpan>? _callObserver;

    /// <summary>
    /// Called once every call has ended (request, outcome, duration), on the thread that completed
    /// it, for the bridge's dashboard. It must be quick and never throw. Null (the default) costs nothing.
    /// </summary>
    public Action<ActionRequest, ActionOutcome, TimeSpan>? CallObserver
    {
        get => Volatile.Read(ref _callObserver);
        set => Volatile.Write(ref _callObserver, value);
    }

    /// <summary>Metrics are recorded here once attached (see <see cref="CoreMetrics"/>).</summary>
    internal void AttachMetrics(CoreMetrics metrics) => Volatile.Write(ref _metrics, metrics);

    internal void DetachMetrics(CoreMetrics metrics) => Interlocked.CompareExchange(ref _metrics, null, metrics);

    /// <summary>Whether a capability name is registered (any version); for bounded metric labels.</summary>
    internal bool IsRegistered(string capability) => _byName.ContainsKey(capability);

    /// <summary>Calls in flight by capability name (all providers and versions).</summary>
    internal Dictionary<string, long> InFlightByCapability()
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var (name, slots) in _byName)
        {
            long sum = 0;
            foreach (var slot in slots)
            {
                sum += Math.Max(0, Volatile.Read(ref slot.InFlight));
            }

            result[name] = sum;
        }

        return result;
    }

    private async Task<ActionOutcome> InvokeObservedAsync(ActionRequest request, CancellationToken cancellationToken)
    {
        var start = _time.GetTimestamp();
        var name = request.Capability ?? string.Empty;
        using var activity = LoomTelemetry.Source.HasListeners()
            ? LoomTelemetry.Source.StartActivity("call " + name, ActivityKind.Server, LoomTelemetry.ParentOf(request.Traceparent, request.Tracestate))
            : null;
        var traceparent = request.Traceparent;
        var tracestate = request.Tracestate;
        if (activity is not null)
        {
            activity.SetTag("rpc.system", "loom");
            activity.SetTag("rpc.method", name);
            activity.SetTag("loom.call_id", request.CallId);
            activity.SetTag("loom.caller", request.Caller);
            if (!string.IsNullOrEmpty(request.ThreadId))
            {
                activity.SetTag("loom.thread_id", request.ThreadId);
            }

            traceparent = LoomTelemetry.TraceparentOf(activity);
            tracestate = activity.TraceStateString ?? string.Empty;
        }

        var outcome = await InvokeCoreAsync(request, traceparent, tracestate, cancellationToken).ConfigureAwait(false);
        if (activity is not null)
        {
            activity.SetTag("loom.provider", outcome.AgentId);
            if (outcome.Error is { } error)
            {
                activity.SetTag("error.type", ErrorCodes.Name(error.Code));
                activity.SetStatus(ActivityStatusCode.Error, error.Message);
            }
        }

        var elapsed = _time.GetElapsedTime(start);
        Volatile.Read(ref _metrics)?.RecordCall(name, outcome.Error?.Code, elapsed);
        Volatile.Read(ref _callObserver)?.Invoke(request, outcome, elapsed);
        return outcome;
    }

    private async Task<ActionOutcome> InvokeCoreAsync(ActionRequest request, string traceparent, string tracestate, CancellationToken cancellationToken)
    {
        var start = _time.GetTimestamp();
        var name = request.Capability ?? string.Empty;

        if (request.InputJson.Length > _options.MaxInputBytes)
        {
            return Failure(start, ErrorCode.ResourceExhausted, $"The input of '{name}' is {request.InputJson.Length} bytes; the limit is {_options.MaxInputBytes}.");
        }

        if (!_byName.TryGetValue(name, out var all) || all.Length == 0)
        {
            return Failure(start, ErrorCode.CapabilityNotFound, name.Length == 0
                ? "The call names no capability; set capability to a registered name."
                : $"No provider is registered for capability '{name}'.");
        }

        var eligible = Filter(all, request);
        if (eligible.Length == 0)
        {
            var what = request.Version is { Length: > 0 } v ? $"version '{v}' of '{name}'" : $"'{name}'";
            var message = request.TargetAgent is { Length: > 0 } target
                ? $"Agent '{target}' does not provide {what}."
                : $"No provider offers {what}; registered versions: {string.Join(", ", all.Select(s => s.Version).Distinct(StringComparer.Ordinal))}.";
            return Failure(start, ErrorCode.CapabilityNotFound, message);
        }

        var input = request.InputJson.IsEmpty ? s_emptyObject : request.InputJson;

        // Validate before routing when every candidate shares the schema (the usual case), so a
        // bad input is INVALID_PARAMS even when no provider is healthy.
        var sharedSchema = SharedInputSchema(eligible);
        if (sharedSchema is not null && Validate(sharedSchema, input, name) is { } invalid)
        {
            return Failure(start, invalid);
        }

        var timeout = request.Timeout ?? _options.DefaultTimeout;
        if (timeout > _options.MaxTimeout)
        {
            timeout = _options.MaxTimeout;
        }

        if (timeout <= TimeSpan.Zero)
        {
            return Failure(start, ErrorCode.Timeout, $"The deadline of the call to '{name}' had already passed.");
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return Failure(start, ErrorCode.Cancelled, $"The call to '{name}' was cancelled by the caller.");
        }

        var policy = request.Policy == RoutingPolicy.Unspecified ? _options.DefaultPolicy : request.Policy;
        var callId = string.IsNullOrEmpty(request.CallId) ? Guid.NewGuid().ToString("N") : request.CallId;
        var deadline = _time.GetUtcNow() + timeout;

        using var timeoutSource = new CancellationTokenSource(timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutSource.Token);
        var invocation = new ActionInvocation
        {
            CallId = callId,
            Capability = name,
            InputJson = input,
            Deadline = deadline,
            Caller = request.Caller ?? string.Empty,
            ThreadId = request.ThreadId ?? string.Empty,
            Traceparent = traceparent ?? string.Empty,
            Tracestate = tracestate ?? string.Empty,
            Headers = request.Headers ?? new Dictionary<string, string>(0, StringComparer.Ordinal),
        };

        HashSet<ProviderSlot>? tried = null;
        ActionOutcome? lastUnavailable = null;
        while (true)
        {
            var (slot, problem) = Route(name, eligible, tried, policy);
            if (slot is null)
            {
                return lastUnavailable ?? Failure(start, problem!);
            }

            if (sharedSchema is null && Validate(slot.Input, input, name) is { } invalidForProvider)
            {
                return Failure(start, invalidForProvider, slot);
            }

            if (Interlocked.Increment(ref slot.InFlight) is var inFlight && slot.MaxConcurrency > 0 && inFlight > slot.MaxConcurrency)
            {
                // Lost a race for the last free slot of this provider: try another.
                Interlocked.Decrement(ref slot.InFlight);
                (tried ??= []).Add(slot);
                continue;
            }

            var outcome = await AttemptAsync(slot, invocation, start, timeout, timeoutSource, cancellationToken, linked.Token).ConfigureAwait(false);
            if (outcome.Error?.Code == ErrorCode.ProviderUnavailable && !linked.IsCancellationRequested)
            {
                lastUnavailable = outcome;
                (tried ??= []).Add(slot);
                continue;
            }

            return outcome;
        }
    }

    private async Task<ActionOutcome> AttemptAsync(ProviderSlot slot, ActionInvocation invocation, long start, TimeSpan timeout, CancellationTokenSource timeoutSource, CancellationToken callerToken, CancellationToken token)
    {
        var provider = slot.Provider;
        var attemptStart = _time.GetTimestamp();
        Interlocked.Increment(ref slot.Calls);
        Task<ReadOnlyMemory<byte>>? running = null;
        ActionOutcome outcome;
        try
        {
            ReadOnlyMemory<byte> output;
            var pending = provider.InvokeAsync(invocation.ForVersion(slot.Version), token);
            if (pending.IsCompletedSuccessfully)
            {
                output = pending.Result;
            }
            else
            {
                // WaitAsync: a provider that ignores the token must not hold the caller past its deadline.
                running = pending.AsTask();
                output = await running.WaitAsync(token).ConfigureAwait(false);
            }

            outcome = CheckOutput(slot, invocation, output, start);
        }
        catch (OperationCanceledException) when (callerToken.IsCancellationRequested)
        {
            outcome = Failure(start, ErrorCode.Cancelled, $"The call to '{invocation.Capability}' was cancelled by the caller.", slot);
        }
        catch (OperationCanceledException) when (timeoutSource.IsCancellationRequested)
        {
            outcome = Failure(start, ErrorCode.Timeout, $"'{invocation.Capability}' on '{provider.AgentId}' did not answer within {FormatDuration(timeout)}.", slot);
        }
        catch (LoomException ex)
        {
            if (ex.Code == ErrorCode.ProviderUnavailable)
            {
                MarkUnhealthy(slot.Health, provider.ProviderId);
            }

            outcome = Failure(start, ex.ToError(), slot);
        }
        catch (OperationCanceledException)
        {
            outcome = Failure(start, ErrorCode.ToolError, $"'{invocation.Capability}' on '{provider.AgentId}' cancelled the call by itself.", slot);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            outcome = Failure(start, ErrorCode.ToolError, string.IsNullOrEmpty(ex.Message) ? ex.GetType().Name : ex.Message, slot);
        }
        finally
        {
            Interlocked.Decrement(ref slot.InFlight);
        }

        if (running is { IsCompleted: false })
        {
            ObserveAbandoned(running, provider.ProviderId, invocation);
        }

        var code = outcome.Error?.Code ?? ErrorCode.Unspecified;
        if (code != ErrorCode.Cancelled)
        {
            slot.RecordLatency(_time.GetElapsedTime(attemptStart).TotalMilliseconds);
        }

        if (code is ErrorCode.ToolError or ErrorCode.Timeout or ErrorCode.ProviderUnavailable or ErrorCode.Internal)
        {
            Interlocked.Increment(ref slot.Failures);
            Log.CallFailed(_logger, invocation.Capability, invocation.CallId, provider.ProviderId, ErrorCodes.Name(code), outcome.Error!.Message);
        }

        return outcome;
    }

    private ActionOutcome CheckOutput(ProviderSlot slot, ActionInvocation invocation, ReadOnlyMemory<byte> output, long start)
    {
        if (output.IsEmpty)
        {
            output = s_null; // a provider with nothing to say answered null
        }

        if (_options.ValidateOutput)
        {
            var result = slot.Output.Validate(output.Span);
            if (!result.IsValid)
            {
                Interlocked.Increment(ref slot.OutputSchemaFailures);
                Log.OutputSchemaMismatch(_logger, invocation.Capability, slot.Provider.ProviderId, result.Message);
                return Failure(start, new Error
                {
                    Code = ErrorCode.ToolError,
                    Message = $"output does not match the schema of '{invocation.Capability}': {result.Message}",
                    Path = result.Path,
                }, slot);
            }
        }

        return new ActionOutcome
        {
            OutputJson = output,
            ProviderId = slot.Provider.ProviderId,
            AgentId = slot.Provider.AgentId,
            Duration = _time.GetElapsedTime(start),
        };
    }

    private (ProviderSlot? Slot, Error? Problem) Route(string name, ProviderSlot[] eligible, HashSet<ProviderSlot>? tried, RoutingPolicy policy)
    {
        var candidates = new List<ProviderCandidate>(eligible.Length);
        var slots = new List<ProviderSlot>(eligible.Length);
        var busy = 0;
        foreach (var slot in eligible)
        {
            if (tried is not null && tried.Contains(slot))
            {
                continue;
            }

            if (slot.MaxConcurrency > 0 && Volatile.Read(ref slot.InFlight) >= slot.MaxConcurrency)
            {
                busy++;
                continue;
            }

            candidates.Add(Snapshot(slot));
            slots.Add(slot);
        }

        if (candidates.Count == 0)
        {
            return busy > 0
                ? (null, new Error { Code = ErrorCode.ResourceExhausted, Message = $"Every provider of '{name}' is at its max_concurrency; retry later.", Retryable = true })
                : (null, new Error { Code = ErrorCode.ProviderUnavailable, Message = $"No provider of '{name}' could answer.", Retryable = true });
        }

        var chosen = _router.Select(name, candidates, policy);
        if (chosen is null)
        {
            var message = policy == RoutingPolicy.LocalOnly
                ? (candidates.Exists(c => c.Provider.IsLocal)
                    ? $"Every in-process provider of '{name}' is unhealthy (LOCAL_ONLY routing uses no remote provider)."
                    : $"'{name}' has no in-process provider, and LOCAL_ONLY routing uses no remote provider.")
                : $"Every provider of '{name}' ({candidates.Count}) is unhealthy; retry after the cooldown.";
            return (null, new Error { Code = ErrorCode.ProviderUnavailable, Message = message, Retryable = true });
        }

        var index = candidates.IndexOf(chosen);
        if (index < 0)
        {
            index = candidates.FindIndex(c => ReferenceEquals(c.Provider, chosen.Provider) && ReferenceEquals(c.Descriptor, chosen.Descriptor));
        }

        return index < 0
            ? (null, new Error { Code = ErrorCode.Internal, Message = $"The router chose a provider for '{name}' that was not a candidate." })
            : (slots[index], null);
    }

    private static ProviderSlot[] Filter(ProviderSlot[] all, ActionRequest request)
    {
        var version = string.IsNullOrEmpty(request.Version) ? null : request.Version;
        var target = string.IsNullOrEmpty(request.TargetAgent) ? null : request.TargetAgent;
        if (version is null && target is null)
        {
            return all;
        }

        return Array.FindAll(all, s =>
            (version is null || s.Version == version)
            && (target is null || s.Provider.AgentId == target || s.Provider.ProviderId == target));
    }

    private static JsonSchema? SharedInputSchema(ProviderSlot[] slots)
    {
        var schema = slots[0].Input;
        for (var i = 1; i < slots.Length; i++)
        {
            if (!ReferenceEquals(slots[i].Input, schema))
            {
                return null;
            }
        }

        return schema;
    }

    private static Error? Validate(JsonSchema schema, ReadOnlyMemory<byte> input, string name)
    {
        var result = schema.Validate(input.Span);
        return result.IsValid
            ? null
            : new Error { Code = ErrorCode.InvalidParams, Message = $"The input of '{name}' does not match its schema: {result.Message}", Path = result.Path };
    }

    private JsonSchema ParseSchema(string text, string capability, string field)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return JsonSchema.Any;
        }

        if (_schemaCache.TryGetValue(text, out var cached))
        {
            return cached;
        }

        JsonSchema schema;
        try
        {
            schema = JsonSchema.Parse(text);
        }
        catch (InvalidParamsException ex)
        {
            throw new InvalidParamsException($"{field} of '{capability}' is not a usable JSON Schema: {ex.Message}", "/" + field);
        }

        if (_schemaCache.Count < MaxCachedSchemas)
        {
            schema = _schemaCache.GetOrAdd(text, schema);
        }

        return schema;
    }

    internal void Unregister(CapabilityRegistration registration)
    {
        lock (_gate)
        {
            RemoveLocked(registration.Descriptor.Name, [registration]);
        }
    }

    /// <summary>Removes these registrations of one name (under the gate); a provider left with no capability loses its health entry.</summary>
    private void RemoveLocked(string name, HashSet<CapabilityRegistration> registrations)
    {
        if (!_byName.TryGetValue(name, out var slots))
        {
            return;
        }

        var kept = new List<ProviderSlot>(Math.Max(0, slots.Length - registrations.Count));
        foreach (var slot in slots)
        {
            if (registrations.Contains(slot.Registration))
            {
                CountSlot(slot.Provider.ProviderId, name, -1);
            }
            else
            {
                kept.Add(slot);
            }
        }

        if (kept.Count != slots.Length)
        {
            Replace(name, kept.ToArray());
        }
    }

    /// <summary>Keeps <see cref="_slotsByProvider"/> in step with <see cref="_byName"/> (under the gate).</summary>
    private void CountSlot(string providerId, string name, int delta)
    {
        if (!_slotsByProvider.TryGetValue(providerId, out var names))
        {
            _slotsByProvider[providerId] = names = new Dictionary<string, int>(StringComparer.Ordinal);
        }

        var count = names.GetValueOrDefault(name) + delta;
        if (count > 0)
        {
            names[name] = count;
            return;
        }

        names.Remove(name);
        if (names.Count == 0)
        {
            _slotsByProvider.Remove(providerId);
            _health.TryRemove(providerId, out _);
        }
    }

    private void Replace(string name, ProviderSlot[] slots)
    {
        if (slots.Length == 0)
        {
            _byName.TryRemove(name, out _);
        }
        else
        {
            _byName[name] = slots;
        }
    }

    private ProviderHealth HealthOf(string providerId) => _health.GetOrAdd(providerId, static _ => new ProviderHealth());

    private void MarkUnhealthy(ProviderHealth health, string providerId)
    {
        var until = _time.GetUtcNow() + _options.UnhealthyCooldown;
        Volatile.Write(ref health.UnhealthyUntilTicks, until.UtcTicks);
        Log.ProviderUnhealthy(_logger, providerId, _options.UnhealthyCooldown);
    }

    private ProviderCandidate Snapshot(ProviderSlot slot) => new()
    {
        Provider = slot.Provider,
        Descriptor = slot.Registration.Descriptor,
        LatencyEwmaMs = slot.LatencyEwmaMs,
        IsHealthy = _time.GetUtcNow().UtcTicks >= Volatile.Read(ref slot.Health.UnhealthyUntilTicks),
        InFlight = Math.Max(0, Volatile.Read(ref slot.InFlight)),
        Calls = Volatile.Read(ref slot.Calls),
        Failures = Volatile.Read(ref slot.Failures),
        OutputSchemaFailures = Volatile.Read(ref slot.OutputSchemaFailures),
    };

    private void ObserveAbandoned(Task<ReadOnlyMemory<byte>> running, string providerId, ActionInvocation invocation)
    {
        var logger = _logger;
        _ = running.ContinueWith(
            t => Log.AbandonedCallFailed(logger, providerId, invocation.CallId, invocation.Capability, t.Exception!.GetBaseException().Message),
            CancellationToken.None,
            TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    private ActionOutcome Failure(long start, ErrorCode code, string message, ProviderSlot? slot = null) =>
        Failure(start, new Error { Code = code, Message = message, Retryable = ErrorCodes.IsRetryable(code) }, slot);

    private ActionOutcome Failure(long start, Error error, ProviderSlot? slot = null) => new()
    {
        Error = error,
        ProviderId = slot?.Provider.ProviderId,
        AgentId = slot?.Provider.AgentId,
        Duration = _time.GetElapsedTime(start),
    };

    private static string FormatDuration(TimeSpan value) =>
        value.TotalSeconds >= 1
            ? value.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + " s"
            : value.TotalMilliseconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + " ms";

    private sealed class ProviderHealth
    {
        public long UnhealthyUntilTicks;
    }

    /// <summary>One provider of one capability version, with its statistics.</summary>
    private sealed class ProviderSlot(CapabilityRegistration registration, string version, JsonSchema input, JsonSchema output, ProviderHealth health)
    {
        private readonly Lock _latencyGate = new();
        private bool _hasSample;

        public readonly CapabilityRegistration Registration = registration;
        public readonly string Version = version;
        public readonly JsonSchema Input = input;
        public readonly JsonSchema Output = output;
        public readonly ProviderHealth Health = health;
        public readonly int MaxConcurrency = (int)Math.Min(registration.Descriptor.MaxConcurrency, int.MaxValue);
        public int InFlight;
        public long Calls;
        public long Failures;
        public long OutputSchemaFailures;
        private double _latencyEwmaMs = registration.Descriptor.LatencyHintMs;

        public ICapabilityProvider Provider => Registration.Provider;

        public double LatencyEwmaMs
        {
            get
            {
                lock (_latencyGate)
                {
                    return _latencyEwmaMs;
                }
            }
        }

        public void RecordLatency(double milliseconds)
        {
            lock (_latencyGate)
            {
                // Seeded by latency_hint_ms; without a hint the first sample is the estimate.
                _latencyEwmaMs = !_hasSample && Registration.Descriptor.LatencyHintMs == 0
                    ? milliseconds
                    : _latencyEwmaMs + (EwmaAlpha * (milliseconds - _latencyEwmaMs));
                _hasSample = true;
            }
        }
    }
}
