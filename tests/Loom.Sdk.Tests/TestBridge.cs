using Loom.Bridge;
using Microsoft.Extensions.Logging;

namespace Loom.Sdk.Tests;

/// <summary>Starts a real bridge on 127.0.0.1 (port 0 unless given) for one test.</summary>
internal static class TestBridge
{
    public static async Task<LoomBridge> StartAsync(TimeSpan? heartbeat = null, int grpcPort = 0)
    {
        var bridge = new LoomBridge(
            new BridgeOptions
            {
                GrpcPort = grpcPort,
                HttpPort = 0,
                HeartbeatInterval = heartbeat ?? TimeSpan.FromSeconds(1),
                MinHeartbeatInterval = TimeSpan.FromMilliseconds(50),
                ShutdownTimeout = TimeSpan.FromSeconds(1),
            },
            Logging);
        await bridge.StartAsync();
        return bridge;
    }

    /// <summary>Quiet unless LOOM_TEST_LOGS is set.</summary>
    public static void Logging(ILoggingBuilder builder)
    {
        if (Environment.GetEnvironmentVariable("LOOM_TEST_LOGS") is { Length: > 0 })
        {
            builder.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss.fff "; });
            builder.SetMinimumLevel(LogLevel.Debug);
        }
    }

    public static ILoggerFactory? SdkLogs() =>
        Environment.GetEnvironmentVariable("LOOM_TEST_LOGS") is { Length: > 0 }
            ? LoggerFactory.Create(b => Logging(b))
            : null;

    /// <summary>Host options with fast reconnects for tests.</summary>
    public static AgentHostOptions Options(string? agentId = null, TimeSpan? heartbeat = null) => new()
    {
        AgentId = agentId,
        LoggerFactory = SdkLogs(),
        Connection = new LoomConnectionOptions
        {
            ReconnectInitialDelay = TimeSpan.FromMilliseconds(50),
            ReconnectMaxDelay = TimeSpan.FromMilliseconds(400),
            HeartbeatInterval = heartbeat,
            DisposeTimeout = TimeSpan.FromSeconds(3),
        },
    };
}
