using System.CommandLine;
using System.Text.Json;
using Loom.Cli.Internal;
using Spectre.Console;

namespace Loom.Cli.Commands;

/// <summary><c>loom list</c>: agents, topics and capabilities of a running bridge.</summary>
internal static class ListCommand
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Command Create()
    {
        var url = CliOptions.Url(
            "--url",
            "HTTP address of the bridge (its --http-port). Default: $LOOM_HTTP_URL, else the bridge of a 'loom run' or 'loom dev' of this directory (its .loom/bridge.json), else http://127.0.0.1:7071.",
            "http://127.0.0.1:7071");
        var json = CliOptions.Flag("--json", "Print JSON ({agents, capabilities}) instead of tables.");
        var token = BridgeCredentials.TokenOption();
        var command = new Command("list", "List the agents, topics and capabilities of a running bridge.") { url, json, token };
        command.SetAction(async (parse, cancellationToken) =>
        {
            string baseUrl, source;
            try
            {
                baseUrl = BridgeLocator.Resolve(parse.GetValue(url), "LOOM_HTTP_URL", http: true, "http://127.0.0.1:7071", out source);
            }
            catch (AmbiguousRunException ex)
            {
                await Console.Error.WriteLineAsync($"loom list: {ex.Message}");
                return 2;
            }

            if (!Uri.TryCreate(baseUrl, UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
            {
                await Console.Error.WriteLineAsync($"loom list: the bridge address ({source}) must be an absolute http:// URL, not '{baseUrl}'");
                return 2;
            }

            using var http = BridgeCredentials.Http(BridgeCredentials.Token(parse.GetValue(token)), TimeSpan.FromSeconds(10));
            JsonDocument agents, capabilities;
            try
            {
                // Both read before either is parsed: a failure leaves nothing to dispose.
                var agentsText = await http.GetStringAsync(new Uri(address, "/v1/agents"), cancellationToken);
                var capabilitiesText = await http.GetStringAsync(new Uri(address, "/v1/capabilities"), cancellationToken);
                agents = JsonDocument.Parse(agentsText);
                capabilities = JsonDocument.Parse(capabilitiesText);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or JsonException)
            {
                await Console.Error.WriteLineAsync($"loom list: cannot read the bridge at {baseUrl} ({source}): {ex.Message} (is it running? --url is its HTTP port, e.g. http://127.0.0.1:7071; with auth on, --token or LOOM_TOKEN, and LOOM_TLS_CA for https)");
                return 1;
            }

            using (agents)
            using (capabilities)
            {
                if (parse.GetValue(json))
                {
                    var output = new Dictionary<string, JsonElement>
                    {
                        ["agents"] = agents.RootElement.GetProperty("agents"),
                        ["capabilities"] = capabilities.RootElement.GetProperty("capabilities"),
                    };
                    Console.WriteLine(JsonSerializer.Serialize(output, Indented));
                    return 0;
                }

                PrintTables(agents.RootElement.GetProperty("agents"), capabilities.RootElement.GetProperty("capabilities"));
                return 0;
            }
        });
        return command;
    }

    private static void PrintTables(JsonElement agents, JsonElement capabilities)
    {
        var agentTable = new Table().Title("agents").AddColumns("agent", "state", "sdk", "topics", "capabilities", "last seen");
        foreach (var a in agents.EnumerateArray())
        {
            var topics = a.GetProperty("topics").EnumerateArray().Select(t => t.GetString()!).Where(t => !t.StartsWith("_inbox.", StringComparison.Ordinal));
            var state = a.GetProperty("state").GetString()!;
            agentTable.AddRow(
                Markup.Escape(a.GetProperty("agent_id").GetString()!),
                state == "connected" ? "[green]connected[/]" : $"[yellow]{Markup.Escape(state)}[/]",
                Markup.Escape(a.GetProperty("sdk").GetString()!),
                Markup.Escape(string.Join("\n", topics)),
                Markup.Escape(string.Join("\n", a.GetProperty("capabilities").EnumerateArray().Select(c => c.GetString()))),
                $"{a.GetProperty("last_seen_ms").GetInt64() / 1000.0:0.0} s ago");
        }

        var capabilityTable = new Table().Title("capabilities").AddColumns("capability", "version", "providers", "calls", "description");
        foreach (var c in capabilities.EnumerateArray())
        {
            var providers = c.GetProperty("providers").EnumerateArray().ToArray();
            capabilityTable.AddRow(
                Markup.Escape(c.GetProperty("name").GetString()!),
                Markup.Escape(c.GetProperty("version").GetString()!),
                Markup.Escape(string.Join("\n", providers.Select(p => p.GetProperty("agent_id").GetString() + (p.GetProperty("healthy").GetBoolean() ? "" : " (unhealthy)")))),
                providers.Sum(p => p.GetProperty("calls").GetInt64()).ToString(System.Globalization.CultureInfo.InvariantCulture),
                Markup.Escape(c.GetProperty("description").GetString() ?? ""));
        }

        AnsiConsole.Write(agentTable);
        AnsiConsole.Write(capabilityTable);
    }
}
