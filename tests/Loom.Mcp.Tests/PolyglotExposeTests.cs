using System.Diagnostics;
using System.Text;
using Loom.Bridge;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Loom.Mcp.Tests;

/// <summary>
/// The bridge's MCP endpoint (streamable HTTP at <c>/mcp</c>) seen by the official C# MCP client,
/// with the capabilities provided by a Python agent (sdk-python, <c>agents/py_provider.py</c>) and a
/// TypeScript agent (sdk-js/dist, <c>agents/ts_provider.mjs</c>), each in its own process.
/// </summary>
[Collection("mcp")]
public sealed class PolyglotExposeTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private static readonly string[] ExpectedTools = ["py.add", "py.fail", "py.greet", "py.whoami", "ts.fail", "ts.multiply", "ts.shout", "ts.whoami"];

    [Fact]
    public async Task Http_endpoint_lists_and_calls_capabilities_of_python_and_typescript_agents()
    {
        await SdkJs.EnsureBuiltAsync();
        await using var bridge = await TestBridge.StartAsync();
        await using var python = await Agents.PythonAsync(bridge.GrpcAddress, "py-mcp-provider");
        await using var typescript = await Agents.TypeScriptAsync(bridge.GrpcAddress, "ts-mcp-provider");
        await using var client = await HttpClientAsync(bridge);
        using var timeout = new CancellationTokenSource(Timeout);

        // Listed: both agents' capabilities, with their descriptions and schemas.
        IList<McpClientTool> tools = [];
        await Poll.UntilAsync(
            async () =>
            {
                tools = await client.ListToolsAsync(cancellationToken: timeout.Token);
                return ExpectedTools.All(name => tools.Any(t => t.Name == name));
            },
            Timeout,
            "the Python and TypeScript capabilities in tools/list");
        var pyAdd = tools.Single(t => t.Name == "py.add");
        Assert.Equal("Adds a and b (Python).", pyAdd.Description);
        var pyAddInput = pyAdd.ProtocolTool.InputSchema;
        Assert.Equal("object", pyAddInput.GetProperty("type").GetString());
        Assert.Equal("number", pyAddInput.GetProperty("properties").GetProperty("a").GetProperty("type").GetString());
        Assert.Equal("object", pyAdd.ProtocolTool.OutputSchema!.Value.GetProperty("type").GetString());
        var multiply = tools.Single(t => t.Name == "ts.multiply");
        Assert.Equal("Multiplies a and b (TypeScript).", multiply.Description);
        Assert.Equal(["a", "b"], multiply.ProtocolTool.InputSchema.GetProperty("required").EnumerateArray().Select(e => e.GetString() ?? "").ToArray());
        // A non-object input schema is wrapped as {"input": <schema>}.
        var shout = tools.Single(t => t.Name == "ts.shout");
        Assert.Equal("string", shout.ProtocolTool.InputSchema.GetProperty("properties").GetProperty("input").GetProperty("type").GetString());

        // Python: an object output is structuredContent plus the same JSON as text.
        var sum = await client.CallToolAsync("py.add", new Dictionary<string, object?> { ["a"] = 2, ["b"] = 3.5 }, cancellationToken: timeout.Token);
        Assert.NotEqual(true, sum.IsError);
        Assert.Equal(5.5, sum.StructuredContent!.Value.GetProperty("sum").GetDouble());
        Assert.Contains("5.5", Assert.IsType<TextContentBlock>(Assert.Single(sum.Content)).Text, StringComparison.Ordinal);

        // Python: a string output is one text block with its JSON.
        var greet = await client.CallToolAsync("py.greet", new Dictionary<string, object?> { ["name"] = "Ada ✓" }, cancellationToken: timeout.Token);
        Assert.NotEqual(true, greet.IsError);
        Assert.Equal("\"Hello, Ada ✓!\"", Assert.IsType<TextContentBlock>(Assert.Single(greet.Content)).Text);

        // TypeScript: object in and out; a wrapped string in and out.
        var product = await client.CallToolAsync("ts.multiply", new Dictionary<string, object?> { ["a"] = 6, ["b"] = 7 }, cancellationToken: timeout.Token);
        Assert.NotEqual(true, product.IsError);
        Assert.Equal(42, product.StructuredContent!.Value.GetProperty("product").GetDouble());
        var shouted = await client.CallToolAsync("ts.shout", new Dictionary<string, object?> { ["input"] = "hi" }, cancellationToken: timeout.Token);
        Assert.NotEqual(true, shouted.IsError);
        Assert.Equal("\"HI!\"", Assert.IsType<TextContentBlock>(Assert.Single(shouted.Content)).Text);

        // Both providers see the MCP client as the caller.
        var pyWho = await client.CallToolAsync("py.whoami", new Dictionary<string, object?>(), cancellationToken: timeout.Token);
        Assert.Equal("mcp-client:loom-tests", pyWho.StructuredContent!.Value.GetProperty("caller").GetString());
        var tsWho = await client.CallToolAsync("ts.whoami", new Dictionary<string, object?>(), cancellationToken: timeout.Token);
        Assert.Equal("mcp-client:loom-tests", tsWho.StructuredContent!.Value.GetProperty("caller").GetString());

        // Bad arguments: INVALID_PARAMS with the path, as a tool error with the Loom error in _meta.
        var badPy = await client.CallToolAsync("py.add", new Dictionary<string, object?> { ["a"] = 1 }, cancellationToken: timeout.Token);
        Assert.True(badPy.IsError);
        Assert.StartsWith("INVALID_PARAMS:", Assert.IsType<TextContentBlock>(badPy.Content[0]).Text, StringComparison.Ordinal);
        Assert.Equal("INVALID_PARAMS", (string?)badPy.Meta!["loom/error"]!["code"]);
        Assert.Equal("/b", (string?)badPy.Meta!["loom/error"]!["path"]);
        var badTs = await client.CallToolAsync("ts.multiply", new Dictionary<string, object?> { ["a"] = "six", ["b"] = 7 }, cancellationToken: timeout.Token);
        Assert.True(badTs.IsError);
        Assert.Equal("INVALID_PARAMS", (string?)badTs.Meta!["loom/error"]!["code"]);
        Assert.Equal("/a", (string?)badTs.Meta!["loom/error"]!["path"]);

        // A failing capability: TOOL_ERROR with the provider's message.
        var pyFail = await client.CallToolAsync("py.fail", new Dictionary<string, object?> { ["reason"] = "because" }, cancellationToken: timeout.Token);
        Assert.True(pyFail.IsError);
        Assert.Equal("TOOL_ERROR", (string?)pyFail.Meta!["loom/error"]!["code"]);
        Assert.Contains("py.fail refused: because", Assert.IsType<TextContentBlock>(pyFail.Content[0]).Text, StringComparison.Ordinal);
        var tsFail = await client.CallToolAsync("ts.fail", new Dictionary<string, object?>(), cancellationToken: timeout.Token);
        Assert.True(tsFail.IsError);
        Assert.Equal("TOOL_ERROR", (string?)tsFail.Meta!["loom/error"]!["code"]);
        Assert.Contains("ts.fail on purpose", Assert.IsType<TextContentBlock>(tsFail.Content[0]).Text, StringComparison.Ordinal);

        // The calls went through the ActionBroker to the agents in the other processes.
        var pyProvider = bridge.Broker.FindProviders("py.add").Single();
        Assert.Equal("py-mcp-provider", pyProvider.Provider.AgentId);
        Assert.False(pyProvider.Provider.IsLocal);
        Assert.True(pyProvider.Calls >= 1);
        var tsProvider = bridge.Broker.FindProviders("ts.multiply").Single();
        Assert.Equal("ts-mcp-provider", tsProvider.Provider.AgentId);
        Assert.True(tsProvider.Calls >= 1);
        Assert.StartsWith("loom-python/", bridge.Agents.Find("py-mcp-provider")!.Sdk, StringComparison.Ordinal);
        Assert.StartsWith("loom-js/", bridge.Agents.Find("ts-mcp-provider")!.Sdk, StringComparison.Ordinal);

        // A provider that dies (killed) takes its tools with it once the bridge notices.
        await python.DisposeAsync();
        await Poll.UntilAsync(
            async () => !(await client.ListToolsAsync(cancellationToken: timeout.Token)).Any(t => t.Name.StartsWith("py.", StringComparison.Ordinal)),
            Timeout,
            "the Python tools to leave tools/list once the agent is gone");
        Assert.Contains(await client.ListToolsAsync(cancellationToken: timeout.Token), t => t.Name == "ts.multiply");
    }

    private static async Task<McpClient> HttpClientAsync(LoomBridge bridge)
    {
        var options = new McpClientOptions { ClientInfo = new Implementation { Name = "loom-tests", Version = "1.0" } };
        var transport = new HttpClientTransport(new HttpClientTransportOptions { Endpoint = new Uri(bridge.HttpAddress, "/mcp"), TransportMode = HttpTransportMode.StreamableHttp });
        using var timeout = new CancellationTokenSource(Timeout);
        return await McpClient.CreateAsync(transport, options, TestBridge.LoggerFactory(), timeout.Token);
    }

    /// <summary>The Python and TypeScript provider processes (scripts under <c>agents/</c>).</summary>
    private static class Agents
    {
        private const string Python = "/usr/bin/python3";

        private static string Dir => Path.Combine(Repo.Root, "tests", "Loom.Mcp.Tests", "agents");

        public static Task<ChildProcess> PythonAsync(Uri grpc, string agentId)
        {
            Assert.True(File.Exists(Python), $"{Python} is needed (with Debian's python3-grpcio and python3-protobuf) for the Python agent.");
            return ChildProcess.StartAsync(
                Python,
                ["-u", Path.Combine(Dir, "py_provider.py"), "--url", grpc.ToString(), "--agent-id", agentId],
                "ready",
                new Dictionary<string, string> { ["PYTHONPATH"] = Path.Combine(Repo.Root, "sdk-python", "src"), ["PYTHONDONTWRITEBYTECODE"] = "1" });
        }

        public static Task<ChildProcess> TypeScriptAsync(Uri grpc, string agentId) =>
            ChildProcess.StartAsync("node", [Path.Combine(Dir, "ts_provider.mjs"), "--url", grpc.ToString(), "--agent-id", agentId], "ready");
    }

    /// <summary>Builds sdk-js/dist once per run with <c>sdk-js/scripts/ensure-built.sh</c> (idempotent: installs/builds only when missing or stale).</summary>
    private static class SdkJs
    {
        private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(10);
        private static readonly SemaphoreSlim Gate = new(1, 1);
        private static bool _built;

        public static async Task EnsureBuiltAsync()
        {
            await Gate.WaitAsync();
            try
            {
                if (_built)
                {
                    return;
                }

                var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repo.Root };
                start.ArgumentList.Add(Path.Combine(Repo.Root, "sdk-js", "scripts", "ensure-built.sh"));
                using var process = Process.Start(start) ?? throw new InvalidOperationException("bash did not start");
                var output = new StringBuilder();
                process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
                process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
                process.BeginOutputReadLine();
                process.BeginErrorReadLine();
                using var timeout = new CancellationTokenSource(BuildTimeout);
                try
                {
                    await process.WaitForExitAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill(entireProcessTree: true);
                    throw new TimeoutException($"sdk-js/scripts/ensure-built.sh took more than {BuildTimeout.TotalMinutes} min:\n{output}");
                }

                Assert.True(process.ExitCode == 0, $"sdk-js/scripts/ensure-built.sh failed (exit {process.ExitCode}); Node.js 20+ with npm is needed:\n{output}");
                Assert.True(File.Exists(Path.Combine(Repo.Root, "sdk-js", "dist", "mod.js")), "sdk-js/dist/mod.js is missing after ensure-built.sh");
                _built = true;
            }
            finally
            {
                Gate.Release();
            }
        }
    }
}
