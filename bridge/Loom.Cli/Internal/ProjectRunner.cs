using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Loom.Bridge;
using Microsoft.Extensions.FileSystemGlobbing;
using Microsoft.Extensions.Logging;
using Spectre.Console;

namespace Loom.Cli.Internal;

/// <summary>What <c>loom run</c> / <c>loom dev</c> were asked for, beyond the project file.</summary>
internal sealed record RunSettings(
    string? Url,
    string? HttpUrl,
    IReadOnlyDictionary<string, string> Params,
    bool Dev,
    string LoomHome,
    TimeSpan ReadyTimeout);

/// <summary>
/// Runs a project: a bridge (in this process unless one is given), each agent's setup (skipped
/// while its inputs are unchanged), the agents as supervised processes with prefixed output, and
/// a clean stop of everything on Ctrl+C, when the main agent finishes, or when an agent fails.
/// In dev mode, an agent restarts when files under its directory change.
/// </summary>
internal sealed class ProjectRunner(ProjectFile project, RunSettings settings, ConsoleSink sink)
{
    private static readonly string[] IgnoredDirectories = ["node_modules", "bin", "obj", "dist", "__pycache__", ".loom", ".git", ".mypy_cache", ".pytest_cache"];

    // Bounded; exits and restarts wait for room (they must never be lost), file changes are offered
    // with TryWrite and simply dropped when a burst fills it (one change is as good as many).
    private readonly Channel<RunEvent> _events = Channel.CreateBounded<RunEvent>(new BoundedChannelOptions(256) { FullMode = BoundedChannelFullMode.Wait });
    private readonly Dictionary<string, Running> _running = new(StringComparer.Ordinal);

    // Agents started and not yet seen connected, with the session id each had before (null at
    // first start): a session id other than that one is the (re)connection to report. Guarded by
    // itself; _started wakes the reporter when an agent starts.
    private readonly Dictionary<string, string?> _awaiting = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _sessions = new(StringComparer.Ordinal);

    /// <summary>A read-only token for the bridge's /v1/agents when the bridge this run starts has auth on (never logged).</summary>
    private string? _readToken;

    /// <summary>The signing key's file when the bridge this run starts has auth on: each agent gets its own token (LOOM_TOKEN), minted from it at start.</summary>
    private string? _tokenKeyFile;
    private readonly Channel<string> _started = Channel.CreateUnbounded<string>();

    private abstract record RunEvent;

    private sealed record Exited(string Agent, AgentProcess Process, int Code) : RunEvent;

    private sealed record Changed(string Agent, string Path) : RunEvent;

    private sealed record Restart(string Agent) : RunEvent;

    private sealed class Running(AgentSpec spec)
    {
        public AgentSpec Spec { get; } = spec;

        public AgentProcess? Process { get; set; }

        public int Restarts { get; set; }

        public bool Finished { get; set; }
    }

