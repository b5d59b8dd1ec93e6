namespace Loom.Llm.Tests;

/// <summary>Settings are checked up front, with messages that say what to fix.</summary>
public sealed class OptionsTests
{
    private static LlmOptions With(Func<LlmOptions, LlmOptions> change) => change(GatewayFixture.Options(new Uri("http://127.0.0.1:1")));

    [Fact]
    public void The_test_settings_are_valid() => GatewayFixture.Options(new Uri("http://127.0.0.1:1")).Validate();

    [Theory]
    [InlineData("unknown provider", "is not in llm.providers")]
    [InlineData("unknown fallback", "fallback")]
    [InlineData("anthropic embeddings", "no embeddings API")]
    [InlineData("key in env name", "environment variable")]
    [InlineData("default is embedding", "chat model is needed")]
    public void Wrong_settings_are_refused(string what, string message)
    {
        var options = what switch
        {
            "unknown provider" => new LlmOptions { Models = [new LlmModelOptions { Name = "m", Provider = "nope" }] },
            "unknown fallback" => With(o => new LlmOptions { Providers = o.Providers, Models = o.Models, Fallback = ["ghost"] }),
            "anthropic embeddings" => With(o => new LlmOptions { Providers = o.Providers, Models = [new LlmModelOptions { Name = "e", Provider = "anthropic-fake", Embedding = true }] }),
            "key in env name" => new LlmOptions { Providers = [new LlmProviderOptions { Name = "p", ApiKeyEnv = "sk-abc123-def" }] },
            "default is embedding" => With(o => new LlmOptions { Providers = o.Providers, Models = o.Models, DefaultModel = "embed" }),
            _ => throw new ArgumentOutOfRangeException(nameof(what)),
        };
        var error = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
