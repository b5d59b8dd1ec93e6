using Loom.Cli.Internal;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>Secrets never live in loom.yaml: a literal in a secret field is a load error at its line, and the message never repeats it.</summary>
public sealed class SecretFieldTests
{
    private static ProjectFile Parse(string yaml) => ProjectFileLoader.Parse(yaml, "loom.yaml", Path.GetTempPath());

    [Theory]
    [InlineData("OPENAI_API_KEY", true)]
    [InlineData("apiKey", true)]
    [InlineData("db-password", true)]
    [InlineData("GITHUB_TOKEN", true)]
    [InlineData("CLIENT_SECRET", true)]
    [InlineData("AWS_CREDENTIALS", true)]
    [InlineData("SSH_KEY_FILE", false)]
    [InlineData("TOKEN_PATH", false)]
    [InlineData("MAX_TOKENS", false)]
    [InlineData("MONKEY", false)]
    [InlineData("PYTHONPATH", false)]
    [InlineData("LOOM_URL", false)]
    public void Secret_names_are_told_by_their_words(string name, bool secret) => Assert.Equal(secret, SecretFields.IsSecretName(name));

    [Fact]
    public void A_literal_api_key_in_an_agents_env_is_an_error_at_its_line_that_does_not_repeat_it()
    {
        var ex = Assert.Throws<ProjectFileException>(() => Parse("""
            agents:
              - name: a
                command: x
                env:
                  LOOM_LLM_MODEL: gpt-4o-mini
                  OPENAI_API_KEY: sk-live-0123456789abcdef
            """));
        Assert.StartsWith("loom.yaml:6:23: agents[0].env.OPENAI_API_KEY: holds a literal secret", ex.Message, StringComparison.Ordinal);
        Assert.Contains("'${OPENAI_API_KEY}'", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("sk-live", ex.Message, StringComparison.Ordinal);
        Assert.Equal(6, ex.Line);
    }

    [Fact]
    public void Environment_references_paths_and_empty_values_are_accepted_and_resolved_at_run()
    {
        var project = Parse("""
            agents:
              - name: a
                command: x
                env:
                  OPENAI_API_KEY: ${OPENAI_API_KEY}
                  AUTH_HEADER_TOKEN: "Bearer ${SERVICE_TOKEN}"
                  SSH_KEY_FILE: /home/me/.ssh/id_ed25519
                  MAX_TOKENS: "500"
                  ANTHROPIC_API_KEY: ""
            """);
        var env = project.Agents[0].Env;
        Assert.Equal("${OPENAI_API_KEY}", env["OPENAI_API_KEY"]);
        Assert.Equal("sk-from-env", ProjectFileLoader.Interpolate(env["OPENAI_API_KEY"], new Dictionary<string, string> { ["OPENAI_API_KEY"] = "sk-from-env" }));
        Assert.Equal("500", env["MAX_TOKENS"]);
    }

    [Fact]
    public void Mcp_server_env_and_parameter_defaults_are_checked_too_and_headers_from_env_name_variables()
    {
        var ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\nmcp_servers:\n  - name: gh\n    command: gh-mcp\n    env:\n      GITHUB_TOKEN: ghp_abcdef\n"));
        Assert.StartsWith("loom.yaml:8:21: mcp_servers[0].env.GITHUB_TOKEN: holds a literal secret", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ProjectFileException>(() => Parse("agents:\n  - name: a\n    command: x\nparams:\n  key:\n    env: BRAVE_API_KEY\n    default: abc123\n"));
        Assert.StartsWith("loom.yaml:7:14: params.key.default: holds a literal secret", ex.Message, StringComparison.Ordinal);
        // headers_from_env maps a header to the NAME of a variable: not a secret.
        var project = Parse("agents:\n  - name: a\n    command: x\nmcp_servers:\n  - name: r\n    url: http://127.0.0.1:1/mcp\n    headers_from_env: { Api_Key: REMOTE_KEY }\n");
        Assert.Equal("REMOTE_KEY", project.McpServers[0].HeadersFromEnv["Api_Key"]);
    }

    [Fact]
    public void A_key_pasted_as_the_token_key_path_is_an_error_a_path_is_not()
    {
        var key = Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var ex = Assert.Throws<ProjectFileException>(() => Parse($"bridge:\n  auth: required\n  token_key: {key}\nagents:\n  - name: a\n    command: x\n"));
        Assert.StartsWith("loom.yaml:3:14: bridge.token_key: looks like a key, not the path of a key file", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(key, ex.Message, StringComparison.Ordinal);
        var project = Parse("bridge:\n  auth: required\n  token_key: .loom/keys/token.key\nagents:\n  - name: a\n    command: x\n");
        Assert.EndsWith(Path.Combine(".loom", "keys", "token.key"), project.Bridge.Security!.TokenKey, StringComparison.Ordinal);
    }
}
