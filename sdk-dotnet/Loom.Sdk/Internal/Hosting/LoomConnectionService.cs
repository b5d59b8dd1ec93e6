using Microsoft.Extensions.Hosting;

namespace Loom.Sdk.Internal.Hosting;

/// <summary>Connects the <see cref="LoomConnection"/> of <see cref="LoomServiceCollectionExtensions.AddLoomConnection"/> at start, closes it at stop.</summary>
internal sealed class LoomConnectionService(LoomConnection connection) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => connection.ConnectAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => connection.DisposeAsync().AsTask().WaitAsync(cancellationToken);
}
