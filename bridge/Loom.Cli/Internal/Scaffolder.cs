using System.Globalization;
using System.Text.RegularExpressions;

namespace Loom.Cli.Internal;

/// <summary>
/// Writes a new agent project: one agent with one capability, a loom.yaml that runs it (with the
/// setup it needs), and a README. The SDK is referenced from this repository (LOOM_HOME), since
/// the packages are not published yet.
/// </summary>
internal static partial class Scaffolder
{
    public static readonly string[] Languages = ["python", "ts", "dotnet"];

    [GeneratedRegex("^[a-z][a-z0-9-]{0,62}$")]
    private static partial Regex NamePattern();

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

        Directory.CreateDirectory(directory);
        var full = Path.GetFullPath(directory);
        var pascal = string.Concat(name.Split('-').Select(p => char.ToUpperInvariant(p[0]) + p[1..]));
        var files = language switch
        {
            "python" => Python(name, pascal),
            "ts" => TypeScript(name, Path.GetRelativePath(full, Path.Combine(loomHome, "sdk-js"))),
            _ => DotNet(name, pascal, Path.GetRelativePath(full, Path.Combine(loomHome, "sdk-dotnet", "Loom.Sdk", "Loom.Sdk.csproj"))),
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

    private static Dictionary<string, string> Python(string name, string pascal) => new(StringComparer.Ordinal)
    {
        ["agent.py"] = $$""""
            """{{pascal}}: a Loom agent in Python (made by `loom new python {{name}}`).

            Run it with `loom run .` (or `python3 agent.py` against a bridge at $LOOM_URL).
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
        ["loom.yaml"] = $$"""
            # Run with: loom run .   (loom dev . restarts the agent when agent.py changes)
            name: {{name}}
            agents:
              - name: {{name}}
                language: python
                command: exec /usr/bin/python3 agent.py
                setup:
                  command: ${LOOM_HOME}/sdk-python/scripts/ensure-deps.sh
                  inputs: [loom.yaml]
                env:
                  PYTHONPATH: ${LOOM_HOME}/sdk-python/src
                watch: ["**/*.py"]
                restart: on-failure

            """,
    };

    private static Dictionary<string, string> TypeScript(string name, string sdkPath) => new(StringComparer.Ordinal)
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
                "@loom-agents/sdk": "file:{{sdkPath.Replace('\\', '/')}}"
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
                  command: ${LOOM_HOME}/sdk-js/scripts/ensure-built.sh && npm install --no-audit --no-fund && npm run build
                  inputs: [package.json, tsconfig.json, "src/**/*.ts"]
                watch: ["src/**/*.ts"]
                restart: on-failure

            """,
    };

    private static Dictionary<string, string> DotNet(string name, string pascal, string sdkProject) => new(StringComparer.Ordinal)
    {
        [$"{pascal}.csproj"] = $$"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <AssemblyName>{{name}}</AssemblyName>
              </PropertyGroup>
              <ItemGroup>
                <ProjectReference Include="{{sdkProject.Replace('/', '\\')}}" />
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

        - `loom run .` starts a bridge and the agent (the first run sets it up).
        - `loom dev .` does the same and restarts the agent when its files change.
        - While it runs, `loom list --url <the http address loom printed>` shows it and its capability
          `{{name}}.greet`, and any agent can call it: `invoke("{{name}}.greet", {"name": "Ada"})`.

        """);
}
