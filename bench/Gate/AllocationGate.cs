using System.Text.Json;

namespace Perf.Bench.Gate;

/// <summary>One row of the gate's verdict.</summary>
public sealed record GateRow(string Benchmark, long Budget, long? Allocated, GateOutcome Outcome);

public enum GateOutcome
{
    Pass,
    OverBudget,
    Missing,
}

/// <summary>
/// The allocation gate's rule, kept free of BenchmarkDotNet so it can be checked on its own:
/// every budgeted benchmark must be in the results and allocate at most its budget per operation.
/// </summary>
public static class AllocationGate
{
    public const string DefaultFileName = "allocation-gate.json";

    /// <summary>Reads <c>{"budgets": {"Ns.Type.Method": maxBytesPerOp, ...}}</c>.</summary>
    public static IReadOnlyDictionary<string, long> LoadBudgets(string path)
    {
        using var stream = File.OpenRead(path);
        using var document = JsonDocument.Parse(stream, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        if (!document.RootElement.TryGetProperty("budgets", out var budgets) || budgets.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{path}: expected an object property \"budgets\".");
        }

        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var property in budgets.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetInt64(out var bytes) || bytes < 0)
            {
                throw new InvalidDataException($"{path}: budget of '{property.Name}' must be a non-negative integer.");
            }

            result.Add(property.Name, bytes);
        }

        return result;
    }

    /// <summary>Judges measured bytes per operation (null: the benchmark ran but reported no allocation figure).</summary>
    public static IReadOnlyList<GateRow> Evaluate(IReadOnlyDictionary<string, long> budgets, IReadOnlyDictionary<string, long?> measured)
    {
        var rows = new List<GateRow>(budgets.Count);
        foreach (var (name, budget) in budgets.OrderBy(b => b.Key, StringComparer.Ordinal))
        {
            if (!measured.TryGetValue(name, out var allocated) || allocated is null)
            {
                rows.Add(new GateRow(name, budget, null, GateOutcome.Missing));
            }
            else
            {
                rows.Add(new GateRow(name, budget, allocated, allocated.Value <= budget ? GateOutcome.Pass : GateOutcome.OverBudget));
            }
        }

        return rows;
    }

    public static bool Passed(IReadOnlyList<GateRow> rows) => rows.All(r => r.Outcome == GateOutcome.Pass);

    public static void PrintTable(IReadOnlyList<GateRow> rows, TextWriter output)
    {
        var width = Math.Max("Benchmark".Length, rows.Count == 0 ? 0 : rows.Max(r => r.Benchmark.Length));
        output.WriteLine();
        output.WriteLine($"{"Benchmark".PadRight(width)} | {"Budget B/op",11} | {"Allocated B/op",14} | Verdict");
        output.WriteLine($"{new string('-', width)}-|-{new string('-', 11)}-|-{new string('-', 14)}-|--------");
        foreach (var row in rows)
        {
            var allocated = row.Allocated?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-";
            var verdict = row.Outcome switch
            {
                GateOutcome.Pass => "ok",
                GateOutcome.OverBudget => "FAIL: over budget",
                GateOutcome.Missing => "FAIL: missing from results",
                _ => throw new ArgumentOutOfRangeException(nameof(rows)),
            };
            output.WriteLine($"{row.Benchmark.PadRight(width)} | {row.Budget,11} | {allocated,14} | {verdict}");
        }

        var failed = rows.Count(r => r.Outcome != GateOutcome.Pass);
        output.WriteLine();
        output.WriteLine(failed == 0
            ? $"Allocation gate passed: {rows.Count} benchmarks within budget."
            : $"Allocation gate FAILED: {failed} of {rows.Count} benchmarks over budget or missing.");
    }
}
