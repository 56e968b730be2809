using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Filters;
using BenchmarkDotNet.Running;

namespace Perf.Bench.Gate;

/// <summary>Runs the benchmarks named in the gate file with the short gate job and judges their allocations.</summary>
public static class GateRunner
{
    public static int Run(string gateFile)
    {
        IReadOnlyDictionary<string, long> budgets;
        try
        {
            budgets = AllocationGate.LoadBudgets(gateFile);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or System.Text.Json.JsonException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"Cannot read the gate file {gateFile}: {e.Message}");
            return 2;
        }

        Console.WriteLine($"Allocation gate: {budgets.Count} benchmarks from {gateFile}");
        var wanted = new HashSet<string>(budgets.Keys, StringComparer.Ordinal);
        var config = ManualConfig.Create(BenchConfig.Gate())
            .AddFilter(new SimpleFilter(benchmarkCase => wanted.Contains(BenchmarkNames.Of(benchmarkCase))));

        var measured = new Dictionary<string, long?>(StringComparer.Ordinal);
        var types = BenchmarkNames.BenchmarkTypes();
        if (types.Length > 0)
        {
            foreach (var summary in BenchmarkRunner.Run(types, config))
            {
                foreach (var report in summary.Reports)
                {
                    var name = BenchmarkNames.Of(report.BenchmarkCase);
                    long? allocated = report.Success ? report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase) : null;
                    measured[name] = allocated;
                }
            }
        }

        var rows = AllocationGate.Evaluate(budgets, measured);
        AllocationGate.PrintTable(rows, Console.Out);
        return AllocationGate.Passed(rows) ? 0 : 1;
    }
}
