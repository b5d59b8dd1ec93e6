using System.ClientModel;
using System.ClientModel.Primitives;
using Anthropic;
using Microsoft.Extensions.AI;
using OpenAI;

namespace Loom.Llm.Internal;

/// <summary>A configured provider: its Microsoft.Extensions.AI clients and its concurrency limit.</summary>
internal sealed class ProviderClient : IDisposable
{
    private readonly OpenAIClient? _openai;
    private readonly AnthropicClient? _anthropic;
    private readonly Dictionary<string, IChatClient> _chat = new(StringComparer.Ordinal);
    private readonly Dictionary<string, IEmbeddingGenerator<string, Embedding<float>>> _embed = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public ProviderClient(LlmProviderOptions options, Func<string, string?> env)
    {
        Options = options;
        Slots = new SemaphoreSlim(options.MaxConcurrency, options.MaxConcurrency);
        var key = options.ApiKeyEnv is { Length: > 0 } name ? env(name) : null;
        if (options.Kind == LlmProviderKind.OpenAI)
        {
            var clientOptions = new OpenAIClientOptions
            {
                RetryPolicy = new ClientRetryPolicy(maxRetries: 0), // the gateway retries (and falls back) itself
                NetworkTimeout = options.Timeout,
            };
            if (options.BaseUrl is { } url)
            {
                clientOptions.Endpoint = url;
            }

            // A local OpenAI-compatible server needs no key, but the client insists on one.
            _openai = new OpenAIClient(new ApiKeyCredential(string.IsNullOrEmpty(key) ? "unused" : key), clientOptions);
        }
        else
        {
            _anthropic = new AnthropicClient
            {
                ApiKey = string.IsNullOrEmpty(key) ? "unused" : key,
                BaseUrl = options.BaseUrl?.ToString().TrimEnd('/') ?? "https://api.anthropic.com",
                MaxRetries = 0,
                Timeout = options.Timeout,
            };
        }
    }

    public LlmProviderOptions Options { get; }

    /// <summary>Upstream requests allowed at once (max_concurrency).</summary>
    public SemaphoreSlim Slots { get; }

    public IChatClient Chat(string modelId)
    {
        lock (_gate)
        {
            if (!_chat.TryGetValue(modelId, out var client))
            {
                client = _openai is not null
                    ? _openai.GetChatClient(modelId).AsIChatClient()
                    : _anthropic!.AsIChatClient(modelId, defaultMaxOutputTokens: 1024);
                _chat[modelId] = client;
            }

            return client;
        }
    }

    public IEmbeddingGenerator<string, Embedding<float>> Embed(string modelId)
    {
        lock (_gate)
        {
            if (!_embed.TryGetValue(modelId, out var generator))
            {
                generator = (_openai ?? throw new InvalidOperationException($"Provider '{Options.Name}' has no embeddings API.")).GetEmbeddingClient(modelId).AsIEmbeddingGenerator();
                _embed[modelId] = generator;
            }

            return generator;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var c in _chat.Values)
            {
                c.Dispose();
            }

            foreach (var e in _embed.Values)
            {
                e.Dispose();
            }
        }

        Slots.Dispose();
    }
}

/// <summary>How an upstream failure is treated.</summary>
internal static class UpstreamErrors
{
    /// <summary>The HTTP status of an upstream failure, when one is known.</summary>
    public static int? StatusOf(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case ClientResultException cre when cre.Status != 0:
                    return cre.Status;
                case HttpRequestException { StatusCode: { } code }:
                    return (int)code;
            }

            for (var t = e.GetType(); t is not null && t != typeof(Exception); t = t.BaseType)
            {
                if (t.Name.Contains("RateLimit", StringComparison.Ordinal))
                {
                    return 429;
                }

                if (t.Name == "Anthropic5xxException")
                {
                    return 500;
                }

                if (t.Name == "Anthropic4xxException")
                {
                    return 400;
                }
            }
        }

        return null;
    }

    /// <summary>Worth trying again on the same model: no status (network), 408, 409, 429, 5xx.</summary>
    public static bool Retryable(Exception ex) => StatusOf(ex) is null or 408 or 409 or 429 or >= 500;

    /// <summary>A short label for metrics: http_429, http_5xx, timeout, network, ...</summary>
    public static string Kind(Exception ex) => StatusOf(ex) switch
    {
        { } s and >= 500 => "http_5xx",
        { } s => "http_" + s.ToString(System.Globalization.CultureInfo.InvariantCulture),
        null when ex is TimeoutException or TaskCanceledException or OperationCanceledException => "timeout",
        null => "network",
    };

    /// <summary>What the caller is told (never the key; the provider's message is cut short).</summary>
    public static string Describe(Exception ex)
    {
        var message = ex.Message.ReplaceLineEndings(" ");
        if (message.Length > 300)
        {
            message = message[..300] + "…";
        }

        return StatusOf(ex) is { } status ? $"HTTP {status}: {message}" : message;
    }
}
