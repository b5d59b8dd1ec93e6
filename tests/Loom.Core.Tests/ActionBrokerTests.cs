using System.Text;
using Loom.Protocol.V1;

namespace Loom.Core.Tests;

internal sealed class TestProvider(string id, Func<ActionInvocation, CancellationToken, ValueTask<ReadOnlyMemory<byte>>> handler, bool isLocal = false) : ICapabilityProvider
{
    public int Calls;

    public string ProviderId { get; } = id;

    public string AgentId { get; } = id.StartsWith("local:", StringComparison.Ordinal) ? "bridge" : id;

    public bool IsLocal { get; } = isLocal;

    public ActionInvocation? Last { get; private set; }

    public ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref Calls);
        Last = invocation;
        return handler(invocation, cancellationToken);
    }

    public static TestProvider Returning(string id, string json, bool isLocal = false) =>
        new(id, (_, _) => ValueTask.FromResult<ReadOnlyMemory<byte>>(Encoding.UTF8.GetBytes(json)), isLocal);
}

public class ActionBrokerTests
{
    private readonly FakeTimeProvider _time = new();

    private ActionBroker NewBroker(ActionBrokerOptions? options = null, IRouter? router = null) => new(options, router, _time);

    private static CapabilityDescriptor Cap(string name, string input = "", string output = "", string version = "", double cost = 0, uint latencyHint = 0, uint maxConcurrency = 0) => new()
    {
        Name = name,
        Version = version,
        InputSchemaJson = input,
        OutputSchemaJson = output,
        CostHint = cost,
        LatencyHintMs = latencyHint,
        MaxConcurrency = maxConcurrency,
    };

    private static ActionRequest Call(string name, string input = "{}", RoutingPolicy policy = RoutingPolicy.Unspecified, TimeSpan? timeout = null, string? version = null, string? target = null) => new()
    {
        Capability = name,
        InputJson = Encoding.UTF8.GetBytes(input),
        Policy = policy,
        Timeout = timeout,
        Version = version,
        TargetAgent = target,
        Caller = "caller-1",
    };

    private static string Output(ActionOutcome outcome) => Encoding.UTF8.GetString(outcome.OutputJson.Span);

    [Fact]
    public async Task Successful_call_passes_the_invocation_and_returns_output()
    {
        var broker = NewBroker();
        var provider = TestProvider.Returning("agent-a", """{"sum":3}""");
        broker.Register(Cap("math.add", """{"type":"object","required":["a","b"]}""", """{"type":"object"}"""), provider);

        var outcome = await broker.InvokeAsync(new ActionRequest
        {
            Capability = "math.add",
            InputJson = """{"a":1,"b":2}"""u8.ToArray(),
            Caller = "caller-1",
            ThreadId = "thread-9",
            Traceparent = "00-abc-def-01",
            CallId = "call-42",
            Headers = new Dictionary<string, string> { ["k"] = "v" },
            Timeout = TimeSpan.FromSeconds(2),
        });

        Assert.True(outcome.Succeeded);
        Assert.Equal("""{"sum":3}""", Output(outcome));
        Assert.Equal(("agent-a", "agent-a"), (outcome.ProviderId, outcome.AgentId));
        var invocation = provider.Last!;
        Assert.Equal(("call-42", "math.add", "caller-1", "thread-9", "00-abc-def-01"), (invocation.CallId, invocation.Capability, invocation.Caller, invocation.ThreadId, invocation.Traceparent));
        Assert.Equal("v", invocation.Headers["k"]);
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(2), invocation.Deadline);

