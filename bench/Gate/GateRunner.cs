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
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var rows = Judge(budgets, BenchmarkNames.BenchmarkTypes());
        AllocationGate.PrintTable(rows, Console.Out);
        Console.WriteLine($"Gate benchmarks ran in {System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds:F1} s.");
        return AllocationGate.Passed(rows) ? 0 : 1;
    }

    /// <summary>
    /// Runs the budgeted benchmarks among <paramref name="types"/> with <see cref="BenchConfig.Gate"/> and
    /// judges them: the whole gate but the file and the console table (the tests run it on their own types).
    /// </summary>
    public static IReadOnlyList<GateRow> Judge(IReadOnlyDictionary<string, long> budgets, IReadOnlyList<Type> types)
    {
        var wanted = new HashSet<string>(budgets.Keys, StringComparer.Ordinal);
        var config = ManualConfig.Create(BenchConfig.Gate())
            .AddFilter(new SimpleFilter(benchmarkCase => wanted.Contains(BenchmarkNames.Of(benchmarkCase))));

        var measured = new Dictionary<string, long?>(StringComparer.Ordinal);
        if (types.Count > 0)
        {
            foreach (var summary in BenchmarkRunner.Run(types.ToArray(), config))
            {
                foreach (var report in summary.Reports)
                {
                    var name = BenchmarkNames.Of(report.BenchmarkCase);
                    long? allocated = report.Success ? report.GcStats.GetBytesAllocatedPerOperation(report.BenchmarkCase) : null;
                    measured[name] = allocated;
                }
            }
        }

        return AllocationGate.Evaluate(budgets, measured);
    }
}
