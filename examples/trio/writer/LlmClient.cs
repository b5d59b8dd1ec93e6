using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Loom.Examples.Trio.Writer;

/// <summary>
/// Text generation through an OpenAI-compatible (<c>/chat/completions</c>) or Anthropic
/// (<c>/v1/messages</c>) endpoint, configured only by environment variables:
/// <c>LOOM_LLM_PROVIDER</c> (openai | anthropic; default: whichever key is set),
/// <c>OPENAI_API_KEY</c> + <c>OPENAI_BASE_URL</c>, or <c>ANTHROPIC_API_KEY</c> + <c>ANTHROPIC_BASE_URL</c>,
/// and <c>LOOM_LLM_MODEL</c>. Keys are sent in headers and never logged.
/// </summary>
internal sealed class LlmClient : IDisposable
{
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(60) };
    private readonly string _provider;
    private readonly string _key;
    private readonly Uri _endpoint;

    private LlmClient(string provider, string key, Uri endpoint, string model)
    {
        _provider = provider;
        _key = key;
        _endpoint = endpoint;
        Model = model;
    }

    public string Model { get; }

    public string Description => $"LLM: {_provider} {Model}";

    /// <summary>The configured client, or null when no key is set (the Writer then works offline).</summary>
    public static LlmClient? FromEnvironment()
    {
        static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        var provider = Env("LOOM_LLM_PROVIDER") ?? (Env("ANTHROPIC_API_KEY") is not null ? "anthropic" : Env("OPENAI_API_KEY") is not null ? "openai" : null);
        return provider switch
        {
            "anthropic" when Env("ANTHROPIC_API_KEY") is { } key => new LlmClient(
                "anthropic", key, new Uri((Env("ANTHROPIC_BASE_URL") ?? "https://api.anthropic.com").TrimEnd('/') + "/v1/messages"), Env("LOOM_LLM_MODEL") ?? "claude-3-5-haiku-latest"),
            "openai" when Env("OPENAI_API_KEY") is { } key => new LlmClient(
                "openai", key, new Uri((Env("OPENAI_BASE_URL") ?? "https://api.openai.com/v1").TrimEnd('/') + "/chat/completions"), Env("LOOM_LLM_MODEL") ?? "gpt-4o-mini"),
            _ => null,
        };
    }

    public async Task<string> CompleteAsync(string system, string user, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _endpoint);
        JsonObject body;
        if (_provider == "anthropic")
        {
            request.Headers.Add("x-api-key", _key);
            request.Headers.Add("anthropic-version", "2023-06-01");
            body = new JsonObject
            {
                ["model"] = Model,
                ["max_tokens"] = 1500,
                ["system"] = system,
                ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = user }),
            };
        }
        else
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _key);
            body = new JsonObject
            {
                ["model"] = Model,
                ["temperature"] = 0.2,
                ["messages"] = new JsonArray(
                    new JsonObject { ["role"] = "system", ["content"] = system },
                    new JsonObject { ["role"] = "user", ["content"] = user }),
            };
        }

        request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json");
        using var response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"{_provider} answered {(int)response.StatusCode}: {Truncate(text, 300)}");
        }

        using var json = JsonDocument.Parse(text);
        return _provider == "anthropic"
            ? string.Concat(json.RootElement.GetProperty("content").EnumerateArray().Where(c => c.GetProperty("type").GetString() == "text").Select(c => c.GetProperty("text").GetString()))
            : json.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString() ?? "";
    }

    public void Dispose() => _http.Dispose();

    private static string Truncate(string text, int max) => text.Length <= max ? text : text[..max] + "…";
}
