using System.Xml.Linq;

namespace Loom.Core.Tests;

/// <summary>
/// The .NET layers (docs/architecture.md) as a test: every shipped project may reference only the
/// projects its layer allows, and every shipped project has a place in the table. A new project
/// reference that crosses the layers fails here, naming the edge. Known debt (references the
/// architecture wants gone, issue 14) is listed apart so that removing it also updates this table.
/// </summary>
public sealed class LayeringTests
{
    /// <summary>Layer of each shipped project, bottom first, with the references it is allowed.</summary>
    private static readonly Dictionary<string, string[]> Allowed = new(StringComparer.Ordinal)
    {
        // Wire: generated messages and codecs. Depends on nothing of ours.
        ["Loom.Protocol"] = [],
        // Storage engine: a log of bytes. Depends on nothing of ours.
        ["Loom.Streams"] = [],
        // The runtime's domain: bus, broker, router, memory, collaboration.
        ["Loom.Core"] = ["Loom.Protocol"],
        // The agent SDK: talks to a bridge over the wire.
        ["Loom.Sdk"] = ["Loom.Protocol"],
        // Bridge features, each beside the core.
        ["Loom.Llm"] = ["Loom.Protocol", "Loom.Core", "Loom.Streams"],
        ["Loom.Mcp"] = ["Loom.Protocol", "Loom.Core"],
        // The server process: hosts the core and its features.
        ["Loom.Bridge"] = ["Loom.Protocol", "Loom.Core", "Loom.Streams", "Loom.Mcp", "Loom.Llm"],
        // The command line: runs a bridge and agents.
        ["Loom.Cli"] = ["Loom.Bridge", "Loom.Mcp", "Loom.Sdk"],
    };

    /// <summary>References that cross the layers today, to be removed (issue 14).</summary>
    private static readonly HashSet<(string From, string To)> Debt =
    [
        ("Loom.Sdk", "Loom.Core"),  // errors, topics and telemetry names belong in a small shared assembly
        ("Loom.Mcp", "Loom.Sdk"),   // the MCP client side reaches the bridge through the SDK
    ];

    private static string Root()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Loom.sln")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException($"No Loom.sln above {AppContext.BaseDirectory}.");
    }

    /// <summary>Every project outside tests/, with the project names it references.</summary>
    private static Dictionary<string, List<string>> Shipped()
    {
        var root = Root();
        var projects = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var folder in new[] { "proto", "core", "bridge", "sdk-dotnet", "examples" })
        {
            foreach (var file in Directory.EnumerateFiles(Path.Combine(root, folder), "*.csproj", SearchOption.AllDirectories))
            {
                if (file.Contains("node_modules", StringComparison.Ordinal) || file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                {
                    continue;
                }

                var references = XDocument.Load(file).Descendants("ProjectReference")
                    .Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value.Replace('\\', '/')))
                    .ToList();
                projects[Path.GetRelativePath(root, file).Replace('\\', '/')] = references;
            }
        }

        return projects;
    }

    [Fact]
    public void Shipped_projects_reference_only_what_their_layer_allows()
    {
        var broken = new List<string>();
        foreach (var (path, references) in Shipped())
        {
            var name = Path.GetFileNameWithoutExtension(path);
            // Examples are users' programs: they may use the SDK and nothing else of ours.
            var allowed = path.StartsWith("examples/", StringComparison.Ordinal) ? ["Loom.Sdk"]
                : Allowed.TryGetValue(name, out var layer) ? layer
                : null;
            if (allowed is null)
            {
                broken.Add($"{path} has no layer: add it to LayeringTests.Allowed and docs/architecture.md");
                continue;
            }

            broken.AddRange(references
                .Where(r => !allowed.Contains(r) && !Debt.Contains((name, r)))
                .Select(r => $"{path} -> {r} crosses the layers (allowed: {(allowed.Length == 0 ? "none" : string.Join(", ", allowed))})"));
        }

        Assert.True(broken.Count == 0, string.Join(Environment.NewLine, broken));
    }

    [Fact]
    public void The_debt_list_holds_only_references_that_still_exist()
    {
        var edges = Shipped().SelectMany(p => p.Value.Select(r => (Path.GetFileNameWithoutExtension(p.Key), r))).ToHashSet();
        var paid = Debt.Where(d => !edges.Contains(d)).Select(d => $"{d.From} -> {d.To}").ToList();
        Assert.True(paid.Count == 0, $"No longer referenced, remove from LayeringTests.Debt and docs/architecture.md: {string.Join(", ", paid)}");
    }
}
