using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// <c>loom run</c> of a project with auth on: it makes the token key (0600, under the project's
/// .loom/), gives each agent its own token as LOOM_TOKEN, and the bridge refuses that agent
/// without it (UNAUTHENTICATED), under another agent id, and outside its permissions.
/// </summary>
public sealed class RunAuthTests : IDisposable
{
    private readonly string _project = Directory.CreateTempSubdirectory("loom-runauth-").FullName;

    public void Dispose() => Directory.Delete(_project, recursive: true);

    [Fact]
    public async Task Each_agent_gets_its_own_token_and_is_refused_without_it()
    {
        File.WriteAllText(Path.Combine(_project, "loom.yaml"), """
            bridge:
              auth: required
            main: checker
            permissions:
              checker:
                allow:
                  subscribe: ["checker.>"]
            agents:
              - name: checker
                language: python
                command: exec /usr/bin/python3 checker.py
                env:
                  PYTHONPATH: ${LOOM_HOME}/sdk-python/src
            """);
        File.WriteAllText(Path.Combine(_project, "checker.py"), """
            import asyncio, os, sys
            import loom

            async def main() -> int:
                token = os.environ.pop("LOOM_TOKEN", "")
                print("token given:", bool(token), flush=True)
                try:
                    conn = await loom.connect(agent_id="checker", token="", connect_timeout_ms=10000)
                    await conn.close()
                    print("without token: ACCEPTED", flush=True)
                    return 1
                except loom.UnauthenticatedError as e:
                    print("without token:", e.code.value, flush=True)
                try:
                    conn = await loom.connect(agent_id="someone-else", token=token, connect_timeout_ms=10000)
                    await conn.close()
                    print("other id: ACCEPTED", flush=True)
                    return 1
                except loom.PermissionDeniedError as e:
                    print("other id:", e.code.value, flush=True)
                conn = await loom.connect(agent_id="checker", token=token, connect_timeout_ms=10000)
                try:
                    async def on_event(event: loom.Event) -> None:
                        pass
                    await conn.subscribe("checker.>", on_event)
                    print("with token: subscribed", flush=True)
                    try:
                        await conn.subscribe("other.>", on_event)
                        print("outside: ACCEPTED", flush=True)
                        return 1
                    except loom.PermissionDeniedError as e:
                        print("outside:", e.code.value, flush=True)
                finally:
                    await conn.close()
                return 0

            sys.exit(asyncio.run(main()))
            """);
        var env = new Dictionary<string, string> { ["LOOM_TOKEN"] = "" };
        var (code, output) = await CliProcess.RunAsync(_project, TimeSpan.FromMinutes(5), env, "run", ".");
        Assert.True(code == 0, output);
        Assert.Contains("token given: True", output, StringComparison.Ordinal);
        Assert.Contains("without token: UNAUTHENTICATED", output, StringComparison.Ordinal);
        Assert.Contains("other id: PERMISSION_DENIED", output, StringComparison.Ordinal);
        Assert.Contains("with token: subscribed", output, StringComparison.Ordinal);
        Assert.Contains("outside: PERMISSION_DENIED", output, StringComparison.Ordinal);
        Assert.DoesNotContain("eyJ", output, StringComparison.Ordinal); // the token is never printed

        var key = Path.Combine(_project, ".loom", "keys", "token.key");
        Assert.True(File.Exists(key), output);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(key));
        }
    }
}
