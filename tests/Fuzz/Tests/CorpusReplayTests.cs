using Perf.Fuzz.Harness;

namespace Perf.Fuzz.Tests;

/// <summary>
/// What `dotnet test` runs of the fuzzer: every checked-in corpus and regression input through its target,
/// and a short deterministic mutation run per target. The long runs are `.ci/run`'s smoke step and manual.
/// </summary>
public class CorpusReplayTests
{
    private static readonly FuzzPaths Paths = new(
        Path.Combine(AppContext.BaseDirectory, "corpus"),
        Path.Combine(AppContext.BaseDirectory, "regressions"),
        Path.Combine(Path.GetTempPath(), "perf-fuzz-tests", "crashes"));

    public static TheoryData<string, string> CorpusFiles() => Files(Paths.CorpusRoot);

    public static TheoryData<string, string> RegressionFiles() => Files(Paths.RegressionsRoot);

    public static TheoryData<string> TargetNames() => [.. FuzzTargets.All.Select(t => t.Name)];

    [Theory]
    [MemberData(nameof(CorpusFiles))]
    public void CorpusInput_PassesItsTarget(string target, string file)
    {
        var finding = FuzzRunner.RunOne(FuzzTargets.Get(target), File.ReadAllBytes(Path.Combine(Paths.CorpusRoot, target, file)));

        Assert.Null(finding?.Message);
    }

    [Theory]
    [MemberData(nameof(RegressionFiles))]
    public void RegressionInput_PassesItsTarget(string target, string file)
    {
        // Each file once crashed, hung or broke an invariant of its target (docs/RELIABILITY.md, Fuzzing).
        var finding = FuzzRunner.RunOne(FuzzTargets.Get(target), File.ReadAllBytes(Path.Combine(Paths.RegressionsRoot, target, file)));

        Assert.Null(finding?.Message);
    }

    [Theory]
    [MemberData(nameof(TargetNames))]
    public void EveryTarget_HasACheckedInCorpus_BuiltFromItsSeeds(string target)
    {
        var t = FuzzTargets.Get(target);
        var files = FuzzPaths.Files(Paths.CorpusRoot, t).Select(Path.GetFileName).ToHashSet();

        foreach (var (name, data) in t.Seeds())
        {
            Assert.Contains($"seed-{name}.bin", files);
            Assert.Equal(data, File.ReadAllBytes(Path.Combine(Paths.CorpusRoot, target, $"seed-{name}.bin")));
        }
    }

    [Theory]
    [MemberData(nameof(TargetNames))]
    public void AShortMutationRun_FindsNothing(string target)
    {
        var log = new StringWriter();
        var stats = new FuzzRunner(FuzzTargets.Get(target), Paths, log).Run(TimeSpan.FromSeconds(1.5), seed: 13);

        Assert.True(stats.Finding is null, log.ToString());
        Assert.True(stats.Execs > stats.CorpusSize, $"only {stats.Execs} execs");
    }

    private static TheoryData<string, string> Files(string root)
    {
        var data = new TheoryData<string, string>();
        foreach (var target in FuzzTargets.All)
        {
            foreach (var file in FuzzPaths.Files(root, target))
            {
                data.Add(target.Name, Path.GetFileName(file));
            }
        }

        return data;
    }
}
