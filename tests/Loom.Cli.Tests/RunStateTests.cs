using System.Diagnostics;
using System.Text.Json;
using Loom.Cli.Internal;
using Xunit;

namespace Loom.Cli.Tests;

/// <summary>
/// <c>loom run</c> and <c>loom dev</c> record their bridge in PROJECT/.loom/bridge.json, and
/// <c>loom list</c> and <c>loom logs</c> find it without flags; <c>loom dev</c> says when an agent
/// it restarted has connected again. Real processes: the CLI, its bridge, a .NET agent.
/// </summary>
public sealed class RunStateTests : IDisposable
{
    private readonly string _temp = Directory.CreateTempSubdirectory("loom-state-").FullName;

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    private static string TestAgentDll => Path.Combine(CliProcess.RepoRoot, "tests", "Loom.TestAgent", "bin", "Release", "net10.0", "Loom.TestAgent.dll");

    /// <summary>A project (free ports: the defaults) whose one agent, 'lister', connects and serves until stopped.</summary>
    private string Project(string name)
    {
        Assert.True(File.Exists(TestAgentDll), $"{TestAgentDll} is missing (built with this test project)");
        var directory = Path.Combine(_temp, name);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "loom.yaml"), $"agents:\n  - name: lister\n    command: exec dotnet {TestAgentDll} serve --url ${{LOOM_URL}} --agent-id lister\n");
        return directory;
    }

    /// <summary>Environment without the variables that would win over the state file.</summary>
    private static Dictionary<string, string> NoAddressVariables() => new() { ["LOOM_URL"] = "", ["LOOM_HTTP_URL"] = "", ["LOOM_PROJECT_DIR"] = "" };

    [Fact]
    public async Task List_and_logs_find_the_bridge_of_a_running_loom_run_without_flags()
    {
        var project = Project("shop");
        await using var run = CliProcess.Start(_temp, NoAddressVariables(), "run", "shop");
        var listening = await run.WaitForLineAsync(@"bridge listening grpc=(\S+) http=(\S+)", TimeSpan.FromSeconds(60));
        var (grpc, http) = (listening.Groups[1].Value, listening.Groups[2].Value);

        // The record: both addresses, this run's pid.
        var statePath = Path.Combine(project, ".loom", "bridge.json");
        await Poll.UntilAsync(() => File.Exists(statePath), TimeSpan.FromSeconds(30), "the state file");
        using (var state = JsonDocument.Parse(File.ReadAllText(statePath)))
        {
            Assert.Equal(grpc, state.RootElement.GetProperty("grpc_url").GetString());
            Assert.Equal(http, state.RootElement.GetProperty("http_url").GetString());
            Assert.Equal("run", state.RootElement.GetProperty("command").GetString());
            Assert.True(state.RootElement.GetProperty("bridge_started").GetBoolean());
        }

        // From the project directory, from below it, and from the directory the run was started in.
        Directory.CreateDirectory(Path.Combine(project, "src"));
        foreach (var where in new[] { project, Path.Combine(project, "src"), _temp })
        {
            var output = "";
            await Poll.UntilAsync(
                async ct =>
                {
                    (var code, output) = await CliProcess.RunAsync(where, TimeSpan.FromSeconds(60), NoAddressVariables(), "list", "--json");
                    if (code != 0)
                    {
                        return false;
                    }

                    using var listed = JsonDocument.Parse(output);
                    return listed.RootElement.GetProperty("agents").EnumerateArray().Any(a => a.GetProperty("agent_id").GetString() == "lister");
                },
                TimeSpan.FromSeconds(90),
                $"loom list in {where} to show the run's agent; last output:\n{output}");
        }

        // logs connects to the same bridge's gRPC port.
        await using (var logs = CliProcess.Start(project, NoAddressVariables(), "logs"))
        {
            await logs.WaitForLineAsync("following > on " + System.Text.RegularExpressions.Regex.Escape(grpc), TimeSpan.FromSeconds(60));
        }

        // An explicit --url wins over the record.
        var (explicitCode, explicitOutput) = await CliProcess.RunAsync(project, TimeSpan.FromSeconds(60), NoAddressVariables(), "list", "--url", "http://127.0.0.1:1");
        Assert.Equal(1, explicitCode);
        Assert.Contains("cannot read the bridge at http://127.0.0.1:1 (--url)", explicitOutput, StringComparison.Ordinal);

        // Stopped: the record goes with it.
        run.Interrupt();
        await run.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.False(File.Exists(statePath), "the state file outlived the run");
    }

    [Fact]
    public void A_record_whose_process_is_gone_is_ignored()
    {
        var project = Path.Combine(_temp, "old");
        Directory.CreateDirectory(project);

        // A process that has exited: its pid is free (or another process's, with another start time).
        using var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        var stale = RunStateFile.Current(project, "http://127.0.0.1:1", "http://127.0.0.1:2", dev: false, bridgeStarted: true) with { Pid = gone.Id };
        RunStateFile.Write(project, stale);
        Assert.NotNull(RunStateFile.Read(RunStateFile.PathFor(project)));
        Assert.Null(RunStateFile.ReadLive(project));
        Assert.Null(RunStateFile.Find(project));

        // This process, but a start time that is not its own: a pid reused since.
        RunStateFile.Write(project, RunStateFile.Current(project, "http://127.0.0.1:1", null, dev: false, bridgeStarted: true) with { PidStartUnixMs = 1 });
        Assert.Null(RunStateFile.Find(project));

        // Live: found from the project and from its parent; removal leaves a later run's record alone.
        var live = RunStateFile.Current(project, "http://127.0.0.1:3", "http://127.0.0.1:4", dev: true, bridgeStarted: false);
        RunStateFile.Write(project, live);
        Assert.Equal("http://127.0.0.1:3", RunStateFile.Find(project)?.GrpcUrl);
        Assert.Equal("http://127.0.0.1:4", RunStateFile.Find(_temp)?.HttpUrl);
        RunStateFile.Remove(project, stale);
        Assert.True(File.Exists(RunStateFile.PathFor(project)));
        RunStateFile.Remove(project, live);
        Assert.False(File.Exists(RunStateFile.PathFor(project)));
    }

    [Fact]
    public async Task Dev_reports_each_reconnection_of_an_agent_it_restarted()
    {
        var project = Project("devshop");
        await using var dev = CliProcess.Start(project, NoAddressVariables(), "dev");
        await dev.WaitForLineAsync(@"✓ lister connected \(", TimeSpan.FromSeconds(90));
        Assert.True(File.Exists(Path.Combine(project, ".loom", "bridge.json")));

        for (var restart = 1; restart <= 2; restart++)
        {
            File.WriteAllText(Path.Combine(project, "edited.txt"), $"change {restart}\n");
            await Poll.UntilAsync(
                () => dev.Output.Split('\n').Count(l => l.Contains("✓ lister reconnected (", StringComparison.Ordinal)) >= restart,
                TimeSpan.FromSeconds(90),
                $"reconnection {restart} reported; output:\n{dev.Output}");
        }

        Assert.Equal(2, dev.Output.Split('\n').Count(l => l.Contains("lister reconnected", StringComparison.Ordinal)));
        Assert.Equal(2, dev.Output.Split('\n').Count(l => l.Contains("files of lister changed; restarting it", StringComparison.Ordinal)));
    }
}
