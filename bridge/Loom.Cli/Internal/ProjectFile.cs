using System.Globalization;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Loom.Cli.Internal;

/// <summary>How an agent is restarted when its process exits.</summary>
internal enum RestartPolicy
{
    /// <summary>Never: an exit ends the run (non-zero fails it).</summary>
    Never,

    /// <summary>Only after a non-zero exit, up to <see cref="AgentSpec.MaxRestarts"/> times.</summary>
    OnFailure,

    /// <summary>After any exit, up to <see cref="AgentSpec.MaxRestarts"/> times.</summary>
    Always,
}

/// <summary>
/// The bridge a project runs against: started in-process, or an existing one at <see cref="Url"/>.
/// <see cref="Limits"/> holds the limits the file sets, by <see cref="BridgeLimit.Key"/>.
/// </summary>
internal sealed record BridgeSpec(string? Url, string? HttpUrl, string Host, int GrpcPort, int HttpPort, int HeartbeatMs, IReadOnlyList<string>? MetricTopicGroups = null, bool? GrpcReflection = null, IReadOnlyDictionary<string, long>? Limits = null, BridgeSecuritySpec? Security = null, BridgeAuditSpec? Audit = null, bool? Dashboard = null);

/// <summary>loom.yaml's audit keys: <c>audit_log</c> (a path, or <c>off</c> for no file; absolute), <c>audit_reads</c>.</summary>
internal sealed record BridgeAuditSpec(string? Log, bool Off, bool Reads);

/// <summary>TLS and authentication settings of loom.yaml's bridge section; paths are absolute (resolved against the file's directory).</summary>
internal sealed record BridgeSecuritySpec(string? TlsCert, string? TlsKey, string? TlsClientCa, string? Auth = null, string? TokenKey = null, bool MetricsOpen = false, IReadOnlyList<string>? AdminIdentities = null, IReadOnlyList<string>? ReadOnlyIdentities = null, IReadOnlyList<string>? McpAllowedHosts = null, bool Insecure = false);

/// <summary>A command run before an agent starts, skipped while its inputs are unchanged.</summary>
internal sealed record SetupSpec(string Command, IReadOnlyList<string> Inputs);

/// <summary>One agent process.</summary>
internal sealed record AgentSpec(
    string Name,
    string Language,
    string Command,
    string WorkingDirectory,
    IReadOnlyDictionary<string, string> Env,
    RestartPolicy Restart,
    int MaxRestarts,
    SetupSpec? Setup,
    IReadOnlyList<string> Watch,
    int Line);

/// <summary>A run parameter: <c>loom run DIR --NAME VALUE</c> sets the environment variable <see cref="Env"/> of every agent.</summary>
internal sealed record ParamSpec(string Name, string Env, string? Default, string Description);

/// <summary>An MCP server declared in the file (mapped onto the bridge's MCP options).</summary>
internal sealed record McpServerSpec(
    string Name,
    string Transport,
    string? Command,
    IReadOnlyList<string> Args,
    IReadOnlyDictionary<string, string> Env,
    string? WorkingDirectory,
    string? Url,
    IReadOnlyDictionary<string, string> HeadersFromEnv,
    int? CallTimeoutMs,
    int? ConnectTimeoutMs,
    int? PingIntervalMs,
    int? RestartInitialDelayMs,
    int? RestartMaxDelayMs,
    int Line);

/// <summary>Which capabilities the bridge serves to MCP clients on its HTTP port.</summary>
internal sealed record McpExposeSpec(bool Enabled, string Path, IReadOnlyList<string> Include, IReadOnlyList<string> Exclude, int? CallTimeoutMs);

/// <summary>A parsed and validated <c>loom.yaml</c>.</summary>
internal sealed record ProjectFile(
    string Path,
    string Directory,
    string Name,
    string Description,
    BridgeSpec Bridge,
    IReadOnlyList<AgentSpec> Agents,
    IReadOnlyList<ParamSpec> Params,
    string? Main,
    IReadOnlyList<McpServerSpec> McpServers,
    McpExposeSpec? McpExpose,
    IReadOnlyDictionary<string, Loom.Bridge.IdentityPermissions>? Permissions = null,
    Loom.Llm.LlmOptions? Llm = null,
    IReadOnlyList<Loom.Bridge.StreamConfig>? Streams = null,
    string? DataDir = null,
    Loom.Bridge.RunsOptions? Runs = null,
    Loom.Bridge.IdempotencyOptions? Idempotency = null);

/// <summary>A <c>loom.yaml</c> that cannot be used: names the file, line, column and field, and says what to fix.</summary>
internal sealed class ProjectFileException : Exception
{
    public ProjectFileException(string file, long line, long column, string field, string problem)
        : base(Format(file, line, column, field, problem))
    {
        File = file;
        Line = line;
        Field = field;
    }

    private ProjectFileException(string file, string message)
        : base(message)
    {
        File = file;
        Field = "";
    }

    public string File { get; }

    public long Line { get; }

    public string Field { get; }

    /// <summary>There is no file to read: <paramref name="message"/> says what is missing, without a position.</summary>
    public static ProjectFileException Missing(string file, string message) => new(file, message);

    private static string Format(string file, long line, long column, string field, string problem) => line == 0
        ? $"{file}: {(field.Length == 0 ? "" : field + ": ")}{problem}"
        : string.Create(CultureInfo.InvariantCulture, $"{file}:{line}:{column}: {(field.Length == 0 ? "" : field + ": ")}{problem}");
}

