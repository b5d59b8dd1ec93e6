using BenchmarkDotNet.Running;

namespace Loom.Benchmarks;

/// <summary>
/// Entry point: <c>dotnet run -c Release --project tests/Loom.Benchmarks -- --filter '*'</c> (or a class name);
/// <c>-- storage</c> runs the storage engine comparison (<see cref="StorageComparison"/>).
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args is ["storage", ..])
        {
            return await StorageComparison.RunAsync(args[1..]);
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
