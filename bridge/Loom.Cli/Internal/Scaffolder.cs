using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Loom.Cli.Internal;

/// <summary>
/// Writes a new agent project: one agent with one capability, a loom.yaml that runs it (with the
/// setup it needs), and a README. The project takes the SDK as a package, the way a user's would
/// (loom-agents in requirements.txt, @loom-agents/sdk in package.json, a PackageReference to
/// Loom.Sdk), from a local package folder while the packages are not published: LOOM_PACKAGES, or
/// in a checkout .loom/packages, which loom pack (bridge/Loom.Cli/pack-sdks.sh) fills (run here when needed).
/// </summary>
internal static partial class Scaffolder
{
    public static readonly string[] Languages = ["python", "ts", "dotnet"];

    [GeneratedRegex("^[a-z][a-z0-9-]{0,62}$")]
    private static partial Regex NamePattern();

    /// <summary>True for a name an agent can have: lower-case letters, digits and '-', starting with a letter.</summary>
    public static bool IsValidName(string name) => NamePattern().IsMatch(name);

    /// <summary>Creates the project; returns the files written.</summary>
    /// <exception cref="ArgumentException">A bad language or name, or a target directory that is not empty.</exception>
    public static IReadOnlyList<string> Create(string language, string name, string directory, string loomHome)
    {
        if (!Languages.Contains(language, StringComparer.Ordinal))
        {
            throw new ArgumentException($"unknown language '{language}'; use one of {string.Join(", ", Languages)}");
        }

        if (!NamePattern().IsMatch(name))
        {
            throw new ArgumentException($"'{name}' is not a valid agent name: use lower-case letters, digits and '-', starting with a letter (e.g. 'greeter')");
        }

        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
        {
            throw new ArgumentException($"{directory} already exists and is not empty; choose another name or --dir");
        }

        var packages = FindPackage(language, loomHome);
        Directory.CreateDirectory(directory);
        var full = Path.GetFullPath(directory);
        var pascal = string.Concat(name.Split('-').Select(p => char.ToUpperInvariant(p[0]) + p[1..]));
        var files = language switch
        {
            "python" => Python(name, pascal, packages),
            "ts" => TypeScript(name, packages),
            _ => DotNet(name, pascal, packages, InsideCheckout(full, loomHome)),
        };
        files["README.md"] = Readme(name, language);
        foreach (var (relative, text) in files)
        {
            var path = Path.Combine(full, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            File.WriteAllText(path, text.Replace("\r\n", "\n", StringComparison.Ordinal));
        }

        return files.Keys.Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// Where the SDK package comes from: a file in the local package folder (<see cref="Package.File"/>
    /// set), or the public registry by name and version. The folder is LOOM_PACKAGES when set (used as
    /// it is), else in a checkout .loom/packages, brought up to date by loom pack (bridge/Loom.Cli/pack-sdks.sh).
    /// </summary>
    internal sealed record Package(string Version, string? File, string? Folder);

    private static Package FindPackage(string language, string loomHome)
    {
        var (pattern, prefix, suffix) = language switch
        {
            "python" => ("loom_agents-*.whl", "loom_agents-", "-py3-none-any.whl"),
            "ts" => ("loom-agents-sdk-*.tgz", "loom-agents-sdk-", ".tgz"),
            _ => ("Loom.Sdk.*.nupkg", "Loom.Sdk.", ".nupkg"),
        };
        var configured = Environment.GetEnvironmentVariable("LOOM_PACKAGES");
        var script = Path.Combine(loomHome, "bridge", "Loom.Cli", "pack-sdks.sh");
        string folder;
        if (configured is { Length: > 0 })
        {
            folder = Path.GetFullPath(configured);
        }
        else if (File.Exists(script))
        {
            folder = Path.Combine(loomHome, ".loom", "packages");
            Pack(script, folder, language);
        }
        else
        {
            var version = typeof(Scaffolder).Assembly.GetName().Version ?? new Version(0, 1, 0);
            return new Package(version.ToString(3), null, null);
        }

        var file = Directory.Exists(folder)
            ? new DirectoryInfo(folder).EnumerateFiles(pattern).OrderByDescending(f => f.LastWriteTimeUtc).FirstOrDefault()
            : null;
        if (file is null || !file.Name.EndsWith(suffix, StringComparison.Ordinal))
        {
            throw new ArgumentException($"no {pattern} in LOOM_PACKAGES={folder}; make the packages with loom pack --out {folder}");
        }

        return new Package(file.Name[prefix.Length..^suffix.Length], file.FullName, folder);
    }

    /// <summary>Runs loom pack (bridge/Loom.Cli/pack-sdks.sh) for one language (quick when the package is up to date).</summary>
    /// <exception cref="InvalidOperationException">The script failed (its output is on stderr).</exception>
    private static void Pack(string script, string folder, string language)
    {
        var info = new ProcessStartInfo("bash") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { script, "--out", folder, language })
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException("cannot start bash to run loom pack (bridge/Loom.Cli/pack-sdks.sh)");
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) Console.Error.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"packing the {language} SDK failed (loom pack {language}, exit {process.ExitCode})");
        }
    }

    private static bool InsideCheckout(string directory, string loomHome)
    {
        var relative = Path.GetRelativePath(Path.GetFullPath(loomHome), directory);
        return File.Exists(Path.Combine(loomHome, "Directory.Packages.props")) && relative != ".." && !relative.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) && !Path.IsPathRooted(relative);
    }

    private static Dictionary<string, string> Python(string name, string pascal, Package package) => new(StringComparer.Ordinal)
    {
        ["agent.py"] = $$""""
            """{{pascal}}: a Loom agent in Python (made by `loom new python {{name}}`).

            Run it with `loom run .`, which makes .venv with the SDK (requirements.txt) and starts
            it; or by hand: `.venv/bin/python agent.py` against a bridge at $LOOM_URL.
            Call it from anywhere: invoke("{{name}}.greet", {"name": "Ada"}).
            """

            import loom


            class {{pascal}}(loom.Agent):
                name = "{{name}}"
                topics = ["{{name}}.requests"]  # events for on_event; wildcards: * and >

                @loom.capability("{{name}}.greet", tags=["example"])
                async def greet(self, name: str, excited: bool = False) -> str:
                    """Greets someone by name."""
                    return f"Hello, {name}{'!' if excited else '.'}"

                async def on_event(self, ctx: loom.Context, event: loom.Event) -> None:
                    if event.is_request:
                        await ctx.reply(event, {"received": event.data})


            if __name__ == "__main__":
                loom.run({{pascal}}())

            """",
        ["requirements.txt"] = package.File is null
            ? $"loom-agents~={package.Version}\n"
            : $"# The Loom SDK from the local package folder (LOOM_PACKAGES); once published: loom-agents~={package.Version}\nloom-agents @ {new Uri(package.File).AbsoluteUri}\n",
        [".gitignore"] = ".venv/\n__pycache__/\n.loom/\n",
        ["loom.yaml"] = $$"""
            # Run with: loom run .   (loom dev . restarts the agent when agent.py changes)
            name: {{name}}
            agents:
              - name: {{name}}
                language: python
                command: exec .venv/bin/python agent.py
                setup:
                  # A virtual environment with requirements.txt. --system-site-packages lets a Debian
                  # Python's python3-grpcio and python3-protobuf stand in for grpcio and protobuf.
                  command: {{SystemPython()}} -m venv --system-site-packages .venv && .venv/bin/pip install --disable-pip-version-check -q -r requirements.txt
                  inputs: [requirements.txt]
                watch: ["*.py"]
                restart: on-failure

            """,
    };

    /// <summary>The Python for the project's venv: the system's (Debian's, with its python3-grpcio) when there is one.</summary>
    private static string SystemPython() => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    private static Dictionary<string, string> TypeScript(string name, Package package) => new(StringComparer.Ordinal)
    {
        ["src/agent.ts"] = $$"""
            // {{name}}: a Loom agent in TypeScript (made by `loom new ts {{name}}`).
            // Run it with `loom run .`; call it from anywhere: invoke('{{name}}.greet', { name: 'Ada' }).
            import { capability, defineAgent, run } from '@loom-agents/sdk';

            const greet = capability({
              name: '{{name}}.greet',
              description: 'Greets someone by name.',
              tags: ['example'],
              input: {
                type: 'object',
                properties: { name: { type: 'string', minLength: 1 }, excited: { type: 'boolean' } },
                required: ['name'],
                additionalProperties: false,
              },
              output: { type: 'string' },
              handler: (input: unknown) => {
                const { name, excited } = input as { name: string; excited?: boolean };
                return `Hello, ${name}${excited ? '!' : '.'}`;
              },
            });

            export const agent = defineAgent({
              name: '{{name}}',
              topics: ['{{name}}.requests'],
              capabilities: [greet],
              onEvent: async (event, ctx) => {
                if (event.replyTo) await ctx.reply(event, { received: event.json() });
              },
            });

            await run(agent);

            """,
        ["package.json"] = $$"""
            {
              "name": "{{name}}",
              "version": "0.1.0",
              "private": true,
              "type": "module",
              "scripts": {
                "build": "tsc -p tsconfig.json",
                "start": "node dist/agent.js"
              },
              "dependencies": {
                "@loom-agents/sdk": "{{(package.File is null ? "^" + package.Version : "file:" + package.File.Replace('\\', '/'))}}"
              },
              "devDependencies": {
                "@types/node": "20.19.43",
                "typescript": "5.9.3"
              }
            }

            """,
        ["tsconfig.json"] = """
            {
              "compilerOptions": {
                "target": "ES2022",
                "module": "NodeNext",
                "moduleResolution": "NodeNext",
                "strict": true,
                "outDir": "dist",
                "rootDir": "src",
                "types": ["node"],
                "skipLibCheck": true
              },
              "include": ["src/**/*.ts"]
            }

            """,
        [".gitignore"] = "node_modules/\ndist/\n.loom/\n",
        ["loom.yaml"] = $$"""
            # Run with: loom run .   (loom dev . rebuilds and restarts the agent when src/ changes)
            name: {{name}}
            agents:
              - name: {{name}}
                language: typescript
                command: exec node dist/agent.js
                setup:
                  command: npm install --no-audit --no-fund && npm run build
                  inputs: [package.json, tsconfig.json, "src/**/*.ts"]
                watch: ["src/**/*.ts"]
                restart: on-failure

            """,
    };

    private static Dictionary<string, string> DotNet(string name, string pascal, Package package, bool insideCheckout)
    {
        var files = DotNetFiles(name, pascal, package, insideCheckout);
        if (package.Folder is not null)
        {
            files["nuget.config"] = $$"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <!-- Loom.Sdk and the packages it needs, from the local package folder (LOOM_PACKAGES)
                         until they are on nuget.org; the other packages come from your usual sources. -->
                    <add key="loom-local" value="{{package.Folder}}" />
                  </packageSources>
                </configuration>

                """;
        }

        return files;
    }

    private static Dictionary<string, string> DotNetFiles(string name, string pascal, Package package, bool insideCheckout) => new(StringComparer.Ordinal)
    {
        [$"{pascal}.csproj"] = $$"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <AssemblyName>{{name}}</AssemblyName>{{(insideCheckout ? "\n    <!-- Inside the Loom checkout, whose Directory.Packages.props manages versions centrally. -->\n    <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>" : "")}}
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="Loom.Sdk" Version="{{package.Version}}" />
              </ItemGroup>
            </Project>

            """,
        ["Program.cs"] = $$"""
            // {{name}}: a Loom agent in .NET (made by `loom new dotnet {{name}}`).
            // Run it with `loom run .`; call it from anywhere: invoke("{{name}}.greet", {"name": "Ada"}).
            using System.Runtime.InteropServices;
            using Loom.Sdk;

            var url = new Uri(Environment.GetEnvironmentVariable("LOOM_URL") ?? "http://127.0.0.1:7070");
            using var stop = new CancellationTokenSource();
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.Cancel(); });
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.Cancel(); });
            await using var agent = await LoomAgentHost.StartAsync(
                new {{pascal}}Agent(),
                url,
                new AgentHostOptions { AgentId = Environment.GetEnvironmentVariable("LOOM_AGENT_ID") ?? "{{name}}" },
                stop.Token);
            Console.WriteLine($"{{name}} connected to {url} as {agent.AgentId}");
            await Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);

            /// <summary>Input of {{name}}.greet.</summary>
            internal sealed record GreetInput(string Name, bool Excited = false);

            /// <summary>The agent: one capability, and replies to requests on {{name}}.requests.</summary>
            internal sealed class {{pascal}}Agent : Agent
            {
                public override string Name => "{{name}}";

                public override IEnumerable<string> Topics => ["{{name}}.requests"];

                [Capability("{{name}}.greet", Description = "Greets someone by name.", Tags = ["example"])]
                public static string Greet(GreetInput input) => $"Hello, {input.Name}{(input.Excited ? "!" : ".")}";

                public override async Task OnEventAsync(AgentContext context, Loom.Protocol.V1.Envelope envelope, CancellationToken cancellationToken)
                {
                    if (envelope.ReplyTo.Length > 0)
                    {
                        await context.ReplyAsync(envelope, new { received = envelope.PayloadText() }, cancellationToken: cancellationToken);
                    }
                }
            }

            """,
        ["loom.yaml"] = $$"""
            # Run with: loom run .   (loom dev . rebuilds and restarts the agent when a .cs file changes)
            name: {{name}}
            agents:
              - name: {{name}}
                language: dotnet
                command: exec dotnet bin/Release/net10.0/{{name}}.dll
                setup:
                  command: dotnet build -c Release -nologo -v quiet
                  inputs: ["*.cs", "*.csproj"]
                watch: ["*.cs"]
                restart: on-failure

            """,
    };

    private static string Readme(string name, string language) => string.Create(CultureInfo.InvariantCulture, $$"""
        # {{name}}

        A Loom agent in {{language switch { "python" => "Python", "ts" => "TypeScript", _ => ".NET" }}}, made by `loom new {{language}} {{name}}`.

        - `loom run .` starts a bridge and the agent (the first run sets it up: {{language switch { "python" => "a `.venv` with the SDK, `loom-agents`, from requirements.txt", "ts" => "`npm install` of `@loom-agents/sdk` from package.json, then `npm run build`", _ => "`dotnet build`, which restores the `Loom.Sdk` package" }}}).
        - `loom dev .` does the same and restarts the agent when its files change.
        - While it runs, `loom list --url <the http address loom printed>` shows it and its capability
          `{{name}}.greet`, and any agent can call it: `invoke("{{name}}.greet", {"name": "Ada"})`.

        """);
}
