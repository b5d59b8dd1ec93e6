using Loom.Bridge;
using Loom.Core;
using Loom.Protocol.V1;
using Loom.Tests;

namespace Loom.Sdk.Tests;

public sealed record TicketInput(string Item);

public sealed record TicketOutput(int Ticket, string Item);

/// <summary>Counts its invocations; each call gets the next ticket, so a replay is told apart from a new call.</summary>
public sealed class TicketAgent : Agent
{
    private int _tickets;
    private int _failures;
    private int _busy;

    public int Tickets => Volatile.Read(ref _tickets);

    public int Failures => Volatile.Read(ref _failures);

    public int Busy => Volatile.Read(ref _busy);

    /// <summary>While not completed, ticket.gated waits on it.</summary>
    public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    [Capability("ticket.next")]
    public TicketOutput Next(TicketInput input) => new(Interlocked.Increment(ref _tickets), input.Item);

    [Capability("ticket.gated")]
    public async Task<TicketOutput> GatedAsync(TicketInput input, CancellationToken cancellationToken)
    {
        var ticket = Interlocked.Increment(ref _tickets);
        await Gate.Task.WaitAsync(cancellationToken);
        return new TicketOutput(ticket, input.Item);
    }

    [Capability("ticket.refuse")]
    public TicketOutput Refuse(TicketInput input) => throw new InvalidOperationException($"refusal {Interlocked.Increment(ref _failures)} of {input.Item}");

    [Capability("ticket.busy")]
    public TicketOutput IsBusy(TicketInput input) => throw new ResourceExhaustedException($"busy {Interlocked.Increment(ref _busy)} with {input.Item}");
}

