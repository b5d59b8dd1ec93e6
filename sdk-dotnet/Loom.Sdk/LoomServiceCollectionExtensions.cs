using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Loom.Sdk.Internal.Hosting;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk;

/// <summary>
/// Loom in a .NET generic host (<c>Microsoft.Extensions.Hosting</c>): agents run by a hosted
/// service that connects them when the host starts and disconnects them (gracefully, within
/// their dispose timeout) when it stops; a shared <see cref="LoomConnection"/> as a singleton.
/// Addresses and settings default to the <c>LOOM_*</c> environment variables.
/// </summary>
public static class LoomServiceCollectionExtensions
{
    /// <summary>
    /// Runs an agent of type <typeparamref name="TAgent"/> (created from the container, so its
    /// constructor can take services) while the host runs. Call once per agent type.
    /// </summary>
    /// <param name="services">The container.</param>
    /// <param name="configure">Sets the bridge address and host options; default: <c>LOOM_URL</c> and the <c>LOOM_*</c> connection settings.</param>
    public static IServiceCollection AddLoomAgent<TAgent>(this IServiceCollection services, Action<LoomAgentRegistration>? configure = null)
        where TAgent : Agent =>
        services.AddLoomAgent(static sp => ActivatorUtilities.CreateInstance<TAgent>(sp), configure);

    /// <summary>Runs the agent <paramref name="factory"/> makes while the host runs.</summary>
    public static IServiceCollection AddLoomAgent(this IServiceCollection services, Func<IServiceProvider, Agent> factory, Action<LoomAgentRegistration>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(factory);
        var registration = new LoomAgentRegistration(factory);
        configure?.Invoke(registration);
        services.AddSingleton(registration);
        services.TryAddSingleton<LoomAgentService>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, LoomAgentService>(static sp => sp.GetRequiredService<LoomAgentService>()));
        return services;
    }

    /// <summary>
    /// Registers one <see cref="LoomConnection"/> (also as <see cref="ILoomContext"/>), connected
    /// when the host starts and closed when it stops.
    /// </summary>
    /// <param name="services">The container.</param>
    /// <param name="address">The bridge; default <c>LOOM_URL</c>, else <c>http://127.0.0.1:7070</c>.</param>
    /// <param name="options">Settings from the container; default <see cref="LoomConnectionOptions.FromEnvironment()"/> with the container's logger factory.</param>
    public static IServiceCollection AddLoomConnection(this IServiceCollection services, Uri? address = null, Func<IServiceProvider, LoomConnectionOptions>? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(sp =>
        {
            var settings = options?.Invoke(sp) ?? LoomConnectionOptions.FromEnvironment() with { LoggerFactory = sp.GetService<ILoggerFactory>() };
            return new LoomConnection(LoomConnectionOptions.BridgeAddressFromEnvironment(address), settings);
        });
        services.TryAddSingleton<ILoomContext>(static sp => sp.GetRequiredService<LoomConnection>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, LoomConnectionService>());
        return services;
    }
}

/// <summary>How the hosted service runs one agent: where, and with which options.</summary>
public sealed class LoomAgentRegistration
{
    internal LoomAgentRegistration(Func<IServiceProvider, Agent> factory) => Factory = factory;

    internal Func<IServiceProvider, Agent> Factory { get; }

    /// <summary>The bridge. Default null: <c>LOOM_URL</c>, else <c>http://127.0.0.1:7070</c>.</summary>
    public Uri? BridgeAddress { get; set; }

    /// <summary>Host options. Default null: the defaults (connection settings from <c>LOOM_*</c>) with the container's logger factory.</summary>
    public AgentHostOptions? Options { get; set; }
}

/// <summary>
/// The hosted service that runs the agents added with <see cref="LoomServiceCollectionExtensions.AddLoomAgent{TAgent}"/>:
/// all connect at start (a failure stops the start with the typed error, and those started are
/// disposed); all leave at stop.
/// </summary>
public sealed class LoomAgentService(IServiceProvider services, IEnumerable<LoomAgentRegistration> registrations) : IHostedService, IAsyncDisposable
{
    private readonly List<RunningAgent> _running = [];
    private readonly Lock _gate = new();

    /// <summary>The agents running now (empty before the host starts and after it stops).</summary>
    public IReadOnlyList<RunningAgent> Agents
    {
        get
        {
            lock (_gate)
            {
                return [.. _running];
            }
        }
    }

    /// <inheritdoc/>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var loggers = services.GetService<ILoggerFactory>();
        try
        {
            foreach (var registration in registrations)
            {
                var agent = registration.Factory(services);
                var options = registration.Options ?? new AgentHostOptions();
                if (options.LoggerFactory is null && options.Connection?.LoggerFactory is null && loggers is not null)
                {
                    options = options with { LoggerFactory = loggers };
                }

                var running = await LoomAgentHost.StartAsync(agent, LoomConnectionOptions.BridgeAddressFromEnvironment(registration.BridgeAddress), options, cancellationToken);
                lock (_gate)
                {
                    _running.Add(running);
                }
            }
        }
        catch
        {
            await StopAsync(CancellationToken.None);
            throw;
        }
    }

    /// <inheritdoc/>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        RunningAgent[] running;
        lock (_gate)
        {
            running = [.. _running];
            _running.Clear();
        }

        // Each leaves within its own dispose timeout; the host's token bounds the wait as a whole.
        await Task.WhenAll(running.Select(r => r.DisposeAsync().AsTask())).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync() => await StopAsync(CancellationToken.None);
}
