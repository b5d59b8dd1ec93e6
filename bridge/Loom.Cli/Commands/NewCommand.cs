using System.CommandLine;
using Loom.Cli.Internal;
using Spectre.Console;

namespace Loom.Cli.Commands;

/// <summary><c>loom new &lt;python|ts|dotnet&gt; &lt;name&gt;</c>: scaffold an agent that runs at once.</summary>
internal static class NewCommand
{
    public static Command Create()
    {
        var language = new Argument<string>("language") { Description = "python, ts or dotnet." };
        language.AcceptOnlyFromAmong(Scaffolder.Languages);
        var name = new Argument<string>("name") { Description = "Agent name: lower-case letters, digits and '-' (e.g. greeter)." };
        var directory = new Option<string?>("--dir") { Description = "Where to create it (default ./NAME)." };
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
                await Console.Error.WriteLineAsync($"loom: {ex.Message}");
                return 2;
            }
            catch (IOException ex)
            {
                await Console.Error.WriteLineAsync($"loom: cannot write {target}: {ex.Message}");
                return 1;
            }
            catch (InvalidOperationException ex)
            {
                await Console.Error.WriteLineAsync($"loom: {ex.Message}");
                return 1;
            }
        });
        return command;
    }
}
