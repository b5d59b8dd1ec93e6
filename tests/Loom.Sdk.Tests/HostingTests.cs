using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Loom.Sdk.Tests;

public sealed record GreetingSettings(string Greeting);

public sealed record GreetInput(string Name);

public sealed record GreetOutput(string Text);

/// <summary>An agent built by the container: its constructor takes a service.</summary>
public sealed class GreeterAgent(GreetingSettings settings) : Agent
{
    public override string Name => "greeter";

    [Capability("hosted.greet", Description = "Greets.")]
    public GreetOutput Greet(GreetInput input) => new($"{settings.Greeting}, {input.Name}");
}

/// <summary>AddLoomAgent / AddLoomConnection in a real generic host against a real bridge.</summary>
public sealed class HostingTests
{
    private static readonly TimeSpan Short = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_generic_host_runs_its_agents_and_connection_from_start_to_stop()
    {
        await using var bridge = await TestBridge.StartAsync();
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddSingleton(new GreetingSettings("Hello"));
        builder.Services.AddLoomAgent<GreeterAgent>(r =>
        {
            r.BridgeAddress = bridge.GrpcAddress;
            r.Options = TestBridge.Options("hosted-greeter");
        });
        builder.Services.AddLoomConnection(bridge.GrpcAddress, _ => new LoomConnectionOptions { AgentId = "hosted-client", DisposeTimeout = TimeSpan.FromSeconds(3) });
        using var host = builder.Build();

        var service = host.Services.GetRequiredService<LoomAgentService>();
        var connection = host.Services.GetRequiredService<LoomConnection>();
        Assert.Empty(service.Agents);
        Assert.Equal(ConnectionStatus.Connecting, connection.Status);

        await host.StartAsync().WaitAsync(Short);
        Assert.Single(service.Agents);
        Assert.Equal(ConnectionStatus.Connected, connection.Status);
        Assert.NotNull(bridge.Agents.Find("hosted-greeter"));

        // The connection is the container's ILoomContext: the same operations as an agent's context.
        var context = host.Services.GetRequiredService<ILoomContext>();
        Assert.Same(connection, context);
        var greeting = await context.InvokeAsync<GreetOutput>("hosted.greet", new GreetInput("host"), Short);
        Assert.Equal("Hello, host", greeting!.Text);

        await host.StopAsync().WaitAsync(Short);
        Assert.Empty(service.Agents);
        Assert.Equal(ConnectionStatus.Closed, connection.Status);
        await Poll.UntilAsync(() => bridge.Agents.Find("hosted-greeter") is null && bridge.Agents.Find("hosted-client") is null, Short, "hosted agents left the bridge");
    }

    [Fact]
    public async Task A_host_whose_bridge_is_unreachable_fails_to_start_with_unavailable()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Services.AddSingleton(new GreetingSettings("Hi"));
        builder.Services.AddLoomAgent<GreeterAgent>(r =>
        {
            r.BridgeAddress = new Uri("http://127.0.0.1:1");
            r.Options = TestBridge.Options() with { Connection = new LoomConnectionOptions { ConnectTimeout = TimeSpan.FromSeconds(2) } };
        });
        using var host = builder.Build();
        var ex = await Assert.ThrowsAnyAsync<LoomException>(() => host.StartAsync().WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(ErrorCode.Unavailable, ex.Code);
        Assert.Empty(host.Services.GetRequiredService<LoomAgentService>().Agents);
    }
}