    /// <summary>Runs until done; returns the process exit code (0 ok, 1 an agent failed).</summary>
    public async Task<int> RunAsync(CancellationToken stop)
    {
        sink.Register(project.Agents.Select(a => a.Name).Append("bridge"));
        var logDirectory = Path.Combine(project.Directory, ".loom", "logs");
        Directory.CreateDirectory(logDirectory);

        foreach (var agent in project.Agents)
        {
            if (!await SetupAsync(agent, logDirectory, stop).ConfigureAwait(false))
            {
                return 1;
            }
        }

        await using var bridgeLog = new StreamWriter(Path.Combine(logDirectory, "bridge.log"), append: false);
        using var loggerProvider = new SinkLoggerProvider(sink, bridgeLog, LogLevel.Warning);
        LoomBridge? bridge = null;
        string grpcUrl;
        string? httpUrl;
        if ((settings.Url ?? project.Bridge.Url) is { } external)
        {
            grpcUrl = external;
            httpUrl = settings.HttpUrl ?? project.Bridge.HttpUrl;
            sink.Status($"using the bridge at [bold]{external}[/]");
            if (project.Bridge.MetricTopicGroups is { Count: > 0 })
            {
                // They configure a bridge this run starts; a running bridge has its own (loom up --metric-topic-group).
                sink.Status("[yellow]bridge.metric_topic_groups is ignored with a running bridge: give them to its `loom up --metric-topic-group`[/]");
            }

            if (project.Bridge.Limits is { Count: > 0 } limits)
            {
                // Limits, too, configure a bridge this run starts.
                sink.Status($"[yellow]bridge limits ({Markup(string.Join(", ", limits.Keys))}) are ignored with a running bridge: give them to its `loom up` (or its --config)[/]");
            }
        }
        else
        {
            BridgeOptions options;
            try
            {
                options = BridgeOptionsFor(project);
            }
            catch (ArgumentException ex)
            {
                sink.Failure($"{project.Path}: {ex.Message}");
                return 2;
            }

            if (options.Auth != AuthMode.Off)
            {
                // The key lives under the project's .loom/ (made 0600 on first use, never printed) unless loom.yaml names one.
                options = options with { TokenKeyFile = Path.GetFullPath(options.TokenKeyFile ?? Path.Combine(project.Directory, ".loom", "keys", "token.key")) };
                _tokenKeyFile = options.TokenKeyFile;
                try
                {
                    _readToken = BridgeTokens.Create(_tokenKeyFile, "loom-run", [], [], TimeSpan.FromDays(7), readOnly: true);
                }
                catch (Exception ex) when (ex is InvalidOperationException or IOException or UnauthorizedAccessException)
                {
                    sink.Failure($"{project.Path}: bridge.token_key: {ex.Message}");
                    return 2;
                }

                var unlisted = project.Agents.Select(a => a.Name).Where(n => project.Permissions is not { } rules || !(rules.ContainsKey(n) || rules.ContainsKey(PermissionPolicy.EveryIdentity))).ToArray();
                if (unlisted.Length > 0)
                {
                    sink.Status($"[yellow]auth is on and loom.yaml's permissions name no rules for {Markup(string.Join(", ", unlisted))}: with nothing allowed, such an agent may only register (add permissions.NAME.allow)[/]");
                }
            }

            bridge = new LoomBridge(
                options,
                logging =>
                {
                    logging.ClearProviders();
                    logging.AddProvider(loggerProvider);
                });
            try
            {
                await bridge.StartAsync(stop).ConfigureAwait(false);
            }
            catch (IOException ex)
            {
                sink.Failure($"could not start the bridge: {ex.Message} (is the port in use? set bridge.grpc_port/http_port to 0)");
                await bridge.DisposeAsync().ConfigureAwait(false);
                return 1;
            }

            grpcUrl = bridge.GrpcAddress.ToString().TrimEnd('/');
            httpUrl = bridge.HttpAddress.ToString().TrimEnd('/');
            sink.Status($"bridge listening grpc=[bold]{grpcUrl}[/] http=[bold]{httpUrl}[/] (logs: {Markup(Path.GetRelativePath(Environment.CurrentDirectory, Path.Combine(logDirectory, "bridge.log")))})");
        }

        sink.Status(project.Bridge.Dashboard == false ? "dashboard: off (bridge.dashboard: false in loom.yaml)" : $"dashboard: [bold]{httpUrl}/[/]" + (_readToken is not null ? " (auth is on: paste a token from `loom token create --agent NAME --read-only`, or --admin to call capabilities)" : ""));

        // Where this run's bridge is, for `loom list`, `loom logs` and `loom mcp` run in the project (RunStateFile.Find).
        var state = RunStateFile.Current(project.Directory, grpcUrl, httpUrl, settings.Dev, bridgeStarted: bridge is not null);
        try
        {
            RunStateFile.Write(project.Directory, state);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            sink.Status($"[yellow]could not record the bridge in {Markup(RunStateFile.PathFor(project.Directory))}: {Markup(ex.Message)} (loom list and logs need --url)[/]");
        }

        var watchers = new List<FileSystemWatcher>();
        try
        {
            foreach (var agent in project.Agents)
            {
                var running = new Running(agent);
                _running[agent.Name] = running;
                if (!Start(running, grpcUrl, httpUrl))
                {
                    return 1;
                }

                if (settings.Dev)
                {
                    watchers.Add(Watch(agent));
                }
            }

            using var readiness = CancellationTokenSource.CreateLinkedTokenSource(stop);
            var ready = httpUrl is null ? Task.CompletedTask : ReportConnectionsAsync(httpUrl, readiness.Token);
            var code = await SuperviseAsync(grpcUrl, httpUrl, stop).ConfigureAwait(false);
            await readiness.CancelAsync().ConfigureAwait(false);
            await ready.ConfigureAwait(false);
            return code;
        }
        finally
        {
            foreach (var watcher in watchers)
            {
                watcher.Dispose();
            }

            loggerProvider.Quiet();
            RunStateFile.Remove(project.Directory, state);
            await StopAllAsync().ConfigureAwait(false);
            if (bridge is not null)
            {
                await bridge.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The bridge settings a project declares: ports, heartbeat, MCP servers to ingest and what to expose.</summary>
    /// <exception cref="ArgumentException">An MCP server declaration is invalid (the message says what to write).</exception>
    /// <summary>loom.yaml's audit keys; with auth on and no <c>audit_log</c>, the file is <c>.loom/audit.log</c> beside loom.yaml.</summary>
    private static AuditOptions AuditFor(ProjectFile project)
    {
        var spec = project.Bridge.Audit;
        var authOn = project.Bridge.Security?.Auth is "optional" or "required";
        var file = spec?.Off == true ? null : spec?.Log ?? (authOn ? Path.Combine(project.Directory, ".loom", "audit.log") : null);
        return new AuditOptions { File = file, IncludeReads = spec?.Reads ?? false };
    }

    public static BridgeOptions BridgeOptionsFor(ProjectFile project)
    {
        var servers = project.McpServers.Select(m =>
        {
            var server = new Loom.Mcp.McpServerOptions
            {
                Name = m.Name,
                Transport = m.Transport,
                Command = m.Command,
                Args = m.Args,
                Env = m.Env,
                WorkingDirectory = m.WorkingDirectory ?? project.Directory,
                Url = m.Url is null ? null : new Uri(m.Url),
                HeadersFromEnv = m.HeadersFromEnv,
            };

            // Unset durations keep the options' documented defaults.
            static TimeSpan? Ms(int? value) => value is { } ms ? TimeSpan.FromMilliseconds(ms) : null;
            server = server with
            {
                CallTimeout = Ms(m.CallTimeoutMs) ?? server.CallTimeout,
                ConnectTimeout = Ms(m.ConnectTimeoutMs) ?? server.ConnectTimeout,
                PingInterval = Ms(m.PingIntervalMs) ?? server.PingInterval,
                RestartInitialDelay = Ms(m.RestartInitialDelayMs) ?? server.RestartInitialDelay,
                RestartMaxDelay = Ms(m.RestartMaxDelayMs) ?? server.RestartMaxDelay,
            };

            try
            {
                server.Validate();
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
            {
                throw new ArgumentException($"line {m.Line}: mcp server '{m.Name}': {ex.Message}", ex);
            }

            return server;
        }).ToList();
        var options = new BridgeOptions
        {
            Host = project.Bridge.Host,
            GrpcPort = project.Bridge.GrpcPort,
            HttpPort = project.Bridge.HttpPort,
            HeartbeatInterval = TimeSpan.FromMilliseconds(project.Bridge.HeartbeatMs),
            EventBus = new Loom.Core.EventBusOptions { MetricTopicGroups = project.Bridge.MetricTopicGroups ?? [] },
            GrpcReflection = project.Bridge.GrpcReflection,
            Dashboard = project.Bridge.Dashboard ?? true,
            TlsCertificateFile = project.Bridge.Security?.TlsCert,
            TlsKeyFile = project.Bridge.Security?.TlsKey,
            TlsClientCaFile = project.Bridge.Security?.TlsClientCa,
            Auth = project.Bridge.Security?.Auth switch { "optional" => AuthMode.Optional, "required" => AuthMode.Required, _ => AuthMode.Off },
            TokenKeyFile = project.Bridge.Security?.TokenKey,
            MetricsOpen = project.Bridge.Security?.MetricsOpen ?? false,
            Insecure = project.Bridge.Security?.Insecure ?? false,
            AdminIdentities = project.Bridge.Security?.AdminIdentities ?? [],
            ReadOnlyIdentities = project.Bridge.Security?.ReadOnlyIdentities ?? [],
            McpAllowedHosts = project.Bridge.Security?.McpAllowedHosts ?? [],
            Permissions = project.Permissions,
            Audit = AuditFor(project),
            Streams = project.Streams ?? [],
            // A project's bridge keeps its data (durable streams, run records) in .loom/data unless data_dir says otherwise.
            DataDirectory = project.DataDir ?? Path.Combine(project.Directory, ".loom", "data"),
            Runs = project.Runs ?? new RunsOptions(),
            Idempotency = project.Idempotency ?? new Loom.Bridge.IdempotencyOptions(),
            McpServers = servers,
            Llm = project.Llm ?? new Loom.Llm.LlmOptions(),
            Mcp = project.McpExpose is { } e
                ? new Loom.Mcp.McpExposeOptions { Enabled = e.Enabled, Path = e.Path, Include = e.Include, Exclude = e.Exclude, CallTimeout = e.CallTimeoutMs is { } ms ? TimeSpan.FromMilliseconds(ms) : TimeSpan.FromSeconds(60) }
                : new Loom.Mcp.McpExposeOptions(),
        };
        options = BridgeLimits.Apply(options, project.Bridge.Limits ?? new Dictionary<string, long>());
        try
        {
            options.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"bridge: {BridgeLimits.Describe(ex)}", ex);
        }

        return options;
    }

    private async Task<int> SuperviseAsync(string grpcUrl, string? httpUrl, CancellationToken stop)
    {
        var pendingChanges = new Dictionary<string, CancellationTokenSource>(StringComparer.Ordinal);
        while (true)
        {
            RunEvent next;
            try
            {
                next = await _events.Reader.ReadAsync(stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                sink.Status("stopping (Ctrl+C)...");
                return 130;
            }

            switch (next)
            {
                case Exited exited when _running[exited.Agent].Process != exited.Process:
                    break; // A process we replaced (dev restart) or stopped on purpose.
                case Exited exited:
                    {
                        var running = _running[exited.Agent];
                        running.Process = null;
                        lock (_awaiting)
                        {
                            _awaiting.Remove(exited.Agent); // it will not connect now
                        }

                        var failed = exited.Code != 0;
                        if (!settings.Dev && project.Main == exited.Agent && !failed)
                        {
                            sink.Status($"[green]{Markup(exited.Agent)} finished[/]; stopping the others");
                            return 0;
                        }

                        var policy = running.Spec.Restart;
                        var restart = policy == RestartPolicy.Always || (policy == RestartPolicy.OnFailure && failed);
                        if (restart && running.Restarts < running.Spec.MaxRestarts)
                        {
                            running.Restarts++;
                            var delay = TimeSpan.FromMilliseconds(Math.Min(10_000, 500 * Math.Pow(2, running.Restarts - 1)));
                            sink.Status($"[yellow]{Markup(exited.Agent)} exited with code {exited.Code}; restart {running.Restarts}/{running.Spec.MaxRestarts} in {delay.TotalSeconds:0.#} s[/]");
                            _ = DelayThenAsync(delay, new Restart(exited.Agent), stop);
                            break;
                        }

                        if (settings.Dev)
                        {
                            sink.Status($"[yellow]{Markup(exited.Agent)} exited with code {exited.Code}; waiting for a change to its files[/]");
                            running.Finished = true;
                            break;
                        }

                        if (failed)
                        {
                            sink.Failure($"agent '{exited.Agent}' failed: exited with code {exited.Code}{(restart ? $" after {running.Restarts} restarts" : "")} (its output is above, prefixed '{exited.Agent}')");
                            return 1;
                        }

                        running.Finished = true;
                        sink.Status($"{Markup(exited.Agent)} exited");
                        if (_running.Values.All(r => r.Finished))
                        {
                            return 0;
                        }

                        break;
                    }

                case Restart restartEvent:
                    if (!Start(_running[restartEvent.Agent], grpcUrl, httpUrl))
                    {
                        return 1;
                    }

                    break;
                case Changed changed:
                    {
                        // Debounce: editors write several files at once; restart once they are quiet.
                        if (pendingChanges.Remove(changed.Agent, out var previous))
                        {
                            await previous.CancelAsync().ConfigureAwait(false);
                            previous.Dispose();
                        }

                        if (changed.Path.Length == 0)
                        {
                            var running = _running[changed.Agent];
                            sink.Status($"[yellow]files of {Markup(changed.Agent)} changed; restarting it[/]");
                            var old = running.Process;
                            running.Process = null;
                            if (old is not null)
                            {
                                await old.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                            }

                            var logDirectory = Path.Combine(project.Directory, ".loom", "logs");
                            if (!await SetupAsync(running.Spec, logDirectory, stop).ConfigureAwait(false))
                            {
                                sink.Status($"[yellow]fix the setup of {Markup(changed.Agent)}; waiting for a change[/]");
                                break;
                            }

                            running.Finished = false;
                            running.Restarts = 0;
                            Start(running, grpcUrl, httpUrl);
                            break;
                        }

                        var debounce = CancellationTokenSource.CreateLinkedTokenSource(stop);
                        pendingChanges[changed.Agent] = debounce;
                        _ = DelayThenAsync(TimeSpan.FromMilliseconds(400), new Changed(changed.Agent, ""), debounce.Token);
                        break;
                    }
            }
        }
    }

    private bool Start(Running running, string grpcUrl, string? httpUrl)
    {
        var spec = running.Spec;
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["LOOM_URL"] = grpcUrl,
            ["LOOM_AGENT_ID"] = spec.Name,
            ["LOOM_HOME"] = settings.LoomHome,
            ["LOOM_PROJECT_DIR"] = project.Directory,
            ["PYTHONUNBUFFERED"] = "1",
            ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
            ["DOTNET_NOLOGO"] = "1",
        };
        if (httpUrl is not null)
        {
            env["LOOM_HTTP_URL"] = httpUrl;
        }

        if (_tokenKeyFile is not null)
        {
            // Its own credential: the identity is the agent's name, what it may do is loom.yaml's
            // permissions for that name (the token carries no allow lists of its own). Never logged.
            env["LOOM_TOKEN"] = BridgeTokens.Create(_tokenKeyFile, spec.Name, [], [], TimeSpan.FromDays(7));
        }

        foreach (var p in project.Params)
        {
            if (settings.Params.TryGetValue(p.Name, out var value) || (value = p.Default) is not null)
            {
                env[p.Env] = value;
            }
        }

        foreach (var (key, value) in spec.Env)
        {
            env[key] = ProjectFileLoader.Interpolate(value, env);
        }

        var isMain = project.Main == spec.Name && !settings.Dev;
        try
        {
            var process = AgentProcess.Start(ProjectFileLoader.Interpolate(spec.Command, env), spec.WorkingDirectory, env, (line, isError) =>
            {
                if (isMain && !isError)
                {
                    sink.Raw(line);
                }
                else
                {
                    sink.AgentLine(spec.Name, line, isError);
                }
            });
            running.Process = process;
            lock (_awaiting)
            {
                _awaiting[spec.Name] = _sessions.GetValueOrDefault(spec.Name);
            }

            _started.Writer.TryWrite(spec.Name);
            _ = ForwardExitAsync(spec.Name, process);
            sink.Status($"started {Markup(spec.Name)} ({Markup(spec.Language)}, pid {process.Id}): {Markup(spec.Command)}");
            return true;
        }
        catch (InvalidOperationException ex)
        {
            sink.Failure($"agent '{spec.Name}' failed to start: {ex.Message}");
            return false;
        }
    }

    private async Task ForwardExitAsync(string agent, AgentProcess process)
    {
        var code = await process.Exited.ConfigureAwait(false);
        await _events.Writer.WriteAsync(new Exited(agent, process, code)).ConfigureAwait(false);
    }

    private async Task DelayThenAsync(TimeSpan delay, RunEvent next, CancellationToken cancel)
    {
        try
        {
            await Task.Delay(delay, cancel).ConfigureAwait(false);
            await _events.Writer.WriteAsync(next, cancel).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Superseded by a later change, or the run is stopping.
        }
    }

    private async Task StopAllAsync()
    {
        var stopping = _running.Values.Where(r => r.Process is not null).Select(async r =>
        {
            var process = r.Process!;
            r.Process = null;
            await process.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
            await process.DisposeAsync().ConfigureAwait(false);
        }).ToArray();
        await Task.WhenAll(stopping).ConfigureAwait(false);
    }

    private FileSystemWatcher Watch(AgentSpec agent)
    {
        var watcher = new FileSystemWatcher(agent.WorkingDirectory) { IncludeSubdirectories = true, NotifyFilter = NotifyFilters.LastWrite | NotifyFilters.FileName | NotifyFilters.DirectoryName };
        Matcher? patterns = null;
        if (agent.Watch.Count > 0)
        {
            patterns = new Matcher();
            patterns.AddIncludePatterns(agent.Watch);
        }

        void OnChange(object sender, FileSystemEventArgs e)
        {
            var relative = Path.GetRelativePath(agent.WorkingDirectory, e.FullPath);
            var parts = relative.Split(Path.DirectorySeparatorChar);
            if (parts.Any(p => IgnoredDirectories.Contains(p, StringComparer.Ordinal)) || (patterns is not null && !patterns.Match(relative).HasMatches))
            {
                return;
            }

            _events.Writer.TryWrite(new Changed(agent.Name, relative));
        }

        watcher.Changed += OnChange;
        watcher.Created += OnChange;
        watcher.Deleted += OnChange;
        watcher.Renamed += (s, e) => OnChange(s, e);
        watcher.EnableRaisingEvents = true;
        return watcher;
    }

    /// <summary>Runs an agent's setup unless the stamp of its inputs says it already ran for them.</summary>
    private async Task<bool> SetupAsync(AgentSpec agent, string logDirectory, CancellationToken stop)
    {
        if (agent.Setup is not { } setup)
        {
            return true;
        }

        var stampFile = Path.Combine(project.Directory, ".loom", $"setup-{agent.Name}.stamp");
        var stamp = Stamp(agent, setup);
        if (File.Exists(stampFile) && await File.ReadAllTextAsync(stampFile, stop).ConfigureAwait(false) == stamp)
        {
            return true;
        }

        var logPath = Path.Combine(logDirectory, $"setup-{agent.Name}.log");
        var lines = new List<string>();
        var clock = Stopwatch.StartNew();
        int code;
        await using (var log = new StreamWriter(logPath, append: false))
        {
            var env = new Dictionary<string, string>(StringComparer.Ordinal) { ["LOOM_HOME"] = settings.LoomHome, ["LOOM_PROJECT_DIR"] = project.Directory, ["DOTNET_NOLOGO"] = "1", ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1" };
            foreach (var (key, value) in agent.Env)
            {
                env[key] = ProjectFileLoader.Interpolate(value, env);
            }

            await using var process = AgentProcess.Start(ProjectFileLoader.Interpolate(setup.Command, env), agent.WorkingDirectory, env, (line, _) =>
            {
                lock (lines)
                {
                    lines.Add(line);
                    log.WriteLine(line);
                }
            });
            code = await sink.Console.Status().StartAsync($"setting up {Markup(agent.Name)}: {Markup(setup.Command)}", async _ =>
            {
                try
                {
                    return await process.Exited.WaitAsync(stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return await process.StopAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);
        }

        if (code != 0)
        {
            lock (lines)
            {
                foreach (var line in lines.TakeLast(30))
                {
                    sink.AgentLine(agent.Name, line, true);
                }
            }

            sink.Failure($"agent '{agent.Name}' failed: its setup '{setup.Command}' exited with code {code} (full log: {Path.GetRelativePath(Environment.CurrentDirectory, logPath)})");
            return false;
        }

        sink.Status($"set up {Markup(agent.Name)} in {clock.Elapsed.TotalSeconds:0.0} s");
        await File.WriteAllTextAsync(stampFile, Stamp(agent, setup), stop).ConfigureAwait(false);
        return true;
    }

    private static string Stamp(AgentSpec agent, SetupSpec setup)
    {
        var text = new StringBuilder(setup.Command).Append('\n');
        if (setup.Inputs.Count > 0)
        {
            var matcher = new Matcher();
            matcher.AddIncludePatterns(setup.Inputs);
            foreach (var dir in IgnoredDirectories)
            {
                matcher.AddExclude($"**/{dir}/**");
            }

            foreach (var file in matcher.GetResultsInFullPath(agent.WorkingDirectory).Order(StringComparer.Ordinal))
            {
                var info = new FileInfo(file);
                text.Append(CultureInfo.InvariantCulture, $"{file}|{info.Length}|{info.LastWriteTimeUtc.Ticks}\n");
            }
        }
        else
        {
            // No inputs declared: run it every time.
            text.Append(Guid.NewGuid());
        }

        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// Reports each agent as it connects (from the bridge's /v1/agents), and again each time it
    /// connects after a restart ("reconnected": a dev restart, or a restart policy's); warns once
    /// when the first connections take longer than the ready timeout. Polls only while an agent
    /// it started has not connected yet.
    /// </summary>
    private async Task ReportConnectionsAsync(string httpUrl, CancellationToken stop)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        if (_readToken is not null)
        {
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", _readToken);
        }

        var everConnected = new HashSet<string>(StringComparer.Ordinal);
        var clock = Stopwatch.StartNew();
        var warned = false;
        var allReported = false;
        while (!stop.IsCancellationRequested)
        {
            bool waiting;
            lock (_awaiting)
            {
                waiting = _awaiting.Count > 0;
            }

            if (!waiting)
            {
                try
                {
                    await _started.Reader.ReadAsync(stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                continue;
            }

            try
            {
                using var response = await http.GetAsync(new Uri($"{httpUrl}/v1/agents"), stop).ConfigureAwait(false);
                using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(stop).ConfigureAwait(false));
                foreach (var agent in document.RootElement.GetProperty("agents").EnumerateArray())
                {
                    var id = agent.GetProperty("agent_id").GetString() ?? "";
                    // Which registration this is: session ids are shown to admin credentials only, the connection time to every reader.
                    var session = agent.TryGetProperty("connected_at", out var s) ? s.GetRawText() : "";
                    if (agent.TryGetProperty("state", out var st) && st.GetString() is { } connection && connection != "connected")
                    {
                        continue;
                    }

                    lock (_awaiting)
                    {
                        if (!_awaiting.TryGetValue(id, out var before) || (before is not null && before == session))
                        {
                            continue; // not one we wait for, or still the session of the process it replaced
                        }

                        _awaiting.Remove(id);
                        _sessions[id] = session;
                    }

                    var capabilities = agent.GetProperty("capabilities").EnumerateArray().Select(c => c.GetString()).ToArray();
                    var verb = everConnected.Add(id) ? "connected" : "reconnected";
                    sink.Status($"[green]✓[/] {Markup(id)} {verb} ({Markup(agent.GetProperty("sdk").GetString() ?? "")}){(capabilities.Length > 0 ? $", serves {Markup(string.Join(", ", capabilities))}" : "")}");
                }

                if (!allReported && project.Agents.All(a => everConnected.Contains(a.Name)))
                {
                    allReported = true;
                    sink.Status($"[green]all {project.Agents.Count} agents connected[/] in {clock.Elapsed.TotalSeconds:0.0} s");
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or JsonException or TaskCanceledException or KeyNotFoundException or InvalidOperationException)
            {
                // The bridge is starting or stopping; try again.
            }

            if (!warned && !allReported && clock.Elapsed > settings.ReadyTimeout)
            {
                warned = true;
                string[] missing;
                lock (_awaiting)
                {
                    missing = project.Agents.Select(a => a.Name).Where(n => !everConnected.Contains(n) && _awaiting.ContainsKey(n)).ToArray();
                }

                if (missing.Length > 0)
                {
                    sink.Status($"[yellow]still waiting for {Markup(string.Join(", ", missing))} to connect after {settings.ReadyTimeout.TotalSeconds:0} s[/]");
                }
            }

            try
            {
                await Task.Delay(200, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private static string Markup(string text) => Spectre.Console.Markup.Escape(text);
}
