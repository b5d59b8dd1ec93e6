using Microsoft.Extensions.Logging;

namespace Loom.Llm.Internal;

internal static partial class Log
{
    [LoggerMessage(201, LogLevel.Information, "LLM gateway serving llm.chat, llm.embed and llm.usage: {Models} models on {Providers} providers")]
    public static partial void Started(ILogger logger, int models, int providers);

    [LoggerMessage(202, LogLevel.Warning, "LLM upstream {Model} (provider {Provider}) failed on attempt {Attempt}: {Reason}")]
    public static partial void UpstreamFailed(ILogger logger, string model, string provider, int attempt, string reason);

    [LoggerMessage(203, LogLevel.Warning, "LLM model {Model} failed; falling back to {Next}")]
    public static partial void FallingBack(ILogger logger, string model, string next);

    [LoggerMessage(204, LogLevel.Warning, "LLM provider {Provider}: the environment variable {Variable} named by api_key_env is not set; requests go without a key")]
    public static partial void KeyMissing(ILogger logger, string provider, string variable);

    [LoggerMessage(205, LogLevel.Debug, "LLM stream event to {Topic} not published: {Reason}")]
    public static partial void StreamPublishFailed(ILogger logger, string topic, string reason);

    [LoggerMessage(206, LogLevel.Warning, "LLM response cache: a write to the cache log failed: {Reason}")]
    public static partial void CachePersistFailed(ILogger logger, string reason);

    [LoggerMessage(207, LogLevel.Information, "LLM response cache: {Entries} entries loaded from {Directory}")]
    public static partial void CacheLoaded(ILogger logger, int entries, string directory);

    [LoggerMessage(208, LogLevel.Warning, "LLM response cache: the cache log in {Directory} cannot be opened ({Reason}); the cache is kept in memory only")]
    public static partial void CacheOpenFailed(ILogger logger, string directory, string reason);
}
