using BenchmarkDotNet.Running;

namespace Loom.Benchmarks;

/// <summary>Entry point: <c>dotnet run -c Release --project tests/Loom.Benchmarks -- --filter '*'</c> (or a class name).</summary>
public static class Program
{
    public static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
