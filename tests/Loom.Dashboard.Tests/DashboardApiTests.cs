using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Loom.Bridge;
using Loom.Bridge.Internal.Dashboard;
using Loom.Protocol.V1;
using Microsoft.Playwright;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace Loom.Dashboard.Tests;

/// <summary>The dashboard's server side over real HTTP: bounds, refusals, auth.</summary>
[Collection("dashboard")]
public sealed class DashboardApiTests(DashboardFixture f)
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    [Fact]
    public async Task The_page_is_served_at_the_root_with_its_assets()
    {
        var html = await Http.GetStringAsync(f.Url);
        Assert.Contains("<div id=\"app\">", html, StringComparison.Ordinal);
        var asset = System.Text.RegularExpressions.Regex.Match(html, "src=\"\\./(assets/[^\"]+\\.js)\"").Groups[1].Value;
        using var response = await Http.GetAsync(f.Url + asset);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Contains("immutable", response.Headers.CacheControl?.ToString() ?? "", StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_filter_is_refused_with_what_to_fix()
    {
        using var response = await Http.GetAsync(f.Url + "v1/stream/events?topic=a..b");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("INVALID_PARAMS", body.GetProperty("code").GetString());
        Assert.Contains("not a valid topic pattern", body.GetProperty("message").GetString(), StringComparison.Ordinal);

        using var rate = await Http.GetAsync(f.Url + "v1/stream/events?rate=0");
        Assert.Equal(HttpStatusCode.BadRequest, rate.StatusCode);
    }

    [Fact]
    public async Task Calls_from_another_origin_or_without_a_json_body_are_refused()
    {
        using var foreign = new HttpRequestMessage(HttpMethod.Post, f.Url + "v1/capabilities/math.add/call") { Content = new StringContent("{\"a\":1,\"b\":2}", Encoding.UTF8, "application/json") };
        foreign.Headers.Add("Origin", "http://evil.example");
        using var refused = await Http.SendAsync(foreign);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);

        using var text = await Http.PostAsync(f.Url + "v1/capabilities/math.add/call", new StringContent("{\"a\":1,\"b\":2}", Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, text.StatusCode);

        using var ok = await Http.PostAsync(f.Url + "v1/capabilities/math.add/call", new StringContent("{\"a\":1,\"b\":2}", Encoding.UTF8, "application/json"));
        var result = JsonDocument.Parse(await ok.Content.ReadAsStringAsync()).RootElement;
        Assert.True(result.GetProperty("ok").GetBoolean(), result.GetRawText());
        Assert.Equal(3, result.GetProperty("output").GetProperty("sum").GetDouble());

        using var invalid = await Http.PostAsync(f.Url + "v1/capabilities/math.add/call", new StringContent("{\"a\":\"x\"}", Encoding.UTF8, "application/json"));
        var bad = JsonDocument.Parse(await invalid.Content.ReadAsStringAsync()).RootElement;
        Assert.False(bad.GetProperty("ok").GetBoolean());
        Assert.Equal("INVALID_PARAMS", bad.GetProperty("code").GetString());
    }

    [Fact]
    public async Task A_client_that_does_not_read_is_dropped_and_counted_not_buffered()
    {
        var feed = f.Bridge.Dashboard!;
        var before = feed.ClientsDropped;
        var client = feed.Connect(null, overview: true, 0);
        for (var i = 0; i <= DashboardClient.QueueCapacity; i++)
        {
            feed.Tick();
        }

        Assert.Equal(before + 1, feed.ClientsDropped);
        var queued = 0;
        while (client.Reader.TryRead(out _))
        {
            queued++;
        }

        Assert.Equal(DashboardClient.QueueCapacity, queued); // what it had, not more
        await client.Reader.Completion.WaitAsync(TimeSpan.FromSeconds(5)); // its stream ends
        var metrics = await Http.GetStringAsync(f.Url + "metrics");
        Assert.Contains("loom_dashboard_clients_dropped", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_live_tail_client_gets_at_most_its_rate_and_the_rest_is_counted()
    {
        var feed = f.Bridge.Dashboard!;
        var client = feed.Connect(new EventFilter("ratecap.>", "", "", ""), overview: false, 5);
        try
        {
            const int published = 100;
            for (var i = 0; i < published; i++)
            {
                await f.Bridge.Bus.PublishAsync(new Envelope { Topic = "ratecap.x", Sender = "test" });
            }

            var received = 0;
            while (client.Reader.TryRead(out _))
            {
                received++;
            }

            Assert.True(received < published, $"{received} of {published} sent at a cap of 5/s");
            Assert.Equal(published, received + client.Skipped);
        }
        finally
        {
            feed.Disconnect(client);
        }
    }

    [Fact]
    public async Task With_auth_on_a_read_only_token_sees_and_only_an_admin_token_may_call()
    {
        var keyFile = Path.Combine(Directory.CreateTempSubdirectory("loom-dash-auth-").FullName, "token.key");
        await using var bridge = await DashboardFixture.StartBridgeAsync(new BridgeOptions { GrpcPort = 0, HttpPort = 0, Auth = AuthMode.Required, TokenKeyFile = keyFile, ShutdownTimeout = TimeSpan.FromSeconds(2) });
        var read = BridgeTokens.Create(keyFile, "viewer", [], [], TimeSpan.FromHours(1), readOnly: true);
        var admin = BridgeTokens.Create(keyFile, "operator", [], [], TimeSpan.FromHours(1), admin: true);
        var url = bridge.HttpAddress.ToString();

        // The page loads without a credential; its data does not.
        using (var page = await Http.GetAsync(url))
        {
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        }

        using (var anonymous = await Http.GetAsync(url + "v1/overview"))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        }

        async Task<HttpResponseMessage> CallAsync(string token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url + "v1/capabilities/none.here/call") { Content = new StringContent("{}", Encoding.UTF8, "application/json") };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            return await Http.SendAsync(request);
        }

        using (var byReader = await CallAsync(read))
        {
            Assert.Equal(HttpStatusCode.Forbidden, byReader.StatusCode);
        }

        using (var byAdmin = await CallAsync(admin))
        {
            var result = JsonDocument.Parse(await byAdmin.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("CAPABILITY_NOT_FOUND", result.GetProperty("code").GetString()); // reached the broker
        }

        // In the browser: refused without a token, read-only with one (no calling), admin may call.
        var context = await f.Browser.NewContextAsync();
        var tab = await context.NewPageAsync();
        await tab.GotoAsync(url);
        await Expect(tab.GetByTestId("auth-error")).ToContainTextAsync("needs an admin or read-only credential");
        await tab.GetByTestId("token").FillAsync(read);
        await tab.GetByTestId("token-save").ClickAsync();
        await Expect(tab.GetByTestId("who")).ToContainTextAsync("(read)");
        await Expect(tab.GetByTestId("stream-state")).ToHaveTextAsync("live");
        await DashboardFixture.ScreenshotAsync(tab, "auth-read-only");
        await tab.GetByTestId("token").FillAsync(admin);
        await tab.GetByTestId("token-save").ClickAsync();
        await Expect(tab.GetByTestId("who")).ToContainTextAsync("(admin)");
        await context.DisposeAsync();
    }
}
