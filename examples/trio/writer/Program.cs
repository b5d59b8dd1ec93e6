using Loom.Core;
using Loom.Examples.Trio.Writer;
using Loom.Sdk;
using Microsoft.Extensions.Logging;

// The trio's Writer (.NET). Configuration by environment, as `loom run` provides it:
// LOOM_URL (bridge gRPC address), LOOM_AGENT_ID (default "writer"), TRIO_FINDINGS_DEADLINE_S.
// Writes with a model through the bridge's LLM gateway (ctx.Llm.ChatAsync) when loom.yaml has an
// llm: section (examples/trio/loom.llm.yaml), offline otherwise.
using var loggerFactory = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; }).SetMinimumLevel(LogLevel.Information).AddFilter("Loom", LogLevel.Warning));
var logger = loggerFactory.CreateLogger("writer");
var url = new Uri(Environment.GetEnvironmentVariable("LOOM_URL") ?? "http://127.0.0.1:7070");
var deadline = TimeSpan.FromSeconds(int.TryParse(Environment.GetEnvironmentVariable("TRIO_FINDINGS_DEADLINE_S"), out var s) && s > 0 ? s : 45);
using var stop = new CancellationTokenSource();
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });

try
{
    await using var agent = await LoomAgentHost.StartAsync(
        new WriterAgent(logger, deadline),
        url,
        new AgentHostOptions { AgentId = Environment.GetEnvironmentVariable("LOOM_AGENT_ID") ?? "writer", LoggerFactory = loggerFactory },
        stop.Token);
    logger.LogInformation("writer ready on {Url} (writes through the bridge's llm.chat when it has an LLM gateway, offline otherwise)", url);
    await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
    return 0;
}
catch (LoomException ex)
{
    logger.LogError("cannot connect to the bridge at {Url}: {Message}", url, ex.Message);
    return 1;
}
