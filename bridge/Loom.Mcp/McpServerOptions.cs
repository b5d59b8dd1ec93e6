using System.Text.RegularExpressions;

namespace Loom.Mcp;

/// <summary>
/// One MCP server whose tools the bridge ingests as Loom capabilities named <c>{Name}:{tool}</c>.
/// A <c>stdio</c> server is a child process the bridge starts (and restarts with backoff when it
/// exits); an <c>http</c> server is reached over MCP streamable HTTP at <see cref="Url"/>.
/// </summary>
public sealed partial record McpServerOptions
{
    /// <summary>
    /// Short name, the prefix of the capability names (<c>fs</c> gives <c>fs:read_file</c>):
    /// 1-64 letters, digits, '_', '-' or '.'. Required.
    /// </summary>
    public string Name { get; init; } = "";

    /// <summary><c>stdio</c> (a child process, the default) or <c>http</c> (MCP streamable HTTP).</summary>
    public string Transport { get; init; } = "stdio";

    /// <summary>stdio: the program to start, e.g. <c>npx</c> or <c>/usr/bin/node</c> (found on PATH). Required for stdio.</summary>
    public string? Command { get; init; }

    /// <summary>stdio: its arguments. Default none.</summary>
    public IReadOnlyList<string> Args { get; init; } = [];

    /// <summary>
    /// stdio: environment variables set for the process, on top of the MCP SDK's default set
    /// (PATH, HOME and the like). <c>${VAR}</c> in a value is replaced by the bridge's own
    /// variable, so secrets stay out of the configuration file. Default none.
    /// </summary>
    public IReadOnlyDictionary<string, string> Env { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>stdio: working directory of the process; null for the bridge's. Default null.</summary>
    public string? WorkingDirectory { get; init; }

    /// <summary>http: the endpoint, e.g. <c>https://mcp.example.com/mcp</c>. Required for http.</summary>
    public Uri? Url { get; init; }

    /// <summary>
    /// http: request headers taken from environment variables, header name → variable name
    /// (<c>Authorization → GITHUB_MCP_AUTH</c>); the value itself never appears in the
    /// configuration. A variable that is not set fails the connection with a message naming it.
    /// Default none.
    /// </summary>
    public IReadOnlyDictionary<string, string> HeadersFromEnv { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>First wait before reconnecting (or restarting the process) after a failure; doubles up to <see cref="RestartMaxDelay"/>. Default 500 ms.</summary>
    public TimeSpan RestartInitialDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Longest wait between reconnection attempts. Default 30 s.</summary>
    public TimeSpan RestartMaxDelay { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Longest a single tool call may take at this server, whatever the caller's deadline (the
    /// shorter one wins; past this the call fails with TIMEOUT and is cancelled at the server).
    /// Default 2 min.
    /// </summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Time allowed to start the server and complete the MCP handshake and tools/list. Default 30 s.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often a connected server is pinged; a failed ping reconnects it (an HTTP server has no process to watch). Default 15 s.</summary>
    public TimeSpan PingInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>True for a stdio server.</summary>
    public bool IsStdio => string.Equals(Transport, "stdio", StringComparison.OrdinalIgnoreCase);

    [GeneratedRegex(@"^[A-Za-z0-9_.\-]{1,64}$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    /// <summary>Checks the settings; the message names the field and says what to write.</summary>
    /// <exception cref="ArgumentException">A setting is missing or wrong.</exception>
    public void Validate()
    {
        var where = string.IsNullOrEmpty(Name) ? "an MCP server" : $"MCP server '{Name}'";
        if (!NamePattern().IsMatch(Name ?? ""))
        {
            throw new ArgumentException($"{where}: name must be 1-64 letters, digits, '_', '-' or '.', e.g. 'fs' (tools become 'fs:<tool>').", nameof(Name));
        }

        if (IsStdio)
        {
            if (string.IsNullOrWhiteSpace(Command))
            {
                throw new ArgumentException($"{where}: a stdio server needs a command, e.g. 'npx' with args ['-y', '@modelcontextprotocol/server-everything'].", nameof(Command));
            }
        }
        else if (string.Equals(Transport, "http", StringComparison.OrdinalIgnoreCase))
        {
            if (Url is null || !Url.IsAbsoluteUri || (Url.Scheme != Uri.UriSchemeHttp && Url.Scheme != Uri.UriSchemeHttps))
            {
                throw new ArgumentException($"{where}: an http server needs an absolute http(s) url, e.g. 'http://127.0.0.1:3001/mcp'.", nameof(Url));
            }
        }
        else
        {
            throw new ArgumentException($"{where}: transport is '{Transport}'; use 'stdio' or 'http'.", nameof(Transport));
        }

        if (RestartInitialDelay <= TimeSpan.Zero || RestartMaxDelay < RestartInitialDelay)
        {
            throw new ArgumentException($"{where}: restart delays must be positive, the maximum not below the initial one.", nameof(RestartInitialDelay));
        }

        if (CallTimeout <= TimeSpan.Zero || ConnectTimeout <= TimeSpan.Zero || PingInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException($"{where}: call timeout, connect timeout and ping interval must be positive.", nameof(CallTimeout));
        }
    }
}