        var result = outcome.ToResult("call-42");
        Assert.Equal(ActionResult.OutcomeOneofCase.OutputJson, result.OutcomeCase);
        Assert.Equal("agent-a", result.Provider);
        Assert.Equal("call-42", result.CallId);
    }

    [Fact]
    public async Task Unknown_capability_version_and_target()
    {
        var broker = NewBroker();
        broker.Register(Cap("x.y", version: "2.0.0"), TestProvider.Returning("a", "1"));

        var notFound = await broker.InvokeAsync(Call("nope"));
        Assert.Equal(ErrorCode.CapabilityNotFound, notFound.Error!.Code);
        Assert.Contains("'nope'", notFound.Error.Message, StringComparison.Ordinal);

        var wrongVersion = await broker.InvokeAsync(Call("x.y", version: "1.0.0"));
        Assert.Equal(ErrorCode.CapabilityNotFound, wrongVersion.Error!.Code);
        Assert.Contains("registered versions: 2.0.0", wrongVersion.Error.Message, StringComparison.Ordinal);

        var wrongTarget = await broker.InvokeAsync(Call("x.y", target: "b"));
        Assert.Equal(ErrorCode.CapabilityNotFound, wrongTarget.Error!.Code);
        Assert.Equal("Agent 'b' does not provide 'x.y'.", wrongTarget.Error.Message);

        Assert.True((await broker.InvokeAsync(Call("x.y", version: "2.0.0", target: "a"))).Succeeded);
    }

    [Fact]
    public async Task Invalid_input_is_INVALID_PARAMS_with_the_path()
    {
        var broker = NewBroker();
        var provider = TestProvider.Returning("a", "{}");
        broker.Register(Cap("t", """{"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"}}}}}}"""), provider);

        var outcome = await broker.InvokeAsync(Call("t", """{"items":[{"name":5}]}"""));

        Assert.Equal(ErrorCode.InvalidParams, outcome.Error!.Code);
        Assert.Equal("/items/0/name", outcome.Error.Path);
        Assert.Contains("/items/0/name: expected string, got number", outcome.Error.Message, StringComparison.Ordinal);
        Assert.Equal(0, provider.Calls);

        var malformed = await broker.InvokeAsync(Call("t", "{"));
        Assert.Equal(ErrorCode.InvalidParams, malformed.Error!.Code);
        Assert.Equal("", malformed.Error.Path);
    }

    [Fact]
    public async Task Empty_input_counts_as_an_empty_object()
    {
        var broker = NewBroker();
        var provider = TestProvider.Returning("a", "{}");
        broker.Register(Cap("t", """{"type":"object"}"""), provider);
        var outcome = await broker.InvokeAsync(new ActionRequest { Capability = "t", InputJson = ReadOnlyMemory<byte>.Empty });
        Assert.True(outcome.Succeeded);
        Assert.Equal("{}", Encoding.UTF8.GetString(provider.Last!.InputJson.Span));
    }

    [Fact]
    public async Task Oversized_input_is_RESOURCE_EXHAUSTED()
    {
        var broker = NewBroker(new ActionBrokerOptions { MaxInputBytes = 10 });
        broker.Register(Cap("t"), TestProvider.Returning("a", "{}"));
        var outcome = await broker.InvokeAsync(Call("t", """{"a":"0123456789"}"""));
        Assert.Equal(ErrorCode.ResourceExhausted, outcome.Error!.Code);
    }

    [Fact]
    public async Task Round_robin_spreads_calls()
    {
        var broker = NewBroker();
        var a = TestProvider.Returning("a", "1");
        var b = TestProvider.Returning("b", "2");
        var c = TestProvider.Returning("c", "3");
        foreach (var p in new[] { a, b, c })
        {
            broker.Register(Cap("rr"), p);
        }

        var answers = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            answers.Add((await broker.InvokeAsync(Call("rr", policy: RoutingPolicy.RoundRobin))).AgentId!);
        }

        Assert.Equal(["a", "b", "c", "a", "b", "c"], answers);
    }

    [Fact]
    public async Task Least_latency_uses_the_hint_then_the_measured_ewma()
    {
        var broker = NewBroker();
        var slowGate = new TaskCompletionSource<ReadOnlyMemory<byte>>();
        var fast = TestProvider.Returning("fast", "1");
        var slow = new TestProvider("slow", async (_, ct) =>
        {
            return await slowGate.Task.WaitAsync(ct);
        });
        broker.Register(Cap("ll", latencyHint: 100), fast);
        broker.Register(Cap("ll", latencyHint: 50), slow);

        // The hint says "slow" is faster: it gets the call, which takes 1000 ms of fake time.
        var pending = broker.InvokeAsync(Call("ll", policy: RoutingPolicy.LeastLatency));
        _time.Advance(TimeSpan.FromMilliseconds(1000));
        slowGate.SetResult("2"u8.ToArray());
        Assert.Equal("slow", (await pending.WaitAsync(TimeSpan.FromSeconds(5))).AgentId);

        // EWMA: 50 + 0.2 * (1000 - 50) = 240 > 100, so "fast" wins now.
        var providers = broker.FindProviders("ll").ToDictionary(p => p.Provider.ProviderId);
        Assert.Equal(240, providers["slow"].LatencyEwmaMs, 3);
        Assert.Equal(100, providers["fast"].LatencyEwmaMs, 3);
        Assert.Equal("fast", (await broker.InvokeAsync(Call("ll", policy: RoutingPolicy.LeastLatency))).AgentId);
    }

    [Fact]
    public async Task Lowest_cost_picks_the_cheapest()
    {
        var broker = NewBroker();
        broker.Register(Cap("lc", cost: 3), TestProvider.Returning("pricey", "1"));
        broker.Register(Cap("lc", cost: 0.5), TestProvider.Returning("cheap", "1"));
        broker.Register(Cap("lc", cost: 1), TestProvider.Returning("mid", "1"));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("cheap", (await broker.InvokeAsync(Call("lc", policy: RoutingPolicy.LowestCost))).AgentId);
        }
    }

    [Fact]
    public async Task Local_only_never_uses_a_remote_provider()
    {
        var broker = NewBroker();
        broker.Register(Cap("priv"), TestProvider.Returning("remote", "1"));
        var none = await broker.InvokeAsync(Call("priv", policy: RoutingPolicy.LocalOnly));
        Assert.Equal(ErrorCode.ProviderUnavailable, none.Error!.Code);
        Assert.Contains("no in-process provider", none.Error.Message, StringComparison.Ordinal);

        broker.Register(Cap("priv"), TestProvider.Returning("local:priv", "2", isLocal: true));
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("local:priv", (await broker.InvokeAsync(Call("priv", policy: RoutingPolicy.LocalOnly))).ProviderId);
        }
    }

    [Fact]
    public async Task Provider_unavailable_fails_over_and_cools_down()
    {
        var broker = NewBroker(new ActionBrokerOptions { UnhealthyCooldown = TimeSpan.FromSeconds(5) });
        var down = new TestProvider("down", (_, _) => throw new ProviderUnavailableException("session lost"));
        var up = TestProvider.Returning("up", "1");
        broker.Register(Cap("f"), down);
        broker.Register(Cap("f"), up);

        var first = await broker.InvokeAsync(Call("f"));
        Assert.True(first.Succeeded);
        Assert.Equal("up", first.AgentId);
        Assert.Equal(1, down.Calls);

        // "down" is skipped during the cooldown ...
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("up", (await broker.InvokeAsync(Call("f"))).AgentId);
        }

        Assert.Equal(1, down.Calls);
        Assert.False(broker.FindProviders("f").Single(p => p.Provider == down).IsHealthy);

        // ... and tried again after it.
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.True(broker.FindProviders("f").Single(p => p.Provider == down).IsHealthy);
        for (var i = 0; i < 2; i++)
        {
            await broker.InvokeAsync(Call("f"));
        }

        Assert.Equal(2, down.Calls);
    }

    [Fact]
    public async Task No_healthy_provider_is_PROVIDER_UNAVAILABLE()
    {
        var broker = NewBroker();
        var p = TestProvider.Returning("a", "1");
        broker.Register(Cap("h"), p);
        broker.MarkUnhealthy("a");
        var outcome = await broker.InvokeAsync(Call("h"));
        Assert.Equal(ErrorCode.ProviderUnavailable, outcome.Error!.Code);
        Assert.True(outcome.Error.Retryable);
        Assert.Equal(0, p.Calls);

        var only = new TestProvider("only", (_, _) => throw new ProviderUnavailableException("gone"));
        broker.Register(Cap("g"), only);
        var last = await broker.InvokeAsync(Call("g"));
        Assert.Equal(ErrorCode.ProviderUnavailable, last.Error!.Code);
        Assert.Equal("gone", last.Error.Message);
    }

    [Fact]
    public async Task Timeout_is_TIMEOUT_and_cancels_the_provider()
    {
        var broker = NewBroker();
        var providerSawCancel = new TaskCompletionSource();
        var hang = new TestProvider("hang", async (_, ct) =>
        {
            try
            {
                await Task.Delay(Timeout.Infinite, ct);
            }
            catch (OperationCanceledException)
            {
                providerSawCancel.TrySetResult();
                throw;
            }

            return default;
        });
        broker.Register(Cap("slow"), hang);

        var pending = broker.InvokeAsync(Call("slow", timeout: TimeSpan.FromSeconds(3)));
        _time.Advance(TimeSpan.FromMilliseconds(2999));
        Assert.False(pending.IsCompleted);
        _time.Advance(TimeSpan.FromMilliseconds(1));
        var outcome = await pending.WaitAsync(TimeSpan.FromSeconds(5));

        Assert.Equal(ErrorCode.Timeout, outcome.Error!.Code);
        Assert.Equal("'slow' on 'hang' did not answer within 3 s.", outcome.Error.Message);
        await providerSawCancel.Task.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(1, broker.FindProviders("slow")[0].Failures);
        Assert.Equal(0, broker.FindProviders("slow")[0].InFlight);
    }

    [Fact]
    public async Task A_provider_that_ignores_cancellation_still_times_out()
    {
        var broker = NewBroker();
        var never = new TaskCompletionSource<ReadOnlyMemory<byte>>();
        broker.Register(Cap("stuck"), new TestProvider("stuck", (_, _) => new ValueTask<ReadOnlyMemory<byte>>(never.Task)));
        var pending = broker.InvokeAsync(Call("stuck", timeout: TimeSpan.FromSeconds(1)));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(ErrorCode.Timeout, (await pending.WaitAsync(TimeSpan.FromSeconds(5))).Error!.Code);
        never.SetException(new InvalidOperationException("late failure is observed, not thrown"));
    }

    [Fact]
    public async Task Timeouts_are_capped_and_zero_fails_at_once()
    {
        var broker = NewBroker(new ActionBrokerOptions { MaxTimeout = TimeSpan.FromSeconds(2) });
        var provider = new TestProvider("p", async (_, ct) =>
        {
            await Task.Delay(Timeout.Infinite, ct);
            return default;
        });
        broker.Register(Cap("c"), provider);

        var zero = await broker.InvokeAsync(Call("c", timeout: TimeSpan.Zero));
        Assert.Equal(ErrorCode.Timeout, zero.Error!.Code);
        Assert.Equal(0, provider.Calls);

        var pending = broker.InvokeAsync(Call("c", timeout: TimeSpan.FromHours(1)));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(ErrorCode.Timeout, (await pending.WaitAsync(TimeSpan.FromSeconds(5))).Error!.Code);
    }

    [Fact]
    public async Task Caller_cancellation_is_CANCELLED()
    {
        var broker = NewBroker();
        broker.Register(Cap("c"), new TestProvider("p", async (_, ct) =>
        {
            await Task.Delay(Timeout.Infinite, ct);
            return default;
        }));
        using var cts = new CancellationTokenSource();
        var pending = broker.InvokeAsync(Call("c"), cts.Token);
        await cts.CancelAsync();
        var outcome = await pending.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(ErrorCode.Cancelled, outcome.Error!.Code);
        Assert.Equal(0, broker.FindProviders("c")[0].Failures);

        using var already = new CancellationTokenSource();
        await already.CancelAsync();
        Assert.Equal(ErrorCode.Cancelled, (await broker.InvokeAsync(Call("c"), already.Token)).Error!.Code);
    }

    [Fact]
    public async Task Exceptions_are_TOOL_ERROR_with_the_message_and_loom_exceptions_pass_through()
    {
        var broker = NewBroker();
        broker.Register(Cap("boom"), new TestProvider("p", (_, _) => throw new InvalidOperationException("disk on fire")));
        broker.Register(Cap("async-boom"), new TestProvider("q", async (_, _) =>
        {
            await Task.Yield();
            throw new FormatException("bad format");
        }));
        broker.Register(Cap("denied"), new TestProvider("r", (_, _) => throw new PermissionDeniedException("not for you")));
        broker.Register(Cap("typed"), new TestProvider("s", (_, _) => throw new InvalidParamsException("city unknown", "/city")));

        var boom = await broker.InvokeAsync(Call("boom"));
        Assert.Equal((ErrorCode.ToolError, "disk on fire"), (boom.Error!.Code, boom.Error.Message));
        var asyncBoom = await broker.InvokeAsync(Call("async-boom"));
        Assert.Equal((ErrorCode.ToolError, "bad format"), (asyncBoom.Error!.Code, asyncBoom.Error.Message));
        var denied = await broker.InvokeAsync(Call("denied"));
        Assert.Equal((ErrorCode.PermissionDenied, "not for you"), (denied.Error!.Code, denied.Error.Message));
        var typed = await broker.InvokeAsync(Call("typed"));
        Assert.Equal((ErrorCode.InvalidParams, "/city"), (typed.Error!.Code, typed.Error.Path));

        Assert.Equal(1, broker.FindProviders("boom")[0].Failures);
        Assert.Equal(0, broker.FindProviders("denied")[0].Failures);
        Assert.Equal(ActionResult.OutcomeOneofCase.Error, boom.ToResult("x").OutcomeCase);
    }

    [Fact]
    public async Task Output_that_breaks_the_schema_is_TOOL_ERROR_and_counted()
    {
        var broker = NewBroker();
        broker.Register(Cap("o", output: """{"type":"object","required":["answer"]}"""), TestProvider.Returning("p", """{"other":1}"""));
        broker.Register(Cap("garbage"), TestProvider.Returning("q", "not json"));

        var outcome = await broker.InvokeAsync(Call("o"));
        Assert.Equal(ErrorCode.ToolError, outcome.Error!.Code);
        Assert.StartsWith("output does not match the schema", outcome.Error.Message, StringComparison.Ordinal);
        Assert.Contains("missing required property \"answer\"", outcome.Error.Message, StringComparison.Ordinal);
        var stats = broker.FindProviders("o")[0];
        Assert.Equal((1L, 1L), (stats.OutputSchemaFailures, stats.Failures));

        Assert.Equal(ErrorCode.ToolError, (await broker.InvokeAsync(Call("garbage"))).Error!.Code);

        var lenient = NewBroker(new ActionBrokerOptions { ValidateOutput = false });
        lenient.Register(Cap("o", output: """{"type":"object","required":["answer"]}"""), TestProvider.Returning("p", """{"other":1}"""));
        Assert.True((await lenient.InvokeAsync(Call("o"))).Succeeded);
    }

    [Fact]
    public async Task Max_concurrency_is_RESOURCE_EXHAUSTED_when_every_provider_is_busy()
    {
        var broker = NewBroker();
        var gate = new TaskCompletionSource<ReadOnlyMemory<byte>>(TaskCreationOptions.RunContinuationsAsynchronously);
        broker.Register(Cap("one", maxConcurrency: 1), new TestProvider("p", (_, ct) => new ValueTask<ReadOnlyMemory<byte>>(gate.Task.WaitAsync(ct))));
        var first = broker.InvokeAsync(Call("one"));
        Assert.Equal(1, broker.FindProviders("one")[0].InFlight);

        var second = await broker.InvokeAsync(Call("one"));
        Assert.Equal(ErrorCode.ResourceExhausted, second.Error!.Code);

        gate.SetResult("1"u8.ToArray());
        Assert.True((await first.WaitAsync(TimeSpan.FromSeconds(5))).Succeeded);
        Assert.True((await broker.InvokeAsync(Call("one"))).Succeeded);
    }

    [Fact]
    public void Register_validates_the_descriptor()
    {
        var broker = NewBroker();
        var p = TestProvider.Returning("p", "1");
        Assert.Equal("/name", Assert.Throws<InvalidParamsException>(() => broker.Register(Cap("bad name"), p)).Path);
        Assert.Equal("/name", Assert.Throws<InvalidParamsException>(() => broker.Register(Cap(""), p)).Path);
        Assert.Equal("/name", Assert.Throws<InvalidParamsException>(() => broker.Register(Cap(new string('a', 129)), p)).Path);
        Assert.Equal("/version", Assert.Throws<InvalidParamsException>(() => broker.Register(Cap("ok", version: "1 0"), p)).Path);
        Assert.Equal("/cost_hint", Assert.Throws<InvalidParamsException>(() => broker.Register(Cap("ok", cost: -1), p)).Path);
        var schema = Assert.Throws<InvalidParamsException>(() => broker.Register(Cap("ok", input: """{"type":"strin"}"""), p));
        Assert.Equal("/input_schema_json", schema.Path);
        Assert.Contains("/type", schema.Message, StringComparison.Ordinal);
        Assert.Equal("/output_schema_json", Assert.Throws<InvalidParamsException>(() => broker.Register(Cap("ok", output: "{"), p)).Path);
        Assert.Empty(broker.Capabilities);

        var registration = broker.Register(Cap("web.search:v2_x-y"), p);
        Assert.Equal("1.0.0", registration.Descriptor.Version);
        Assert.Same(p, registration.Provider);
    }

    [Fact]
    public async Task Registrations_replace_list_and_unregister()
    {
        var broker = NewBroker();
        var a = TestProvider.Returning("a", "1");
        var b = TestProvider.Returning("b", "2");
        var first = broker.Register(Cap("s", version: "1.0.0", cost: 1), a);
        var replaced = broker.Register(Cap("s", version: "1.0.0", cost: 2), a);
        broker.Register(Cap("s", version: "2.0.0"), a);
        broker.Register(Cap("s", version: "1.0.0"), b);
        broker.Register(Cap("t"), b);

        var caps = broker.Capabilities;
        Assert.Equal([("s", "1.0.0"), ("s", "2.0.0"), ("t", "1.0.0")], caps.Select(c => (c.Name, c.Version)));
        Assert.Equal(2, caps[0].Providers.Count);
        Assert.Equal(2, caps[0].Providers.Single(p => p.Provider == a).Descriptor.CostHint);
        Assert.Equal(3, broker.FindProviders("s").Count);

        first.Dispose(); // already replaced: no effect
        Assert.Equal(3, broker.FindProviders("s").Count);
        replaced.Dispose();
        replaced.Dispose();
        Assert.Equal(2, broker.FindProviders("s").Count);

        broker.UnregisterProvider("b");
        Assert.Equal(["a"], broker.FindProviders("s").Select(p => p.Provider.ProviderId));
        Assert.Empty(broker.FindProviders("t"));
        Assert.Equal(ErrorCode.CapabilityNotFound, (await broker.InvokeAsync(Call("t"))).Error!.Code);
        Assert.Equal("1", Output(await broker.InvokeAsync(Call("s"))));
    }

    /// <summary>A provider that counts how often the broker reads its id (to see which providers an operation touches).</summary>
    private sealed class CountingProvider(string id) : ICapabilityProvider
    {
        public int IdReads;

        public string ProviderId
        {
            get
            {
                Interlocked.Increment(ref IdReads);
                return id;
            }
        }

        public string AgentId => id;

        public bool IsLocal => false;

        public ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken) =>
            ValueTask.FromResult<ReadOnlyMemory<byte>>("1"u8.ToArray());
    }

    [Fact]
    public async Task Unregistering_a_provider_touches_only_its_own_capabilities()
    {
        var broker = NewBroker();
        var providers = Enumerable.Range(0, 500).Select(i => new CountingProvider("p" + i)).ToArray();
        var registrations = providers.Select((p, i) => broker.Register(Cap("own." + i), p)).ToArray();
        broker.Register(Cap("extra.0"), providers[0]);
        foreach (var p in providers)
        {
            p.IdReads = 0;
        }

        broker.UnregisterProvider("p0");
        registrations[1].Dispose();

        // The other 498 providers' capabilities were not looked at (they used to be scanned on every removal).
        Assert.Equal(0, providers.Skip(2).Sum(p => p.IdReads));
        Assert.Empty(broker.FindProviders("own.0"));
        Assert.Empty(broker.FindProviders("extra.0"));
        Assert.Empty(broker.FindProviders("own.1"));
        Assert.Equal(498, broker.Capabilities.Count);
        Assert.Equal(ErrorCode.CapabilityNotFound, (await broker.InvokeAsync(Call("own.0"))).Error!.Code);
        Assert.Equal("1", Output(await broker.InvokeAsync(Call("own.2"))));

        // A provider that comes back starts healthy: its old health entry went with its last capability.
        broker.MarkUnhealthy("p2");
        broker.UnregisterProvider("p2");
        broker.Register(Cap("own.2"), providers[2]);
        Assert.True(Assert.Single(broker.FindProviders("own.2")).IsHealthy);
    }

    [Fact]
    public async Task UnregisterAll_removes_many_registrations_at_once_and_keeps_the_rest()
    {
        var broker = NewBroker();
        var shared = new List<CapabilityRegistration>();
        var own = new List<CapabilityRegistration>();
        for (var i = 0; i < 100; i++)
        {
            var provider = TestProvider.Returning("p" + i, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            shared.Add(broker.Register(Cap("shared"), provider));
            own.Add(broker.Register(Cap("own." + i), provider));
        }

        var leaving = Enumerable.Range(0, 100).Where(i => i % 2 == 0).ToArray();
        shared[0].Dispose(); // already gone: skipped
        broker.UnregisterAll(leaving.SelectMany(i => new[] { shared[i], own[i] }));

        Assert.Equal(
            Enumerable.Range(0, 100).Where(i => i % 2 == 1).Select(i => "p" + i).Order(StringComparer.Ordinal),
            broker.FindProviders("shared").Select(p => p.Provider.ProviderId).Order(StringComparer.Ordinal));
        Assert.All(leaving, i => Assert.Empty(broker.FindProviders("own." + i)));
        Assert.Single(broker.FindProviders("own.1"));
        Assert.Equal("1", Output(await broker.InvokeAsync(Call("shared", target: "p1"))));

        own[0].Dispose(); // unregistered by UnregisterAll: no effect
        broker.UnregisterAll([]);
        Assert.Equal(51, broker.Capabilities.Count);
        Assert.Throws<ArgumentException>(() => NewBroker().UnregisterAll([own[1]]));
        Assert.Single(broker.FindProviders("own.1"));
    }

    [Fact]
    public async Task Statistics_are_tracked()
    {
        var broker = NewBroker();
        var flaky = 0;
        broker.Register(Cap("stat"), new TestProvider("p", (_, _) =>
            ++flaky % 2 == 0 ? throw new InvalidOperationException("every other call fails") : ValueTask.FromResult<ReadOnlyMemory<byte>>("1"u8.ToArray())));
        for (var i = 0; i < 4; i++)
        {
            await broker.InvokeAsync(Call("stat"));
        }

        var p = Assert.Single(broker.FindProviders("stat"));
        Assert.Equal((4L, 2L, 0, true), (p.Calls, p.Failures, p.InFlight, p.IsHealthy));
    }

    private sealed class PickLast : IRouter
    {
        public List<int> CandidateCounts { get; } = [];

        public ProviderCandidate? Select(string capability, IReadOnlyList<ProviderCandidate> candidates, RoutingPolicy policy)
        {
            CandidateCounts.Add(candidates.Count);
            return candidates[^1];
        }
    }

    [Fact]
    public async Task A_custom_router_decides()
    {
        var router = new PickLast();
        var broker = NewBroker(router: router);
        broker.Register(Cap("c"), TestProvider.Returning("a", "1"));
        broker.Register(Cap("c"), TestProvider.Returning("b", "2"));
        Assert.Equal("b", (await broker.InvokeAsync(Call("c"))).AgentId);
        Assert.Equal([2], router.CandidateCounts);
    }
}

