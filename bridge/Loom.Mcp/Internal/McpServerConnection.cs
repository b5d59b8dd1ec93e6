using System.Text.Json;
using System.Threading.Channels;
using Loom.Core;
using Loom.Protocol.V1;
using Microsoft.Extensions.Logging;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Loom.Mcp.Internal;

/// <summary>
/// One ingested MCP server: keeps an MCP client connected (starting, and after a crash restarting,
/// a stdio server with exponential backoff; reconnecting an HTTP one), registers each of its
/// tools with the ActionBroker as <c>{server}:{tool}</c>, follows
/// <c>notifications/tools/list_changed</c>, and answers the broker's calls as their provider.
/// While the server is down its capabilities stay registered but answer PROVIDER_UNAVAILABLE and
/// are kept marked unhealthy in the broker.
/// </summary>
internal sealed class McpServerConnection : ICapabilityProvider, IAsyncDisposable
{
    private const int MaxErrorText = 4000;

    private readonly McpServerOptions _options;
    private readonly ActionBroker _broker;
    private readonly AgentDirectory? _agents;
    private readonly TimeProvider _time;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _stop = new();

    // Wakes the connection loop: a tools/list_changed notification (true) or a broken transport seen by a call (false).
    private readonly Channel<bool> _signals = Channel.CreateBounded<bool>(new BoundedChannelOptions(4) { FullMode = BoundedChannelFullMode.DropWrite });

    private Dictionary<string, ToolEntry> _tools = new(StringComparer.Ordinal);
    private McpClient? _client;
    private Task _loop = Task.CompletedTask;
    private string _state = "starting";
    private string? _lastError;
    private int _restarts;
    private DateTimeOffset _connectedAt;

    public McpServerConnection(McpServerOptions options, ActionBroker broker, AgentDirectory? agents, TimeProvider time, ILoggerFactory loggerFactory)
    {
        _options = options;
        _broker = broker;
        _agents = agents;
        _time = time;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger("Loom.Mcp.McpServer");
        ProviderId = "mcp:" + options.Name;
    }

    public string ProviderId { get; }

    public string AgentId => ProviderId;

    // The tools run in another process (or machine): not eligible for LOCAL_ONLY routing.
    public bool IsLocal => false;

    public string Name => _options.Name;

    public McpServerStatus Status
    {
        get
        {
            lock (_gate)
            {
                return new McpServerStatus(_options.Name, _options.IsStdio ? "stdio" : "http", _state, _tools.Keys.Order(StringComparer.Ordinal).ToArray(), _restarts, _lastError);
            }
        }
    }

    public void Start() => _loop = Task.Run(() => RunAsync(_stop.Token));

    public async ValueTask DisposeAsync()
    {
        if (!_stop.IsCancellationRequested)
        {
            await _stop.CancelAsync().ConfigureAwait(false);
        }

        try
        {
            await _loop.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }

        lock (_gate)
        {
            foreach (var entry in _tools.Values)
            {
                entry.Registration.Dispose();
            }

            _tools = new Dictionary<string, ToolEntry>(StringComparer.Ordinal);
            _state = "stopped";
        }

        _agents?.Remove(AgentId);
        _stop.Dispose();
    }

    // ---------------------------------------------------------------------------------------
    // Connection loop
    // ---------------------------------------------------------------------------------------

