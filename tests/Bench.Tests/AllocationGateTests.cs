using BenchmarkDotNet.Attributes;
using Perf.Bench.Gate;

namespace Perf.Bench.Tests;

public class AllocationGateTests
{
    private static readonly Dictionary<string, long> Budgets = new(StringComparer.Ordinal)
    {
        ["A.Codec.Parse"] = 0,
        ["A.Codec.Connect"] = 120,
    };

    [Fact]
    public void Evaluate_Passes_WhenEveryBenchmarkIsWithinItsBudget()
    {
        var rows = AllocationGate.Evaluate(Budgets, Measured(("A.Codec.Parse", 0), ("A.Codec.Connect", 120)));

        Assert.True(AllocationGate.Passed(rows));
        Assert.All(rows, r => Assert.Equal(GateOutcome.Pass, r.Outcome));
    }

    [Fact]
    public void Evaluate_Fails_WhenAZeroBudgetBenchmarkStartsAllocating()
    {
        var rows = AllocationGate.Evaluate(Budgets, Measured(("A.Codec.Parse", 24), ("A.Codec.Connect", 120)));

        Assert.False(AllocationGate.Passed(rows));
        var row = Assert.Single(rows, r => r.Outcome != GateOutcome.Pass);
        Assert.Equal(("A.Codec.Parse", GateOutcome.OverBudget, 24L), (row.Benchmark, row.Outcome, row.Allocated!.Value));
    }

    [Fact]
    public void Evaluate_Fails_WhenABenchmarkAllocatesOneByteOverItsBudget()
    {
        var rows = AllocationGate.Evaluate(Budgets, Measured(("A.Codec.Parse", 0), ("A.Codec.Connect", 121)));

        Assert.False(AllocationGate.Passed(rows));
        Assert.Equal(GateOutcome.OverBudget, rows.Single(r => r.Benchmark == "A.Codec.Connect").Outcome);
    }

    [Fact]
    public void Evaluate_Fails_WhenABudgetedBenchmarkIsMissingFromTheResults()
    {
        var rows = AllocationGate.Evaluate(Budgets, Measured(("A.Codec.Parse", 0), ("A.Codec.Renamed", 0)));

        Assert.False(AllocationGate.Passed(rows));
        var row = rows.Single(r => r.Benchmark == "A.Codec.Connect");
        Assert.Equal(GateOutcome.Missing, row.Outcome);
        Assert.Null(row.Allocated);
    }

    [Fact]
    public void Evaluate_Fails_WhenABenchmarkFailedAndReportedNoAllocationFigure()
    {
        var measured = new Dictionary<string, long?>(StringComparer.Ordinal) { ["A.Codec.Parse"] = 0, ["A.Codec.Connect"] = null };

        Assert.False(AllocationGate.Passed(AllocationGate.Evaluate(Budgets, measured)));
    }

    [Fact]
    public void Evaluate_IgnoresMeasuredBenchmarksWithoutABudget()
    {
        var rows = AllocationGate.Evaluate(Budgets, Measured(("A.Codec.Parse", 0), ("A.Codec.Connect", 8), ("B.Unbudgeted", 4096)));

        Assert.True(AllocationGate.Passed(rows));
        Assert.Equal(2, rows.Count);
    }

    [Fact]
    public void PrintTable_NamesTheFailureAndTheVerdict()
    {
        var rows = AllocationGate.Evaluate(Budgets, Measured(("A.Codec.Parse", 24)));
        using var output = new StringWriter();

        AllocationGate.PrintTable(rows, output);

        var text = output.ToString();
        Assert.Contains("FAIL: over budget", text, StringComparison.Ordinal);
        Assert.Contains("FAIL: missing from results", text, StringComparison.Ordinal);
        Assert.Contains("Allocation gate FAILED: 2 of 2", text, StringComparison.Ordinal);
    }

    [Fact]
    public void LoadBudgets_RejectsANegativeBudget()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, """{ "budgets": { "A.Codec.Parse": -1 } }""");
            Assert.Throws<InvalidDataException>(() => AllocationGate.LoadBudgets(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A typo or a rename in the checked-in file would otherwise only show as "missing" in CI.</summary>
    [Fact]
    public void CheckedInGateFile_NamesOnlyBenchmarksThatExist()
    {
        var budgets = AllocationGate.LoadBudgets(Path.Combine(AppContext.BaseDirectory, AllocationGate.DefaultFileName));
        var methods = BenchmarkNames.BenchmarkTypes().SelectMany(BenchmarkNames.MethodNames).ToHashSet(StringComparer.Ordinal);

        Assert.NotEmpty(budgets);
        Assert.All(budgets.Keys, name => Assert.Contains(name.Split('(')[0], methods));
    }

    /// <summary>
    /// The whole gate path in-process (short job, in-process toolchain, MemoryDiagnoser, filter, verdict) on
    /// two tiny benchmarks: the one that allocates 0 B passes, the one that starts allocating fails.
    /// </summary>
    [Fact]
    public void Gate_Fails_WhenARealBenchmarkStartsAllocating()
    {
        var type = typeof(GateProbeBenchmarks).FullName!;
        var budgets = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            [$"{type}.{nameof(GateProbeBenchmarks.Sum)}"] = 0,
            [$"{type}.{nameof(GateProbeBenchmarks.NewArray)}"] = 0,
        };

        var rows = GateRunner.Judge(budgets, [typeof(GateProbeBenchmarks)]);

        Assert.False(AllocationGate.Passed(rows));
        Assert.Equal(GateOutcome.Pass, rows.Single(r => r.Benchmark.EndsWith(".Sum", StringComparison.Ordinal)).Outcome);
        var allocating = rows.Single(r => r.Benchmark.EndsWith(".NewArray", StringComparison.Ordinal));
        Assert.Equal(GateOutcome.OverBudget, allocating.Outcome);
        Assert.InRange(allocating.Allocated!.Value, 64 + 16, 64 + 32); // 64 B of data plus the array header
    }

    private static Dictionary<string, long?> Measured(params (string Name, long Bytes)[] values) =>
        values.ToDictionary(v => v.Name, v => (long?)v.Bytes, StringComparer.Ordinal);
}

/// <summary>Two benchmarks for the in-process gate test: one allocation-free, one allocating 64 B per call.</summary>
public class GateProbeBenchmarks
{
    private readonly int[] _values = [1, 2, 3, 4, 5, 6, 7, 8];

    [Benchmark]
    public int Sum()
    {
        var sum = 0;
        foreach (var v in _values)
        {
            sum += v;
        }

        return sum;
    }

    [Benchmark]
    public byte[] NewArray() => new byte[64];
}