public class RouterTests
{
    private static ProviderCandidate Candidate(string id, bool healthy = true, double latency = 0, double cost = 0, bool local = false) => new()
    {
        Provider = TestProvider.Returning(id, "1", local),
        Descriptor = new CapabilityDescriptor { Name = "c", CostHint = cost },
        IsHealthy = healthy,
        LatencyEwmaMs = latency,
    };

    [Fact]
    public void Round_robin_skips_unhealthy()
    {
        var router = new Router();
        var list = new[] { Candidate("a"), Candidate("b", healthy: false), Candidate("c") };
        var picks = Enumerable.Range(0, 4).Select(_ => router.Select("c", list, RoutingPolicy.RoundRobin)!.Provider.ProviderId).ToList();
        Assert.Equal(["a", "c", "a", "c"], picks);
        Assert.Equal("a", router.Select("other", list, RoutingPolicy.Unspecified)!.Provider.ProviderId); // separate counter
    }

    [Fact]
    public void Least_latency_and_lowest_cost_break_ties_round_robin()
    {
        var router = new Router();
        var list = new[] { Candidate("a", latency: 10, cost: 2), Candidate("b", latency: 5, cost: 1), Candidate("c", latency: 5, cost: 1), Candidate("d", healthy: false, latency: 1, cost: 0) };
        Assert.Equal(["b", "c", "b"], Enumerable.Range(0, 3).Select(_ => router.Select("x", list, RoutingPolicy.LeastLatency)!.Provider.ProviderId));
        Assert.Equal(["b", "c"], Enumerable.Range(0, 2).Select(_ => router.Select("y", list, RoutingPolicy.LowestCost)!.Provider.ProviderId));
    }

    [Fact]
    public void Local_only_and_none_healthy()
    {
        var router = new Router();
        Assert.Equal("l", router.Select("c", [Candidate("r"), Candidate("l", local: true)], RoutingPolicy.LocalOnly)!.Provider.ProviderId);
        Assert.Null(router.Select("c", [Candidate("r")], RoutingPolicy.LocalOnly));
        Assert.Null(router.Select("c", [Candidate("l", healthy: false, local: true)], RoutingPolicy.LocalOnly));
        Assert.Null(router.Select("c", [Candidate("a", healthy: false)], RoutingPolicy.RoundRobin));
        Assert.Null(router.Select("c", [Candidate("a", healthy: false)], RoutingPolicy.LeastLatency));
        Assert.Null(router.Select("c", [], RoutingPolicy.LowestCost));
    }
}