/// <summary>
/// Reads <c>loom.yaml</c> through YamlDotNet's representation model so that every error can name
/// the line and column of the offending node. Unknown keys are errors (a typo must not be
/// silently ignored), with the closest known key suggested.
/// </summary>
internal static partial class ProjectFileLoader
{
    public const string FileName = "loom.yaml";

    private static readonly string[] Languages = ["python", "typescript", "javascript", "dotnet", "other"];

    [GeneratedRegex("^[a-z][a-z0-9-]{0,62}$")]
    private static partial Regex AgentNamePattern();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]*$")]
    private static partial Regex EnvNamePattern();

    [GeneratedRegex(@"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")]
    private static partial Regex Interpolation();

    /// <summary>Loads <paramref name="pathOrDirectory"/> (a loom.yaml, or a directory holding one).</summary>
    /// <exception cref="ProjectFileException">The file is missing, not YAML, or invalid.</exception>
    public static ProjectFile Load(string pathOrDirectory, bool requireAgents = true)
    {
        var path = System.IO.Directory.Exists(pathOrDirectory) ? System.IO.Path.Combine(pathOrDirectory, FileName) : pathOrDirectory;
        var display = System.IO.Path.GetRelativePath(Environment.CurrentDirectory, path);
        if (!File.Exists(path))
        {
            throw ProjectFileException.Missing(display, MissingMessage(pathOrDirectory));
        }

        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (IOException ex)
        {
            throw new ProjectFileException(display, 0, 0, "", $"cannot read it: {ex.Message}");
        }

        return Parse(text, display, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!, requireAgents);
    }

    /// <summary>Why there is no project file at <paramref name="pathOrDirectory"/>, in words a user acts on.</summary>
    private static string MissingMessage(string pathOrDirectory)
    {
        if (System.IO.Directory.Exists(pathOrDirectory))
        {
            return $"no {FileName} in {pathOrDirectory}; create one (see 'loom new') or pass the path of the file";
        }

        var extension = System.IO.Path.GetExtension(pathOrDirectory);
        if (extension.Equals(".yaml", StringComparison.OrdinalIgnoreCase) || extension.Equals(".yml", StringComparison.OrdinalIgnoreCase))
        {
            var parent = System.IO.Path.GetDirectoryName(pathOrDirectory);
            return parent is { Length: > 0 } && !System.IO.Directory.Exists(parent)
                ? $"{pathOrDirectory} does not exist (the directory {parent} does not exist)"
                : $"{pathOrDirectory} does not exist";
        }

        return $"no {FileName} in {pathOrDirectory} (the directory does not exist)";
    }

    /// <summary>Parses the text of a loom.yaml; <paramref name="directory"/> anchors relative paths.</summary>
    public static ProjectFile Parse(string text, string displayPath, string directory, bool requireAgents = true)
    {
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException ex)
        {
            throw new ProjectFileException(displayPath, ex.Start.Line, ex.Start.Column, "", $"not valid YAML: {Inner(ex).Message}");
        }

        var reader = new Reader(displayPath);
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
        {
            var node = stream.Documents.Count == 0 ? null : stream.Documents[0].RootNode;
            throw reader.Error(node, "", "the file must be a mapping with at least 'agents:'");
        }

        var top = reader.Keys(root, "", "name", "description", "bridge", "agents", "params", "main", "mcp_servers", "mcp_expose", "permissions", "llm", "streams", "data_dir", "runs", "idempotency");
        var name = top.TryGetValue("name", out var nameNode) ? reader.String(nameNode, "name") : System.IO.Path.GetFileName(directory);
        var description = top.TryGetValue("description", out var descriptionNode) ? reader.String(descriptionNode, "description") : "";
        var bridge = ReadBridge(reader, top.GetValueOrDefault("bridge"), directory);
        var agents = new List<AgentSpec>();
        if (!top.TryGetValue("agents", out var agentsNode))
        {
            if (requireAgents)
            {
                throw reader.Error(root, "agents", "missing: declare at least one agent (name, command)");
            }
        }

        var agentList = agentsNode is null ? new YamlSequenceNode() : reader.Sequence(agentsNode, "agents");
        if (agentList.Children.Count == 0 && requireAgents)
        {
            throw reader.Error(agentsNode, "agents", "empty: declare at least one agent (name, command)");
        }

        for (var i = 0; i < agentList.Children.Count; i++)
        {
            var agent = ReadAgent(reader, agentList.Children[i], $"agents[{i}]", directory);
            if (agents.Any(a => a.Name == agent.Name))
            {
                throw reader.Error(agentList.Children[i], $"agents[{i}].name", $"'{agent.Name}' is declared twice; agent names must be unique");
            }

            agents.Add(agent);
        }

        var parameters = new List<ParamSpec>();
        if (top.TryGetValue("params", out var paramsNode))
        {
            foreach (var (key, value) in reader.Mapping(paramsNode, "params").Children)
            {
                var paramName = reader.String(key, "params");
                var field = $"params.{paramName}";
                if (!AgentNamePattern().IsMatch(paramName))
                {
                    throw reader.Error(key, field, "parameter names are lower-case letters, digits and '-', starting with a letter");
                }

                var p = reader.Keys(reader.Mapping(value, field), field, "env", "default", "description");
                if (!p.TryGetValue("env", out var envNode))
                {
                    throw reader.Error(value, field + ".env", "missing: the environment variable the agents read it from");
                }

                var env = reader.String(envNode, field + ".env");
                if (!EnvNamePattern().IsMatch(env))
                {
                    throw reader.Error(envNode, field + ".env", $"'{env}' is not an environment variable name");
                }

                if (p.TryGetValue("default", out var secretDefault) && SecretFields.Problem(env, reader.String(secretDefault, field + ".default")) is { } secretProblem)
                {
                    throw reader.Error(secretDefault, field + ".default", secretProblem);
                }

                parameters.Add(new ParamSpec(
                    paramName,
                    env,
                    p.TryGetValue("default", out var d) ? reader.String(d, field + ".default") : null,
                    p.TryGetValue("description", out var pd) ? reader.String(pd, field + ".description") : ""));
            }
        }

        string? main = null;
        if (top.TryGetValue("main", out var mainNode))
        {
            main = reader.String(mainNode, "main");
            if (agents.All(a => a.Name != main))
            {
                throw reader.Error(mainNode, "main", $"no agent is named '{main}'; declared: {string.Join(", ", agents.Select(a => a.Name))}");
            }
        }

        var mcp = new List<McpServerSpec>();
        if (top.TryGetValue("mcp_servers", out var mcpNode))
        {
            var list = reader.Sequence(mcpNode, "mcp_servers");
            for (var i = 0; i < list.Children.Count; i++)
            {
                mcp.Add(ReadMcpServer(reader, list.Children[i], $"mcp_servers[{i}]", directory));
            }
        }

        McpExposeSpec? expose = null;
        if (top.TryGetValue("mcp_expose", out var exposeNode))
        {
            var e = reader.Keys(reader.Mapping(exposeNode, "mcp_expose"), "mcp_expose", "enabled", "path", "include", "exclude", "call_timeout_ms");
            expose = new McpExposeSpec(
                !e.TryGetValue("enabled", out var en) || reader.OneOf(en, "mcp_expose.enabled", ["true", "false"]) == "true",
                e.TryGetValue("path", out var path) ? reader.String(path, "mcp_expose.path") : "/mcp",
                e.TryGetValue("include", out var inc) ? reader.Strings(inc, "mcp_expose.include") : ["*"],
                e.TryGetValue("exclude", out var exc) ? reader.Strings(exc, "mcp_expose.exclude") : [],
                e.TryGetValue("call_timeout_ms", out var ect) ? reader.Int(ect, "mcp_expose.call_timeout_ms", 1, 3_600_000) : null);
        }

        var permissions = top.TryGetValue("permissions", out var permissionsNode) ? ReadPermissions(reader, permissionsNode) : null;
        var llm = top.TryGetValue("llm", out var llmNode) ? ReadLlm(reader, llmNode) : null;
        var streams = top.TryGetValue("streams", out var streamsNode) ? ReadStreams(reader, streamsNode) : null;
        var dataDir = top.TryGetValue("data_dir", out var dataDirNode) ? System.IO.Path.GetFullPath(reader.String(dataDirNode, "data_dir"), directory) : null;
        var runs = top.TryGetValue("runs", out var runsNode) ? ReadRuns(reader, runsNode) : null;
        var idempotency = top.TryGetValue("idempotency", out var idempotencyNode) ? ReadIdempotency(reader, idempotencyNode) : null;
        return new ProjectFile(displayPath, directory, name, description, bridge, agents, parameters, main, mcp, expose, permissions, llm, streams, dataDir, runs, idempotency);
    }

    /// <summary>
    /// <c>runs: { enabled, max_age, max_bytes, max_steps, memory_max_bytes, max_threads, max_steps_per_thread, queue_capacity, preview_bytes, fsync }</c>
    /// (docs/durability.md, run records); what is not given keeps its default.
    /// </summary>
    private static Loom.Bridge.RunsOptions ReadRuns(Reader reader, YamlNode node)
    {
        var r = reader.Keys(reader.Mapping(node, "runs"), "runs", "enabled", "max_age", "max_bytes", "max_steps", "memory_max_bytes", "max_threads", "max_steps_per_thread", "queue_capacity", "preview_bytes", "fsync");
        var d = new Loom.Bridge.RunsOptions();
        bool Flag(string key, bool fallback) => r.TryGetValue(key, out var n) ? reader.OneOf(n, "runs." + key, ["true", "false"]) == "true" : fallback;
        int Count(string key, int min, int max, int fallback) => r.TryGetValue(key, out var n) ? reader.Int(n, "runs." + key, min, max) : fallback;
        return new Loom.Bridge.RunsOptions
        {
            Enabled = Flag("enabled", d.Enabled),
            MaxAge = r.TryGetValue("max_age", out var age) ? Duration(reader, age, "runs.max_age") : d.MaxAge,
            MaxBytes = r.TryGetValue("max_bytes", out var bytes) ? Size(reader, bytes, "runs.max_bytes") : d.MaxBytes,
            MaxSteps = r.TryGetValue("max_steps", out var steps) ? Size(reader, steps, "runs.max_steps", units: false) : d.MaxSteps,
            MemoryMaxBytes = r.TryGetValue("memory_max_bytes", out var memory) ? Size(reader, memory, "runs.memory_max_bytes") : d.MemoryMaxBytes,
            MaxThreads = Count("max_threads", 1, 10_000_000, d.MaxThreads),
            MaxStepsPerThread = Count("max_steps_per_thread", 1, 10_000_000, d.MaxStepsPerThread),
            QueueCapacity = Count("queue_capacity", 1, 10_000_000, d.QueueCapacity),
            PreviewBytes = Count("preview_bytes", 0, 65_536, d.PreviewBytes),
            Fsync = Flag("fsync", d.Fsync),
        };
    }

    /// <summary><c>idempotency: { window, max_keys, max_memory_bytes, max_disk_bytes, fsync }</c> (docs/durability.md).</summary>
    private static Loom.Bridge.IdempotencyOptions ReadIdempotency(Reader reader, YamlNode node)
    {
        var i = reader.Keys(reader.Mapping(node, "idempotency"), "idempotency", "window", "max_keys", "max_memory_bytes", "max_disk_bytes", "fsync");
        var defaults = new Loom.Bridge.IdempotencyOptions();
        var window = i.TryGetValue("window", out var w) ? Duration(reader, w, "idempotency.window") : defaults.Window;
        if (window <= TimeSpan.Zero)
        {
            throw reader.Error(w!, "idempotency.window", "must be positive, e.g. 24h");
        }

        return new Loom.Bridge.IdempotencyOptions
        {
            Window = window,
            MaxKeys = i.TryGetValue("max_keys", out var keys) ? reader.Int(keys, "idempotency.max_keys", 1, 100_000_000) : defaults.MaxKeys,
            MaxMemoryBytes = i.TryGetValue("max_memory_bytes", out var memory) ? Size(reader, memory, "idempotency.max_memory_bytes") : defaults.MaxMemoryBytes,
            MaxDiskBytes = i.TryGetValue("max_disk_bytes", out var disk) ? Size(reader, disk, "idempotency.max_disk_bytes") : defaults.MaxDiskBytes,
            Fsync = !i.TryGetValue("fsync", out var fsync) || reader.OneOf(fsync, "idempotency.fsync", ["true", "false"]) == "true",
        };
    }

    /// <summary>
    /// <c>streams: [{ name, subjects, max_age, max_bytes, max_events, duplicate_window, fsync }]</c>
    /// (docs/durability.md): durations as 90s, 30m, 24h, 7d or milliseconds; sizes as bytes or with KiB, MiB, GiB.
    /// </summary>
    private static List<Loom.Bridge.StreamConfig> ReadStreams(Reader reader, YamlNode node)
    {
        var list = reader.Sequence(node, "streams");
        var streams = new List<Loom.Bridge.StreamConfig>();
        for (var i = 0; i < list.Children.Count; i++)
        {
            var field = $"streams[{i}]";
            var s = reader.Keys(reader.Mapping(list.Children[i], field), field, "name", "subjects", "max_age", "max_bytes", "max_events", "duplicate_window", "fsync");
            if (!s.TryGetValue("name", out var nameNode))
            {
                throw reader.Error(list.Children[i], field + ".name", "missing: a stream needs a name (letters, digits, '-', '_')");
            }

            if (!s.TryGetValue("subjects", out var subjectsNode))
            {
                throw reader.Error(list.Children[i], field + ".subjects", "missing: the topic patterns the stream captures, e.g. [orders.>]");
            }

            var name = reader.String(nameNode, field + ".name");
            if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            {
                throw reader.Error(nameNode, field + ".name", $"'{name}' is not a stream name: use 1 to 64 letters, digits, '-' or '_' (it names a directory)");
            }

            if (streams.Exists(x => x.Name == name))
            {
                throw reader.Error(nameNode, field + ".name", $"'{name}' is declared twice; stream names must be unique");
            }

            var subjects = reader.Strings(subjectsNode, field + ".subjects");
            if (subjects.Length == 0)
            {
                throw reader.Error(subjectsNode, field + ".subjects", "empty: give the topic patterns the stream captures, e.g. [orders.>]");
            }

            foreach (var subject in subjects)
            {
                if (TopicPatternReason(subject) is { } reason)
                {
                    throw reader.Error(subjectsNode, field + ".subjects", $"'{subject}' is not a topic pattern: {reason}");
                }
            }

            streams.Add(new Loom.Bridge.StreamConfig
            {
                Name = name,
                Subjects = subjects,
                MaxAge = s.TryGetValue("max_age", out var age) ? Duration(reader, age, field + ".max_age") : TimeSpan.Zero,
                MaxBytes = s.TryGetValue("max_bytes", out var bytes) ? Size(reader, bytes, field + ".max_bytes") : 0,
                MaxEvents = s.TryGetValue("max_events", out var events) ? Size(reader, events, field + ".max_events", units: false) : 0,
                DuplicateWindow = s.TryGetValue("duplicate_window", out var window) ? Duration(reader, window, field + ".duplicate_window") : TimeSpan.FromMinutes(2),
                Fsync = !s.TryGetValue("fsync", out var fsync) || reader.OneOf(fsync, field + ".fsync", ["true", "false"]) == "true",
            });
        }

        return streams;
    }

    private static TimeSpan Duration(Reader reader, YamlNode node, string field)
    {
        var text = reader.String(node, field).Trim();
        var (digits, unit) = text.Length > 0 && char.IsAsciiLetter(text[^1]) ? (text[..^1], text[^1]) : (text, 'x');
        if (long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            switch (unit)
            {
                case 'x': return TimeSpan.FromMilliseconds(n);
                case 's': return TimeSpan.FromSeconds(n);
                case 'm': return TimeSpan.FromMinutes(n);
                case 'h': return TimeSpan.FromHours(n);
                case 'd': return TimeSpan.FromDays(n);
                default: break;
            }
        }

        throw reader.Error(node, field, $"expected a duration such as 90s, 30m, 24h, 7d or a number of milliseconds; got '{text}'");
    }

    private static long Size(Reader reader, YamlNode node, string field, bool units = true)
    {
        var text = reader.String(node, field).Trim();
        var ok = units ? BridgeLimits.TryParseBytes(text, out var n) : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out n);
        return ok
            ? n
            : throw reader.Error(node, field, units ? $"expected a size such as 1048576, 512MiB or 10GiB; got '{text}'" : $"expected a whole number; got '{text}'");
    }

    private static readonly string[] PermissionKinds = ["publish", "subscribe", "provide", "call", "memory_read", "memory_write", "collaboration"];

    /// <summary>
    /// <c>permissions: { IDENTITY: { allow: { publish: [...], ... }, deny: { ... } } }</c>: topic patterns are
    /// checked here, so a typo is a load error pointing at the line rather than a rule that never matches.
    /// </summary>
    private static Dictionary<string, Loom.Bridge.IdentityPermissions> ReadPermissions(Reader reader, YamlNode node)
    {
        var result = new Dictionary<string, Loom.Bridge.IdentityPermissions>(StringComparer.Ordinal);
        foreach (var (key, value) in reader.Mapping(node, "permissions").Children)
        {
            var identity = reader.String(key, "permissions");
            var field = "permissions." + identity;
            var entry = reader.Keys(reader.Mapping(value, field), field, "allow", "deny", "limits");
            result[identity] = new Loom.Bridge.IdentityPermissions
            {
                Allow = entry.TryGetValue("allow", out var allow) ? Grants(allow, field + ".allow") : new(),
                Deny = entry.TryGetValue("deny", out var deny) ? Grants(deny, field + ".deny") : new(),
                Limits = entry.TryGetValue("limits", out var limits) ? Limits(limits, field + ".limits") : new(),
            };
        }

        return result;

        Loom.Bridge.IdentityLimits Limits(YamlNode limitsNode, string limitsField)
        {
            var l = reader.Keys(reader.Mapping(limitsNode, limitsField), limitsField, "publishes_per_second", "publish_burst", "calls_per_second", "call_burst", "max_subscriptions", "max_capabilities", "max_memory_bytes");
            int? Count(string key) => l.TryGetValue(key, out var n) ? reader.Int(n, limitsField + "." + key, 1, 10_000_000) : null;
            long? Bytes(string key)
            {
                if (!l.TryGetValue(key, out var n))
                {
                    return null;
                }

                var text = reader.String(n, limitsField + "." + key);
                return BridgeLimits.TryParseBytes(text, out var bytes) && bytes > 0 ? bytes : throw reader.Error(n, limitsField + "." + key, $"expected a byte size such as 1048576 or 64MiB, got '{text}'");
            }

            return new Loom.Bridge.IdentityLimits
            {
                PublishesPerSecond = Count("publishes_per_second"),
                PublishBurst = Count("publish_burst"),
                CallsPerSecond = Count("calls_per_second"),
                CallBurst = Count("call_burst"),
                MaxSubscriptions = Count("max_subscriptions"),
                MaxCapabilities = Count("max_capabilities"),
                MaxMemoryBytes = Bytes("max_memory_bytes"),
            };
        }

        Loom.Bridge.PermissionGrants Grants(YamlNode grantsNode, string grantsField)
        {
            var g = reader.Keys(reader.Mapping(grantsNode, grantsField), grantsField, PermissionKinds);
            string[] List(string kind)
            {
                if (!g.TryGetValue(kind, out var listNode))
                {
                    return [];
                }

                var values = reader.Strings(listNode, grantsField + "." + kind);
                if (kind is "publish" or "subscribe")
                {
                    foreach (var pattern in values)
                    {
                        if (TopicPatternReason(pattern) is { } reason)
                        {
                            throw reader.Error(listNode, grantsField + "." + kind, $"'{pattern}' is not a topic pattern: {reason}");
                        }
                    }
                }
                else if (kind == "collaboration" && values.FirstOrDefault(v => v is not ("gather" or "barrier" or "contract_net" or "*")) is { } unknown)
                {
                    throw reader.Error(listNode, grantsField + "." + kind, $"'{unknown}' is not a collaboration operation; use gather, barrier, contract_net or *");
                }

                return values;
            }

            return new Loom.Bridge.PermissionGrants
            {
                Publish = List("publish"),
                Subscribe = List("subscribe"),
                Provide = List("provide"),
                Call = List("call"),
                MemoryRead = List("memory_read"),
                MemoryWrite = List("memory_write"),
                Collaboration = List("collaboration"),
            };
        }
    }

    /// <summary>Replaces <c>${NAME}</c> with the value of <paramref name="variables"/> or the process environment (empty when unset).</summary>
    public static string Interpolate(string text, IReadOnlyDictionary<string, string> variables) =>
        Interpolation().Replace(text, m => variables.TryGetValue(m.Groups[1].Value, out var v) ? v : Environment.GetEnvironmentVariable(m.Groups[1].Value) ?? "");

    private static BridgeSpec ReadBridge(Reader reader, YamlNode? node, string baseDirectory)
    {
        if (node is null)
        {
            return new BridgeSpec(null, null, "127.0.0.1", 0, 0, 5000);
        }

        string[] known = ["url", "http_url", "host", "grpc_port", "http_port", "heartbeat_ms", "metric_topic_groups", "grpc_reflection", "tls_cert", "tls_key", "tls_client_ca", "auth", "token_key", "metrics_open", "admin_identities", "read_only_identities", "mcp_allowed_hosts", "insecure", "audit_log", "audit_reads", "dashboard", .. BridgeLimits.Bridge.Select(l => l.Key), "memory"];
        var b = reader.Keys(reader.Mapping(node, "bridge"), "bridge", known);
        var limits = new Dictionary<string, long>(StringComparer.Ordinal);
        ReadLimits(b, BridgeLimits.Bridge, "", "bridge.");
        if (b.TryGetValue("memory", out var memoryNode))
        {
            var memory = BridgeLimits.Memory.ToList();
            ReadLimits(reader.Keys(reader.Mapping(memoryNode, "bridge.memory"), "bridge.memory", [.. memory.Select(l => l.Key["memory.".Length..])]), memory, "memory.", "bridge.");
        }

        string? url = b.TryGetValue("url", out var u) ? reader.AbsoluteUrl(u, "bridge.url") : null;
        string? httpUrl = b.TryGetValue("http_url", out var h) ? reader.AbsoluteUrl(h, "bridge.http_url") : null;
        return new BridgeSpec(
            url,
            httpUrl,
            b.TryGetValue("host", out var host) ? reader.String(host, "bridge.host") : "127.0.0.1",
            b.TryGetValue("grpc_port", out var gp) ? reader.Int(gp, "bridge.grpc_port", 0, 65535) : 0,
            b.TryGetValue("http_port", out var hp) ? reader.Int(hp, "bridge.http_port", 0, 65535) : 0,
            b.TryGetValue("heartbeat_ms", out var hb) ? reader.Int(hb, "bridge.heartbeat_ms", 100, 60000) : 5000,
            b.TryGetValue("metric_topic_groups", out var groups) ? ReadTopicGroups(reader, groups) : null,
            b.TryGetValue("grpc_reflection", out var reflection) ? reader.OneOf(reflection, "bridge.grpc_reflection", ["true", "false"]) == "true" : null,
            limits,
            new BridgeSecuritySpec(
                PathOf("tls_cert"),
                PathOf("tls_key"),
                PathOf("tls_client_ca"),
                b.TryGetValue("auth", out var auth) ? reader.OneOf(auth, "bridge.auth", ["off", "optional", "required"]) : null,
                TokenKeyPath(),
                b.TryGetValue("metrics_open", out var metricsOpen) && reader.OneOf(metricsOpen, "bridge.metrics_open", ["true", "false"]) == "true",
                b.TryGetValue("admin_identities", out var admins) ? reader.Strings(admins, "bridge.admin_identities") : null,
                b.TryGetValue("read_only_identities", out var readers) ? reader.Strings(readers, "bridge.read_only_identities") : null,
                b.TryGetValue("mcp_allowed_hosts", out var mcpHosts) ? reader.Strings(mcpHosts, "bridge.mcp_allowed_hosts") : null,
                b.TryGetValue("insecure", out var insecure) && reader.OneOf(insecure, "bridge.insecure", ["true", "false"]) == "true"),
            ReadAudit(),
            b.TryGetValue("dashboard", out var dashboard) ? reader.OneOf(dashboard, "bridge.dashboard", ["true", "false"]) == "true" : null);

        BridgeAuditSpec? ReadAudit()
        {
            var off = b.TryGetValue("audit_log", out var log) && reader.String(log, "bridge.audit_log") == "off";
            var reads = b.TryGetValue("audit_reads", out var r) && reader.OneOf(r, "bridge.audit_reads", ["true", "false"]) == "true";
            return log is null && !reads ? null : new BridgeAuditSpec(off ? null : PathOf("audit_log"), off, reads);
        }

        string? PathOf(string key) => b.TryGetValue(key, out var value) ? System.IO.Path.GetFullPath(reader.String(value, "bridge." + key), baseDirectory) : null;

        // The token key's path, never the key: a key pasted here would be a secret in loom.yaml.
        string? TokenKeyPath()
        {
            if (PathOf("token_key") is not { } resolved)
            {
                return null;
            }

            var given = b["token_key"];
            return SecretFields.TokenKeyProblem(reader.String(given, "bridge.token_key"), resolved) is { } problem ? throw reader.Error(given, "bridge.token_key", problem) : resolved;
        }

        void ReadLimits(Dictionary<string, YamlNode> given, IEnumerable<BridgeLimit> candidates, string prefix, string fieldPrefix)
        {
            foreach (var limit in candidates)
            {
                if (given.TryGetValue(limit.Key[prefix.Length..], out var value))
                {
                    var text = reader.String(value, fieldPrefix + limit.Key);
                    limits[limit.Key] = limit.TryParse(text, out var parsed, out var problem) ? parsed : throw reader.Error(value, fieldPrefix + limit.Key, problem);
                }
            }
        }
    }

    /// <summary>Why <paramref name="pattern"/> cannot be a metric topic group (the core's own explanation), or null when it can.</summary>
    public static string? TopicPatternProblem(string pattern) =>
        TopicPatternReason(pattern) is { } reason ? $"'{pattern}' is not a topic pattern: {reason}" : null;

    /// <summary>Why <paramref name="pattern"/> is not a topic pattern; null when it is one.</summary>
    public static string? TopicPatternReason(string pattern)
    {
        try
        {
            Loom.Core.Topics.ValidatePattern(pattern);
            return null;
        }
        catch (Loom.Core.InvalidParamsException ex)
        {
            return ex.Message;
        }
    }

    /// <summary>Topic patterns that name the metric label of the topics they match (instead of each topic's first token).</summary>
    private static string[] ReadTopicGroups(Reader reader, YamlNode node)
    {
        var list = reader.Sequence(node, "bridge.metric_topic_groups");
        var patterns = new string[list.Children.Count];
        for (var i = 0; i < patterns.Length; i++)
        {
            var field = $"bridge.metric_topic_groups[{i}]";
            var pattern = reader.String(list.Children[i], field);
            if (TopicPatternProblem(pattern) is { } problem)
            {
                throw reader.Error(list.Children[i], field, problem);
            }

            patterns[i] = pattern;
        }

        return patterns;
    }

    private static AgentSpec ReadAgent(Reader reader, YamlNode node, string field, string directory)
    {
        var a = reader.Keys(reader.Mapping(node, field), field, "name", "language", "command", "cwd", "env", "restart", "max_restarts", "setup", "watch");
        if (!a.TryGetValue("name", out var nameNode))
        {
            throw reader.Error(node, field + ".name", "missing: every agent needs a name (lower-case letters, digits, '-')");
        }

        var name = reader.String(nameNode, field + ".name");
        if (!AgentNamePattern().IsMatch(name))
        {
            throw reader.Error(nameNode, field + ".name", $"'{name}' is not a valid agent name: use lower-case letters, digits and '-', starting with a letter");
        }

        if (!a.TryGetValue("command", out var commandNode))
        {
            throw reader.Error(node, field + ".command", $"missing: how to start '{name}', e.g. 'python3 agent.py'");
        }

        var command = commandNode is YamlSequenceNode parts
            ? string.Join(' ', parts.Children.Select((p, i) => ShellQuote(reader.String(p, $"{field}.command[{i}]"))))
            : reader.String(commandNode, field + ".command");
        if (string.IsNullOrWhiteSpace(command))
        {
            throw reader.Error(commandNode, field + ".command", "empty");
        }

        var language = a.TryGetValue("language", out var languageNode) ? reader.OneOf(languageNode, field + ".language", Languages) : "other";
        var cwd = directory;
        if (a.TryGetValue("cwd", out var cwdNode))
        {
            cwd = System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, reader.String(cwdNode, field + ".cwd")));
            if (!System.IO.Directory.Exists(cwd))
            {
                throw reader.Error(cwdNode, field + ".cwd", $"directory '{cwd}' does not exist");
            }
        }

        var restart = RestartPolicy.Never;
        if (a.TryGetValue("restart", out var restartNode))
        {
            restart = reader.OneOf(restartNode, field + ".restart", ["never", "on-failure", "always"]) switch
            {
                "on-failure" => RestartPolicy.OnFailure,
                "always" => RestartPolicy.Always,
                _ => RestartPolicy.Never,
            };
        }

        SetupSpec? setup = null;
        if (a.TryGetValue("setup", out var setupNode))
        {
            if (setupNode is YamlScalarNode)
            {
                setup = new SetupSpec(reader.String(setupNode, field + ".setup"), []);
            }
            else
            {
                var s = reader.Keys(reader.Mapping(setupNode, field + ".setup"), field + ".setup", "command", "inputs");
                if (!s.TryGetValue("command", out var sc))
                {
                    throw reader.Error(setupNode, field + ".setup.command", "missing: the command to run before starting the agent");
                }

                setup = new SetupSpec(reader.String(sc, field + ".setup.command"), s.TryGetValue("inputs", out var inputs) ? reader.Strings(inputs, field + ".setup.inputs") : []);
            }
        }

        return new AgentSpec(
            name,
            language,
            command,
            cwd,
            a.TryGetValue("env", out var envNode) ? reader.Env(envNode, field + ".env", secrets: true) : new Dictionary<string, string>(),
            restart,
            a.TryGetValue("max_restarts", out var mr) ? reader.Int(mr, field + ".max_restarts", 0, 1000) : 3,
            setup,
            a.TryGetValue("watch", out var watch) ? reader.Strings(watch, field + ".watch") : [],
            (int)node.Start.Line);
    }

    private static McpServerSpec ReadMcpServer(Reader reader, YamlNode node, string field, string directory)
    {
        var m = reader.Keys(reader.Mapping(node, field), field, "name", "transport", "command", "args", "env", "cwd", "url", "headers_from_env", "call_timeout_ms", "connect_timeout_ms", "ping_interval_ms", "restart_initial_delay_ms", "restart_max_delay_ms");
        if (!m.TryGetValue("name", out var nameNode))
        {
            throw reader.Error(node, field + ".name", "missing: the server's name prefixes its tools (name:tool)");
        }

        var transport = m.TryGetValue("transport", out var t) ? reader.OneOf(t, field + ".transport", ["stdio", "http"]) : m.ContainsKey("url") ? "http" : "stdio";
        if (transport == "stdio" && !m.ContainsKey("command"))
        {
            throw reader.Error(node, field + ".command", "missing: a stdio MCP server needs the command that starts it");
        }

        if (transport == "http" && !m.ContainsKey("url"))
        {
            throw reader.Error(node, field + ".url", "missing: an http MCP server needs its URL");
        }

        return new McpServerSpec(
            reader.String(nameNode, field + ".name"),
            transport,
            m.TryGetValue("command", out var c) ? reader.String(c, field + ".command") : null,
            m.TryGetValue("args", out var args) ? reader.Strings(args, field + ".args") : [],
            m.TryGetValue("env", out var env) ? reader.Env(env, field + ".env", secrets: true) : new Dictionary<string, string>(),
            m.TryGetValue("cwd", out var cwd) ? System.IO.Path.GetFullPath(System.IO.Path.Combine(directory, reader.String(cwd, field + ".cwd"))) : null,
            m.TryGetValue("url", out var url) ? reader.AbsoluteUrl(url, field + ".url") : null,
            m.TryGetValue("headers_from_env", out var headers) ? reader.Env(headers, field + ".headers_from_env") : new Dictionary<string, string>(),
            Millis("call_timeout_ms"),
            Millis("connect_timeout_ms"),
            Millis("ping_interval_ms"),
            Millis("restart_initial_delay_ms"),
            Millis("restart_max_delay_ms"),
            (int)node.Start.Line);

        int? Millis(string key) => m.TryGetValue(key, out var value) ? reader.Int(value, $"{field}.{key}", 1, 3_600_000) : null;
    }

    private static string ShellQuote(string part) =>
        part.Length > 0 && part.All(ch => char.IsAsciiLetterOrDigit(ch) || "-_./=:@%+,".Contains(ch, StringComparison.Ordinal)) ? part : "'" + part.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private static Exception Inner(Exception ex) => ex.InnerException is { } inner ? Inner(inner) : ex;

    /// <summary>Typed reads of nodes; every failure names the node's position and field.</summary>
    private sealed class Reader(string file)
    {
        public ProjectFileException Error(YamlNode? node, string field, string problem) =>
            new(file, node?.Start.Line ?? 1, node?.Start.Column ?? 1, field, problem);

        public Dictionary<string, YamlNode> Keys(YamlMappingNode map, string field, params string[] known)
        {
            var result = new Dictionary<string, YamlNode>(StringComparer.Ordinal);
            foreach (var (keyNode, value) in map.Children)
            {
                var key = String(keyNode, field);
                var at = field.Length == 0 ? key : $"{field}.{key}";
                if (!known.Contains(key, StringComparer.Ordinal))
                {
                    var near = known.OrderBy(k => Distance(k, key)).First();
                    throw Error(keyNode, at, $"unknown key{(Distance(near, key) <= 3 ? $" (did you mean '{near}'?)" : "")}; known keys here: {string.Join(", ", known)}");
                }

                if (!result.TryAdd(key, value))
                {
                    throw Error(keyNode, at, "given twice");
                }
            }

            return result;
        }

        public YamlMappingNode Mapping(YamlNode node, string field) =>
            node as YamlMappingNode ?? throw Error(node, field, $"expected a mapping (key: value lines), got {Kind(node)}");

        public YamlSequenceNode Sequence(YamlNode node, string field) =>
            node as YamlSequenceNode ?? throw Error(node, field, $"expected a list ('- ' items), got {Kind(node)}");

        public string String(YamlNode node, string field) =>
            node is YamlScalarNode { Value: { } value } ? value : throw Error(node, field, $"expected a text value, got {Kind(node)}");

        public string[] Strings(YamlNode node, string field)
        {
            if (node is YamlScalarNode)
            {
                return [String(node, field)];
            }

            var list = Sequence(node, field);
            return list.Children.Select((c, i) => String(c, $"{field}[{i}]")).ToArray();
        }

        public int Int(YamlNode node, string field, int min, int max)
        {
            var text = String(node, field);
            return int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
                ? n
                : throw Error(node, field, $"expected a whole number from {min} to {max}, got '{text}'");
        }

        public string OneOf(YamlNode node, string field, string[] allowed)
        {
            var text = String(node, field);
            return allowed.Contains(text, StringComparer.Ordinal) ? text : throw Error(node, field, $"must be one of {string.Join(", ", allowed)}; got '{text}'");
        }

        public string AbsoluteUrl(YamlNode node, string field)
        {
            var text = String(node, field);
            return Uri.TryCreate(text, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
                ? text.TrimEnd('/')
                : throw Error(node, field, $"expected an absolute http:// or https:// URL, got '{text}'");
        }

        /// <summary>An environment mapping; with <paramref name="secrets"/>, a literal in a secret-named variable is an error (<see cref="SecretFields"/>).</summary>
        public Dictionary<string, string> Env(YamlNode node, string field, bool secrets = false)
        {
            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (key, value) in Mapping(node, field).Children)
            {
                var name = String(key, field);
                if (!EnvNamePattern().IsMatch(name))
                {
                    throw Error(key, $"{field}.{name}", "not an environment variable name (letters, digits, '_', not starting with a digit)");
                }

                result[name] = String(value, $"{field}.{name}");
                if (secrets && SecretFields.Problem(name, result[name]) is { } problem)
                {
                    throw Error(value, $"{field}.{name}", problem);
                }
            }

            return result;
        }

        private static string Kind(YamlNode node) => node switch
        {
            YamlMappingNode => "a mapping",
            YamlSequenceNode => "a list",
            YamlScalarNode { Value: null or "" } => "nothing",
            YamlScalarNode s => $"'{s.Value}'",
            _ => "an alias",
        };

        private static int Distance(string a, string b)
        {
            var d = new int[a.Length + 1, b.Length + 1];
            for (var i = 0; i <= a.Length; i++)
            {
                d[i, 0] = i;
            }

            for (var j = 0; j <= b.Length; j++)
            {
                d[0, j] = j;
            }

            for (var i = 1; i <= a.Length; i++)
            {
                for (var j = 1; j <= b.Length; j++)
                {
                    d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
                }
            }

            return d[a.Length, b.Length];
        }
    }
}