/// <summary>Idempotent calls through a real bridge with the .NET SDK: replay, single flight, key checks, persistence across a restart.</summary>
public sealed class IdempotencyTests : IDisposable
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(10);
    private readonly string _data = Path.Combine(Path.GetTempPath(), "loom-idem-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_data))
        {
            Directory.Delete(_data, recursive: true);
        }
    }

    private async Task<LoomBridge> StartAsync(bool durable)
    {
        var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = 0,
                HttpPort = 0,
                HeartbeatInterval = TimeSpan.FromSeconds(1),
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ShutdownTimeout = TimeSpan.FromSeconds(1),
                DataDirectory = durable ? _data : null,
            },
            TestBridge.Logging);
        await bridge.StartAsync();
        return bridge;
    }

    /// <summary>The suite's options with a connect timeout that holds on a loaded machine (the first bridge of a run starts cold).</summary>
    private static AgentHostOptions Options(string? agentId = null)
    {
        var options = TestBridge.Options(agentId);
        return new AgentHostOptions
        {
            AgentId = options.AgentId,
            LoggerFactory = options.LoggerFactory,
            Connection = new LoomConnectionOptions
            {
                ReconnectInitialDelay = options.Connection!.ReconnectInitialDelay,
                ReconnectMaxDelay = options.Connection.ReconnectMaxDelay,
                DisposeTimeout = options.Connection.DisposeTimeout,
                ConnectTimeout = TimeSpan.FromSeconds(60),
            },
        };
    }

    private static Task<TOut?> Call<TOut>(RunningAgent caller, string capability, object input, string? key) =>
        caller.Context.InvokeAsync<TOut>(capability, input, Short, key is null ? null : new InvokeOptions { IdempotencyKey = key });

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_same_key_invokes_the_provider_once_and_a_new_key_again(bool durable)
    {
        await using var bridge = await StartAsync(durable);
        var tickets = new TicketAgent();
        await using var provider = await LoomAgentHost.StartAsync(tickets, bridge.GrpcAddress, Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options());

        var first = await Call<TicketOutput>(caller, "ticket.next", new TicketInput("tea"), "order-1");
        var again = await Call<TicketOutput>(caller, "ticket.next", new TicketInput("tea"), "order-1");
        Assert.Equal(new TicketOutput(1, "tea"), first);
        Assert.Equal(first, again);
        Assert.Equal(1, tickets.Tickets);

        var other = await Call<TicketOutput>(caller, "ticket.next", new TicketInput("tea"), "order-2");
        var none = await Call<TicketOutput>(caller, "ticket.next", new TicketInput("tea"), null);
        Assert.Equal(2, other!.Ticket);
        Assert.Equal(3, none!.Ticket);
        Assert.Equal(3, tickets.Tickets);

        // The same key with another input is refused, saying what to do.
        var mismatch = await Assert.ThrowsAnyAsync<LoomException>(() => Call<TicketOutput>(caller, "ticket.next", new TicketInput("coffee"), "order-1"));
        Assert.Equal(ErrorCode.InvalidParams, mismatch.Code);
        Assert.Contains("different input", mismatch.Message, StringComparison.Ordinal);
        Assert.Equal(3, tickets.Tickets);

        using var http = new HttpClient { BaseAddress = bridge.HttpAddress };
        var metrics = await http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
        Assert.Contains("loom_idempotency_replays_total 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("loom_idempotency_stores_total 2\n", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Keys_are_scoped_per_caller()
    {
        await using var bridge = await StartAsync(durable: false);
        var tickets = new TicketAgent();
        await using var provider = await LoomAgentHost.StartAsync(tickets, bridge.GrpcAddress, Options());
        await using var alice = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options("alice"));
        await using var bob = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options("bob"));

        Assert.Equal(1, (await Call<TicketOutput>(alice, "ticket.next", new TicketInput("x"), "k"))!.Ticket);
        Assert.Equal(2, (await Call<TicketOutput>(bob, "ticket.next", new TicketInput("x"), "k"))!.Ticket);
        Assert.Equal(1, (await Call<TicketOutput>(alice, "ticket.next", new TicketInput("x"), "k"))!.Ticket);
    }

    [Fact]
    public async Task Concurrent_calls_with_one_key_wait_for_the_first()
    {
        await using var bridge = await StartAsync(durable: false);
        var tickets = new TicketAgent();
        await using var provider = await LoomAgentHost.StartAsync(tickets, bridge.GrpcAddress, Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options());

        var calls = Enumerable.Range(0, 5).Select(_ => Call<TicketOutput>(caller, "ticket.gated", new TicketInput("cake"), "same")).ToArray();
        await Poll.UntilAsync(() => tickets.Tickets == 1, Short, "the first call reached the provider");
        tickets.Gate.SetResult();
        var results = await Task.WhenAll(calls);
        Assert.All(results, r => Assert.Equal(new TicketOutput(1, "cake"), r));
        Assert.Equal(1, tickets.Tickets);
    }

    [Fact]
    public async Task Provider_failures_are_stored_and_transient_ones_are_not()
    {
        await using var bridge = await StartAsync(durable: true);
        var tickets = new TicketAgent();
        await using var provider = await LoomAgentHost.StartAsync(tickets, bridge.GrpcAddress, Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options());

        var refused = await Assert.ThrowsAnyAsync<LoomException>(() => Call<TicketOutput>(caller, "ticket.refuse", new TicketInput("a"), "r"));
        var refusedAgain = await Assert.ThrowsAnyAsync<LoomException>(() => Call<TicketOutput>(caller, "ticket.refuse", new TicketInput("a"), "r"));
        Assert.Equal(ErrorCode.ToolError, refused.Code);
        Assert.Equal((refused.Code, refused.Message), (refusedAgain.Code, refusedAgain.Message));
        Assert.Contains("refusal 1 of a", refusedAgain.Message, StringComparison.Ordinal);
        Assert.Equal(1, tickets.Failures);

        var busy = await Assert.ThrowsAnyAsync<LoomException>(() => Call<TicketOutput>(caller, "ticket.busy", new TicketInput("b"), "t"));
        var busyAgain = await Assert.ThrowsAnyAsync<LoomException>(() => Call<TicketOutput>(caller, "ticket.busy", new TicketInput("b"), "t"));
        Assert.Equal(ErrorCode.ResourceExhausted, busy.Code);
        Assert.Contains("busy 2", busyAgain.Message, StringComparison.Ordinal);
        Assert.Equal(2, tickets.Busy);
    }

    [Theory]
    [InlineData(129, "the limit is 128")]
    [InlineData(-1, "not printable ASCII")]
    public async Task A_bad_key_is_invalid_params_saying_what_to_fix(int length, string expected)
    {
        await using var bridge = await StartAsync(durable: false);
        var tickets = new TicketAgent();
        await using var provider = await LoomAgentHost.StartAsync(tickets, bridge.GrpcAddress, Options());
        await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options());

        var key = length < 0 ? "two words" : new string('k', length);
        var ex = await Assert.ThrowsAnyAsync<LoomException>(() => Call<TicketOutput>(caller, "ticket.next", new TicketInput("x"), key));
        Assert.Equal(ErrorCode.InvalidParams, ex.Code);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Contains("idempotency_key", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, tickets.Tickets);
    }

    [Fact]
    public async Task Stored_results_survive_a_bridge_restart_on_the_same_data_directory()
    {
        TicketOutput? first;
        await using (var bridge = await StartAsync(durable: true))
        {
            await using var provider = await LoomAgentHost.StartAsync(new TicketAgent(), bridge.GrpcAddress, Options());
            await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options("restart-caller"));
            first = await Call<TicketOutput>(caller, "ticket.next", new TicketInput("pie"), "before-restart");
        }

        await using (var bridge = await StartAsync(durable: true))
        {
            var tickets = new TicketAgent();
            await using var provider = await LoomAgentHost.StartAsync(tickets, bridge.GrpcAddress, Options());
            await using var caller = await LoomAgentHost.StartAsync(new ClientAgent(), bridge.GrpcAddress, Options("restart-caller"));
            Assert.Equal(first, await Call<TicketOutput>(caller, "ticket.next", new TicketInput("pie"), "before-restart"));
            Assert.Equal(0, tickets.Tickets);
            Assert.Equal(1, (await Call<TicketOutput>(caller, "ticket.next", new TicketInput("pie"), "after-restart"))!.Ticket);
        }
    }
}
