using System.CommandLine;
using Loom.Cli.Internal;
using Spectre.Console;

namespace Loom.Cli.Commands;

/// <summary><c>loom new &lt;python|ts|dotnet&gt; &lt;name&gt;</c>: scaffold an agent that runs at once.</summary>
internal static class NewCommand
{
    public static Command Create()
    {
        var language = CliOptions.Choice("language", "python, ts or dotnet.", Scaffolder.Languages);
        var name = CliOptions.Positional(
            "name",
            "Agent name: lower-case letters, digits and '-' (e.g. greeter).",
            "an agent name: lower-case letters, digits and '-', starting with a letter (e.g. greeter)",
            problem: n => Scaffolder.IsValidName(n) ? null : "not a valid agent name",
            refused: "Bad_Name");
        var directory = CliOptions.Text("--dir", "Where to create it (default ./NAME).", "DIR", "a directory path", d => d.Trim().Length == 0 ? "empty" : null, " ");
        var command = new Command("new", "Scaffold an agent with one capability and a loom.yaml that runs it: loom new python greeter && loom run greeter")
        {
            language, name, directory,
        };
        command.SetAction(async (parse, _) =>
        {
            var agentName = parse.GetValue(name)!;
            var target = parse.GetValue(directory) ?? agentName;
            try
            {
                var files = Scaffolder.Create(parse.GetValue(language)!, agentName, target, RunCommand.LoomHome());
                AnsiConsole.MarkupLine($"created [bold]{Markup.Escape(target)}[/]: {Markup.Escape(string.Join(", ", files))}");
                AnsiConsole.MarkupLine($"run it:  [bold]loom run {Markup.Escape(target)}[/]   (call [bold]{Markup.Escape(agentName)}.greet[/] with {{\"name\": \"Ada\"}})");
                return 0;
            }
            catch (ArgumentException ex)
            {
                await Console.Error.WriteLineAsync($"loom new: {ex.Message}");
                return 2;
            }
            catch (IOException ex)
            {
                await Console.Error.WriteLineAsync($"loom new: cannot write {target}: {ex.Message}");
                return 1;
            }
            catch (InvalidOperationException ex)
            {
                await Console.Error.WriteLineAsync($"loom new: {ex.Message}");
                return 1;
            }
        });
        return command;
    }
}
