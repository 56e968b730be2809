using System.Globalization;
using System.Reflection;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Running;

namespace Perf.Bench.Gate;

/// <summary>The names the gate file uses: <c>Namespace.Type.Method</c>, plus <c>(Name=value, ...)</c> for parameterized cases.</summary>
public static class BenchmarkNames
{
    public static string Of(BenchmarkCase benchmarkCase)
    {
        var descriptor = benchmarkCase.Descriptor;
        var name = $"{descriptor.Type.FullName}.{descriptor.WorkloadMethod.Name}";
        if (benchmarkCase.Parameters.Count == 0)
        {
            return name;
        }

        var parameters = string.Join(", ", benchmarkCase.Parameters.Items.Select(p => string.Create(CultureInfo.InvariantCulture, $"{p.Name}={p.Value}")));
        return $"{name}({parameters})";
    }

    /// <summary>Every public class in this assembly with at least one [Benchmark] method.</summary>
    public static Type[] BenchmarkTypes() => typeof(BenchmarkNames).Assembly.GetTypes()
        .Where(t => t is { IsClass: true, IsAbstract: false, IsPublic: true }
                    && t.GetMethods(BindingFlags.Public | BindingFlags.Instance).Any(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null))
        .OrderBy(t => t.FullName, StringComparer.Ordinal)
        .ToArray();

    public static IEnumerable<string> MethodNames(Type type) => type.GetMethods(BindingFlags.Public | BindingFlags.Instance)
        .Where(m => m.GetCustomAttribute<BenchmarkAttribute>() is not null)
        .Select(m => $"{type.FullName}.{m.Name}")
        .OrderBy(n => n, StringComparer.Ordinal);
}
