using BenchmarkDotNet.Columns;
using Perfolizer.Horology;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Exporters.Csv;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using BenchmarkDotNet.Validators;

namespace Perf.Bench;

/// <summary>
/// The one configuration every suite runs with (STYLE.md item 11): allocations measured, JIT optimization
/// checked, results exported as GitHub markdown, JSON and CSV into BenchmarkDotNet.Artifacts/.
/// </summary>
public static class BenchConfig
{
    public const string ArtifactsFolder = "BenchmarkDotNet.Artifacts";

    /// <summary>
    /// The config for full runs: no job of its own, so BenchmarkDotNet's default job (out of process,
    /// auto iterations) runs unless the command line names one (<c>--job short</c>, <c>--job dry</c>).
    /// </summary>
    public static IConfig Full() => Common(null);

    /// <summary>
    /// The config for the allocation gate: few iterations and the in-process toolchain, which skips
    /// generating and building a project per benchmark (the slow part on 2 cores). Allocated bytes per
    /// operation do not depend on the iteration count, so a short job measures them exactly; 100 ms
    /// iterations and no overhead evaluation keep each benchmark to a few seconds. The allocation count is
    /// process-wide, so anything a background thread allocates while the memory diagnoser's iteration runs
    /// is charged to the benchmark: 5 warm-up iterations (not 2) give background work that
    /// settles after start-up (most likely tiered JIT promotion) time to
    /// finish first. With 2, the 10-50 us protobuf benchmarks showed 1 B/op on this machine at load average 20.
    /// </summary>
    public static IConfig Gate() => Common(
        Job.ShortRun
            .WithWarmupCount(5)
            .WithIterationCount(3)
            .WithIterationTime(TimeInterval.FromMilliseconds(100))
            .WithEvaluateOverhead(false)
            .WithToolchain(InProcessEmitToolchain.Instance)
            .WithId("Gate"));

    private static ManualConfig Common(Job? job)
    {
        var config = ManualConfig.CreateEmpty();
        if (job is not null)
        {
            config.AddJob(job);
        }

        config.AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumnProvider(DefaultColumnProviders.Instance)
            .AddLogger(ConsoleLogger.Default)
            .AddExporter(MarkdownExporter.GitHub, JsonExporter.Full, CsvExporter.Default)
            .AddValidator(JitOptimizationsValidator.FailOnError)
            .AddValidator(DefaultConfig.Instance.GetValidators().ToArray())
            .WithArtifactsPath(Path.Combine(Directory.GetCurrentDirectory(), ArtifactsFolder))
            .WithOptions(ConfigOptions.JoinSummary)
            // The out-of-process toolchain builds bench/ and everything it references (src/Api with its
            // protobuf code generation included) per run; on this shared 2-core machine that took over
            // BenchmarkDotNet's default 2 minutes and `--filter '*' --job dry` failed with a build timeout.
            .WithBuildTimeout(TimeSpan.FromMinutes(10));
        return config;
    }
}