    private async Task RunAsync(CancellationToken stop)
    {
        var delay = _options.RestartInitialDelay;
        while (!stop.IsCancellationRequested)
        {
            string reason;
            var since = _time.GetTimestamp();
            McpClient? client = null;
            try
            {
                client = await ConnectAsync(stop).ConfigureAwait(false);
                lock (_gate)
                {
                    _client = client;
                    _state = "connected";
                    _connectedAt = _time.GetUtcNow();
                }

                _broker.MarkHealthy(ProviderId);
                Log.ServerConnected(_logger, Name, client.ServerInfo?.Name ?? "?", client.ServerInfo?.Version ?? "?", _tools.Count);
                reason = await WatchAsync(client, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                reason = "stopping";
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                reason = Describe(ex);
            }
            finally
            {
                lock (_gate)
                {
                    _client = null;
                }
            }

            if (client is not null)
            {
                await DisposeClientAsync(client).ConfigureAwait(false);
            }

            if (stop.IsCancellationRequested)
            {
                break;
            }

            // A connection that held for a while starts the backoff over.
            if (_time.GetElapsedTime(since) >= _options.RestartMaxDelay)
            {
                delay = _options.RestartInitialDelay;
            }

            lock (_gate)
            {
                _state = "restarting";
                _lastError = reason;
                _restarts++;
            }

            UpdateDirectory();
            Log.ServerDown(_logger, Name, reason, delay);
            await BackoffAsync(delay, stop).ConfigureAwait(false);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.RestartMaxDelay.Ticks));
        }
    }

    private async Task<McpClient> ConnectAsync(CancellationToken stop)
    {
        using var connectTimeout = new CancellationTokenSource(_options.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, connectTimeout.Token);
        var clientOptions = new McpClientOptions
        {
            ClientInfo = new Implementation { Name = "loom-bridge", Version = "0.1.0" },
            InitializationTimeout = _options.ConnectTimeout,
            Handlers = new McpClientHandlers
            {
                NotificationHandlers =
                [
                    new(NotificationMethods.ToolListChangedNotification, (_, _) =>
                    {
                        _signals.Writer.TryWrite(true);
                        return ValueTask.CompletedTask;
                    }),
                ],
            },
        };

        McpClient client;
        try
        {
            client = await McpClient.CreateAsync(CreateTransport(), clientOptions, _loggerFactory, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (connectTimeout.IsCancellationRequested && !stop.IsCancellationRequested)
        {
            throw new TimeoutException($"no MCP handshake within {_options.ConnectTimeout.TotalSeconds:0.#} s");
        }

        try
        {
            // Drop list-changed signals from before this listing: it sees the current list.
            while (_signals.Reader.TryRead(out _))
            {
            }

            await RefreshToolsAsync(client, linked.Token).ConfigureAwait(false);
            return client;
        }
        catch
        {
            await DisposeClientAsync(client).ConfigureAwait(false);
            throw;
        }
    }

    private IClientTransport CreateTransport()
    {
        if (_options.IsStdio)
        {
            var env = new Dictionary<string, string?>(StringComparer.Ordinal);
            foreach (var (key, value) in _options.Env)
            {
                env[key] = ExpandEnvironment(value);
            }

            return new StdioClientTransport(
                new StdioClientTransportOptions
                {
                    Name = _options.Name,
                    Command = _options.Command!,
                    Arguments = _options.Args.ToList(),
                    EnvironmentVariables = env,
                    WorkingDirectory = _options.WorkingDirectory,
                    ShutdownTimeout = TimeSpan.FromSeconds(2),
                    StandardErrorLines = line => Log.ServerStderr(_logger, Name, line),
                },
                _loggerFactory);
        }

        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (header, variable) in _options.HeadersFromEnv)
        {
            headers[header] = Environment.GetEnvironmentVariable(variable)
                ?? throw new InvalidOperationException($"environment variable '{variable}' (for header '{header}') is not set");
        }

        return new HttpClientTransport(
            new HttpClientTransportOptions
            {
                Name = _options.Name,
                Endpoint = _options.Url!,
                TransportMode = HttpTransportMode.StreamableHttp,
                AdditionalHeaders = headers,
                ConnectionTimeout = _options.ConnectTimeout,
            },
            _loggerFactory);
    }

    /// <summary>Waits until the connection ends (process exit, failed ping, broken transport), refreshing tools on list_changed.</summary>
    private async Task<string> WatchAsync(McpClient client, CancellationToken stop)
    {
        var nextPing = _time.GetUtcNow() + _options.PingInterval;
        while (true)
        {
            var wait = nextPing - _time.GetUtcNow();
            using var tick = CancellationTokenSource.CreateLinkedTokenSource(stop);
            tick.CancelAfter(wait > TimeSpan.Zero ? wait : TimeSpan.Zero);
            var signal = _signals.Reader.WaitToReadAsync(tick.Token).AsTask();
            var finished = await Task.WhenAny(client.Completion, signal).ConfigureAwait(false);
            stop.ThrowIfCancellationRequested();
            if (finished == client.Completion)
            {
                return DescribeCompletion(await client.Completion.ConfigureAwait(false));
            }

            await tick.CancelAsync().ConfigureAwait(false);
            var signalled = false;
            try
            {
                signalled = await signal.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The ping interval passed.
            }

            if (signalled)
            {
                var refresh = false;
                var broken = false;
                while (_signals.Reader.TryRead(out var isRefresh))
                {
                    refresh |= isRefresh;
                    broken |= !isRefresh;
                }

                if (broken)
                {
                    // Give a dying process a moment to report its exit code and stderr.
                    await Task.WhenAny(client.Completion, Task.Delay(TimeSpan.FromSeconds(2), _time, stop)).ConfigureAwait(false);
                    return client.Completion.IsCompleted ? DescribeCompletion(await client.Completion.ConfigureAwait(false)) : "a call found the transport broken";
                }

                if (refresh)
                {
                    try
                    {
                        await RefreshToolsAsync(client, stop).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException || !stop.IsCancellationRequested)
                    {
                        Log.RefreshFailed(_logger, Name, Describe(ex));
                    }
                }

                continue;
            }

            nextPing = _time.GetUtcNow() + _options.PingInterval;
            using var pingTimeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
            pingTimeout.CancelAfter(_options.ConnectTimeout);
            try
            {
                await client.PingAsync(cancellationToken: pingTimeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!stop.IsCancellationRequested)
            {
                return "ping failed: " + Describe(ex);
            }
        }
    }

    private async Task BackoffAsync(TimeSpan delay, CancellationToken stop)
    {
        // Keep the capabilities marked unhealthy for the whole wait (the broker's mark is a cooldown).
        var until = _time.GetUtcNow() + delay;
        var step = _broker.Options.UnhealthyCooldown > TimeSpan.Zero ? _broker.Options.UnhealthyCooldown / 2 : delay;
        while (!stop.IsCancellationRequested)
        {
            _broker.MarkUnhealthy(ProviderId);
            var left = until - _time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                return;
            }

            try
            {
                await Task.Delay(left < step ? left : step, _time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private static async Task DisposeClientAsync(McpClient client)
    {
        try
        {
            await client.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The transport is gone already; nothing more to release.
        }
    }

    // ---------------------------------------------------------------------------------------
    // Tools ↔ capabilities
    // ---------------------------------------------------------------------------------------

    private async Task RefreshToolsAsync(McpClient client, CancellationToken cancellationToken)
    {
        var listed = await client.ListToolsAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
        int added = 0, removed = 0, changed = 0;
        lock (_gate)
        {
            var next = new Dictionary<string, ToolEntry>(StringComparer.Ordinal);
            foreach (var clientTool in listed)
            {
                var tool = clientTool.ProtocolTool;
                var capability = ToolNames.Capability(Name, tool.Name);
                if (next.ContainsKey(capability))
                {
                    Log.ToolSkipped(_logger, Name, tool.Name, $"its capability name '{capability}' is taken by another tool of this server");
                    continue;
                }

                var descriptor = Describe(tool, capability);
                if (_tools.TryGetValue(capability, out var existing) && existing.Descriptor.Equals(descriptor))
                {
                    next[capability] = existing;
                    continue;
                }

                var registration = Register(descriptor, tool.Name);
                if (registration is null)
                {
                    continue;
                }

                next[capability] = new ToolEntry(tool.Name, descriptor, registration);
                if (existing is null)
                {
                    added++;
                }
                else
                {
                    changed++;
                    existing.Registration.Dispose();
                }
            }

            foreach (var (capability, entry) in _tools)
            {
                if (!next.ContainsKey(capability))
                {
                    entry.Registration.Dispose();
                    removed++;
                }
            }

            _tools = next;
        }

        if (added + removed + changed > 0)
        {
            Log.ToolsChanged(_logger, Name, added, removed, changed);
        }

        UpdateDirectory();
    }

    private CapabilityRegistration? Register(CapabilityDescriptor descriptor, string toolName)
    {
        try
        {
            return _broker.Register(descriptor, this);
        }
        catch (InvalidParamsException ex) when (ex.Path is "/input_schema_json" or "/output_schema_json")
        {
            Log.SchemaFallback(_logger, Name, toolName, ex.Message);
            var relaxed = descriptor.Clone();
            relaxed.InputSchemaJson = ex.Path == "/input_schema_json" ? "" : relaxed.InputSchemaJson;
            relaxed.OutputSchemaJson = ResultShape.OutputSchema(null);
            try
            {
                return _broker.Register(relaxed, this);
            }
            catch (InvalidParamsException again)
            {
                Log.ToolSkipped(_logger, Name, toolName, again.Message);
                return null;
            }
        }
        catch (InvalidParamsException ex)
        {
            Log.ToolSkipped(_logger, Name, toolName, ex.Message);
            return null;
        }
    }

    private CapabilityDescriptor Describe(Tool tool, string capability)
    {
        var description = !string.IsNullOrEmpty(tool.Description) ? tool.Description : tool.Title ?? "";
        var descriptor = new CapabilityDescriptor
        {
            Name = capability,
            Version = "1.0.0",
            Description = description,
            InputSchemaJson = tool.InputSchema.ValueKind == JsonValueKind.Object ? tool.InputSchema.GetRawText() : "",
            OutputSchemaJson = ResultShape.OutputSchema(tool.OutputSchema),
        };
        descriptor.Tags.Add("mcp");
        descriptor.Tags.Add("mcp-server:" + Name);
        return descriptor;
    }

    private void UpdateDirectory()
    {
        if (_agents is null)
        {
            return;
        }

        McpServerStatus status;
        DateTimeOffset since;
        lock (_gate)
        {
            since = _connectedAt;
        }

        status = Status;
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["mcp.transport"] = status.Transport,
            ["mcp.state"] = status.State,
            ["mcp.restarts"] = status.Restarts.ToString(System.Globalization.CultureInfo.InvariantCulture),
            [_options.IsStdio ? "mcp.command" : "mcp.url"] = _options.IsStdio ? _options.Command! : _options.Url!.GetLeftPart(UriPartial.Path),
        };
        _agents.Upsert(new AgentInfo(AgentId, "MCP server " + Name, "default", "", [], status.Capabilities, metadata, since, "mcp"));
    }

    // ---------------------------------------------------------------------------------------
    // Calls
    // ---------------------------------------------------------------------------------------

    public async ValueTask<ReadOnlyMemory<byte>> InvokeAsync(ActionInvocation invocation, CancellationToken cancellationToken)
    {
        McpClient? client;
        ToolEntry? entry;
        string? down;
        lock (_gate)
        {
            client = _client;
            _tools.TryGetValue(invocation.Capability, out entry);
            down = _lastError;
        }

        if (entry is null)
        {
            throw new CapabilityNotFoundException($"MCP server '{Name}' no longer lists a tool for '{invocation.Capability}'.");
        }

        if (client is null)
        {
            throw new ProviderUnavailableException($"MCP server '{Name}' is not connected{(down is null ? "" : $" ({down})")}; it is being restarted, retry later.");
        }

        var arguments = ParseArguments(invocation.InputJson, invocation.Capability);
        using var callTimeout = new CancellationTokenSource(_options.CallTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, callTimeout.Token);
        CallToolResult result;
        try
        {
            result = await client.CallToolAsync(new CallToolRequestParams { Name = entry.ToolName, Arguments = arguments }, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (callTimeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new LoomTimeoutException($"MCP tool '{entry.ToolName}' on server '{Name}' did not answer within its call timeout of {_options.CallTimeout.TotalSeconds:0.###} s.");
        }
        catch (OperationCanceledException ex) when (!linked.IsCancellationRequested)
        {
            // The SDK cancels the requests pending on a transport that closed.
            _signals.Writer.TryWrite(false);
            throw new ProviderUnavailableException($"MCP server '{Name}' went away during the call to '{entry.ToolName}'; retry after it restarts.", ex);
        }
        catch (McpProtocolException ex)
        {
            throw MapProtocolError(ex, entry.ToolName);
        }
        catch (Exception ex) when (ex is not OperationCanceledException && IsTransportFailure(ex, client))
        {
            _signals.Writer.TryWrite(false);
            throw new ProviderUnavailableException($"MCP server '{Name}' is unreachable: {Describe(ex)}", ex);
        }
        catch (McpException ex)
        {
            throw new ToolErrorException($"MCP tool '{entry.ToolName}' on server '{Name}' failed: {ex.Message}", ex);
        }

        if (result.IsError == true)
        {
            throw MapToolError(result, entry.ToolName);
        }

        return ResultShape.Serialize(result);
    }

    private static Dictionary<string, JsonElement> ParseArguments(ReadOnlyMemory<byte> input, string capability)
    {
        JsonElement root;
        try
        {
            using var document = JsonDocument.Parse(input);
            root = document.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new InvalidParamsException($"The input of '{capability}' is not JSON: {ex.Message}", "");
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidParamsException($"The input of '{capability}' is a JSON {root.ValueKind.ToString().ToLowerInvariant()}; MCP tools take an object of named arguments, e.g. {{\"message\": \"hi\"}}.", "");
        }

        var arguments = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var property in root.EnumerateObject())
        {
            arguments[property.Name] = property.Value;
        }

        return arguments;
    }

    private LoomException MapProtocolError(McpProtocolException ex, string tool)
    {
        var message = $"MCP tool '{tool}' on server '{Name}': {Truncate(ex.Message)}";
        return (int)ex.ErrorCode switch
        {
            -32602 => new InvalidParamsException(message),          // Invalid params
            -32001 => new LoomTimeoutException(message),            // Request timeout (SDK convention)
            _ => new ToolErrorException(message),
        };
    }

    private LoomException MapToolError(CallToolResult result, string tool)
    {
        var text = string.Join("\n", result.Content.OfType<TextContentBlock>().Select(b => b.Text));
        if (text.Length == 0)
        {
            text = "the tool reported an error and gave no text";
        }

        var message = $"MCP tool '{tool}' on server '{Name}' failed: {Truncate(text)}";

        // Servers built on the official SDKs report bad arguments as a tool error whose text
        // carries the JSON-RPC invalid-params code or says "validation error".
        return text.Contains("-32602", StringComparison.Ordinal) || text.Contains("validation error", StringComparison.OrdinalIgnoreCase)
            ? new InvalidParamsException(message)
            : new ToolErrorException(message);
    }

    private static bool IsTransportFailure(Exception ex, McpClient client) =>
        client.Completion.IsCompleted
        || ex is ClientTransportClosedException or IOException or HttpRequestException or ObjectDisposedException
        || ex.InnerException is ClientTransportClosedException or IOException or HttpRequestException;

    private static string DescribeCompletion(ClientCompletionDetails details)
    {
        var text = details switch
        {
            StdioClientCompletionDetails stdio => $"the process{(stdio.ProcessId is { } pid ? $" {pid}" : "")} exited{(stdio.ExitCode is { } code ? $" with code {code}" : "")}"
                + (stdio.StandardErrorTail is { Count: > 0 } tail ? $"; stderr: {Truncate(string.Join(" | ", tail.TakeLast(3)))}" : ""),
            HttpClientCompletionDetails http => $"the HTTP session ended{(http.HttpStatusCode is { } status ? $" (HTTP {(int)status})" : "")}",
            _ => "the session ended",
        };
        return details.Exception is { } ex ? $"{text}: {Describe(ex)}" : text;
    }

    private static string Describe(Exception ex) => ex switch
    {
        ClientTransportClosedException closed => DescribeCompletion(closed.Details),
        _ when ex.InnerException is not null && ex.Message.Length < 40 => $"{ex.Message} ({ex.InnerException.Message})",
        _ => ex.Message,
    };

    private static string Truncate(string text) => text.Length <= MaxErrorText ? text : string.Concat(text.AsSpan(0, MaxErrorText), "…");

    private static string ExpandEnvironment(string value)
    {
        if (!value.Contains("${", StringComparison.Ordinal))
        {
            return value;
        }

        var text = new System.Text.StringBuilder();
        var i = 0;
        while (i < value.Length)
        {
            var start = value.IndexOf("${", i, StringComparison.Ordinal);
            var end = start < 0 ? -1 : value.IndexOf('}', start + 2);
            if (start < 0 || end < 0)
            {
                text.Append(value, i, value.Length - i);
                break;
            }

            text.Append(value, i, start - i);
            text.Append(Environment.GetEnvironmentVariable(value[(start + 2)..end]) ?? "");
            i = end + 1;
        }

        return text.ToString();
    }

    private sealed record ToolEntry(string ToolName, CapabilityDescriptor Descriptor, CapabilityRegistration Registration);
}
