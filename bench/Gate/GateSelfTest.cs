namespace Perf.Bench.Gate;

/// <summary>
/// Checks the gate's rule without running benchmarks (<c>--gate-selftest</c>): a benchmark within budget
/// passes, one that starts allocating fails, one missing from the results fails.
/// </summary>
public static class GateSelfTest
{
    public static int Run()
    {
        var budgets = new Dictionary<string, long> { ["A.Zero"] = 0, ["A.Small"] = 24 };
        var checks = new (string Name, Func<bool> Check)[]
        {
            ("Evaluate_Passes_WhenEveryBenchmarkIsWithinBudget", () =>
                AllocationGate.Passed(AllocationGate.Evaluate(budgets, Measured(("A.Zero", 0), ("A.Small", 24))))),
            ("Evaluate_Fails_WhenAZeroBudgetBenchmarkStartsAllocating", () =>
                AllocationGate.Evaluate(budgets, Measured(("A.Zero", 1), ("A.Small", 0))) is var rows
                && !AllocationGate.Passed(rows) && rows.Single(r => r.Benchmark == "A.Zero").Outcome == GateOutcome.OverBudget),
            ("Evaluate_Fails_WhenABudgetedBenchmarkIsMissing", () =>
                AllocationGate.Evaluate(budgets, Measured(("A.Zero", 0))) is var rows
                && !AllocationGate.Passed(rows) && rows.Single(r => r.Benchmark == "A.Small").Outcome == GateOutcome.Missing),
            ("Evaluate_Fails_WhenABenchmarkReportedNoAllocationFigure", () =>
                !AllocationGate.Passed(AllocationGate.Evaluate(budgets, new Dictionary<string, long?> { ["A.Zero"] = 0, ["A.Small"] = null }))),
            ("Evaluate_IgnoresMeasuredBenchmarksWithoutABudget", () =>
                AllocationGate.Passed(AllocationGate.Evaluate(budgets, Measured(("A.Zero", 0), ("A.Small", 8), ("B.Unbudgeted", 4096))))),
        };

        var failed = 0;
        foreach (var (name, check) in checks)
        {
            var ok = check();
            failed += ok ? 0 : 1;
            Console.WriteLine($"{(ok ? "PASS" : "FAIL")} {name}");
        }

        Console.WriteLine($"{checks.Length - failed} passed, {failed} failed");
        return failed == 0 ? 0 : 1;
    }

    private static Dictionary<string, long?> Measured(params (string Name, long Bytes)[] values) =>
        values.ToDictionary(v => v.Name, v => (long?)v.Bytes, StringComparer.Ordinal);
}
