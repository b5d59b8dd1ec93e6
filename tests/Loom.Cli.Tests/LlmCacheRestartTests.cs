using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Loom.LlmFake;
using Loom.Protocol.V1;
using Loom.Sdk;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// The LLM gateway's response cache survives a restart of a real `loom up` process when the
/// bridge has a data directory (docs/llm.md): the second bridge answers from the cache log and the
/// fake provider records no second request. Without persistence (cache.persist: false) it asks again.
/// </summary>
public sealed class LlmCacheRestartTests : IDisposable
{
    private static readonly TimeSpan Startup = TimeSpan.FromSeconds(90);
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "loom-llm-cache-" + Guid.NewGuid().ToString("N"));

    public LlmCacheRestartTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // A file still held by a process being reaped; the temp directory is cleaned later.
        }
    }

    private static int FreePort()
    {
        using var socket = new TcpListener(IPAddress.Loopback, 0);
        socket.Start();
        return ((IPEndPoint)socket.LocalEndpoint).Port;
    }

    private async Task<(CliProcess Process, string Url)> UpAsync()
    {
        var up = CliProcess.Start(_dir, null, "up", "--config", Path.Combine(_dir, "loom.yaml"), "--grpc-port", FreePort().ToString(CultureInfo.InvariantCulture), "--http-port", FreePort().ToString(CultureInfo.InvariantCulture));
        var url = (await up.WaitForLineAsync(@"listening grpc=(\S+) http=(\S+)", Startup)).Groups[1].Value;
        return (up, url);
    }

    private static async Task<JsonElement> ChatAsync(string url, string prompt)
    {
        await using var connection = await LoomConnection.ConnectAsync(new Uri(url), new LoomConnectionOptions { Name = "cache-test", RequestTimeout = TimeSpan.FromSeconds(30) });
        var output = await connection.CallAsync(new ActionCall
        {
            CallId = Guid.NewGuid().ToString("N"),
            Capability = "llm.chat",
            InputJson = ByteString.CopyFromUtf8(JsonSerializer.Serialize(new { messages = new[] { new { role = "user", content = prompt } } })),
            TimeoutMs = 30_000,
        });
        using var document = JsonDocument.Parse(output);
        return document.RootElement.Clone();
    }

    private void WriteConfig(Uri fake, bool persist) => File.WriteAllText(Path.Combine(_dir, "loom.yaml"), $"""
        name: llm-cache
        data_dir: data
        llm:
          providers:
            - {"{"} name: fake, kind: openai, base_url: {new Uri(fake, "v1")} {"}"}
          models:
            - {"{"} name: fast, provider: fake, id: fake-fast {"}"}
          cache: {"{"} max_entries: 100, ttl_ms: 600000, persist: {(persist ? "true" : "false")} {"}"}
        """, Encoding.UTF8);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_restarted_bridge_answers_from_the_persisted_cache(bool persist)
    {
        await using var fake = new FakeLlmServer();
        await fake.StartAsync();
        WriteConfig(fake.BaseUrl, persist);
        const string Prompt = "What is the capital of Portugal? (cache restart test)";

        var (first, url) = await UpAsync();
        await using (first)
        {
            var answer = await ChatAsync(url, Prompt);
            Assert.False(answer.GetProperty("cached").GetBoolean());
            Assert.Equal("echo: " + Prompt, answer.GetProperty("content").GetString());
            first.Interrupt(); // a graceful stop; the cache log's writes are flushed
            Assert.Equal(0, await first.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        }

        Assert.Single(fake.Requests);
        Assert.True(Directory.Exists(Path.Combine(_dir, "data", "llm-cache")) == persist, "the cache log lives in <data_dir>/llm-cache when persisted");

        var (second, url2) = await UpAsync();
        await using (second)
        {
            var again = await ChatAsync(url2, Prompt);
            Assert.Equal("echo: " + Prompt, again.GetProperty("content").GetString());
            Assert.Equal(persist, again.GetProperty("cached").GetBoolean());
            Assert.Equal(persist ? 1 : 2, fake.Requests.Count);
            if (persist)
            {
                Assert.Equal(0, again.GetProperty("usage").GetProperty("input_tokens").GetInt64()); // a hit is not charged
            }
        }
    }
}
