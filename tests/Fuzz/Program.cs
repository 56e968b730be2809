using System.Globalization;
using Perf.Fuzz.Harness;

namespace Perf.Fuzz;

/// <summary>
/// The fuzzer's command line (the same assembly is the xunit project that replays the corpus):
/// <code>
/// dotnet run -c Release --project tests/Fuzz -- --all --seconds 90        # every target, 90 s in total
/// dotnet run -c Release --project tests/Fuzz -- --target mqtt --seconds 600 --seed 7
/// dotnet run -c Release --project tests/Fuzz -- --target mqtt --replay tests/Fuzz/crashes/mqtt/crash-....bin
/// dotnet run -c Release --project tests/Fuzz -- --write-corpus           # regenerate corpus/&lt;target&gt;/seed-*.bin
/// dotnet run -c Release --project tests/Fuzz -- --afl mqtt               # under afl-fuzz (see docs/RELIABILITY.md)
/// </code>
/// Exit code 0: no finding; 1: a crash, hang or broken invariant (printed with seed, iteration and hex,
/// saved under tests/Fuzz/crashes/&lt;target&gt;/); 2: bad arguments.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var targets = new List<FuzzTarget>();
        double seconds = 60;
        int seed = 1;
        int hangMs = 1000;
        var replay = new List<string>();
        string? afl = null;
        bool writeCorpus = false, list = false;
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                switch (args[i])
                {
                    case "--all":
                        targets.AddRange(FuzzTargets.All);
                        break;
                    case "--target":
                        targets.AddRange(args[++i].Split(',').Select(FuzzTargets.Get));
                        break;
                    case "--seconds":
                        seconds = double.Parse(args[++i], CultureInfo.InvariantCulture);
                        break;
                    case "--seed":
                        seed = int.Parse(args[++i], CultureInfo.InvariantCulture);
                        break;
                    case "--hang-ms":
                        hangMs = int.Parse(args[++i], CultureInfo.InvariantCulture);
                        break;
                    case "--replay":
                        while (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                        {
                            replay.Add(args[++i]);
                        }

                        break;
                    case "--afl":
                        afl = args[++i];
                        break;
                    case "--write-corpus":
                        writeCorpus = true;
                        break;
                    case "--list":
                        list = true;
                        break;
                    default:
                        throw new ArgumentException($"unknown argument '{args[i]}'");
                }
            }
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or IndexOutOfRangeException)
        {
            Console.Error.WriteLine(ex.Message);
            Console.Error.WriteLine("usage: --all | --target NAME[,NAME] [--seconds N] [--seed N] [--hang-ms N] | --replay FILE... | --afl NAME | --write-corpus | --list");
            return 2;
        }

        if (list)
        {
            foreach (var t in FuzzTargets.All)
            {
                Console.WriteLine($"{t.Name,-16} {t.Description}");
            }

            return 0;
        }

        if (afl is not null)
        {
            return AflEntry.Run(FuzzTargets.Get(afl));
        }

        var paths = FuzzPaths.Discover();
        if (writeCorpus)
        {
            return WriteCorpus(paths, targets.Count > 0 ? targets : FuzzTargets.All);
        }

        if (targets.Count == 0)
        {
            Console.Error.WriteLine("no target: use --all or --target NAME (--list shows them)");
            return 2;
        }

        return replay.Count > 0 ? Replay(targets, replay) : Fuzz(targets.Distinct().ToList(), paths, seconds, seed, hangMs);
    }

    private static int Fuzz(List<FuzzTarget> targets, FuzzPaths paths, double seconds, int seed, int hangMs)
    {
        var each = TimeSpan.FromSeconds(seconds / targets.Count);
        Console.WriteLine($"fuzzing {targets.Count} target(s), {each.TotalSeconds:0.#} s each, seed {seed}, hang after {hangMs} ms; corpus {paths.CorpusRoot}");
        var results = new List<FuzzStats>();
        foreach (var target in targets)
        {
            var stats = new FuzzRunner(target, paths, Console.Out) { HangMilliseconds = hangMs }.Run(each, seed);
            results.Add(stats);
            Console.WriteLine($"  {stats.Target,-16} {stats.Execs,10:N0} execs {stats.ExecsPerSecond,9:N0}/s  corpus {stats.CorpusSize,5}  slow {stats.SlowInputs}  {(stats.Finding is null ? "ok" : stats.Finding.Kind.ToUpperInvariant())}");
            if (stats.Finding is { Kind: "hang" })
            {
                break; // A stuck thread keeps a core busy: stop here.
            }
        }

        int findings = results.Count(r => r.Finding is not null);
        Console.WriteLine($"fuzz: {results.Sum(r => r.Execs):N0} execs, {findings} finding(s)");
        return findings == 0 ? 0 : 1;
    }

    private static int Replay(List<FuzzTarget> targets, List<string> files)
    {
        int failures = 0;
        foreach (var file in files)
        {
            var input = File.ReadAllBytes(file);
            foreach (var target in targets)
            {
                var finding = FuzzRunner.RunOne(target, input);
                Console.WriteLine($"{target.Name} {file}: {(finding is null ? "ok" : finding.Kind + ": " + finding.Message)}");
                failures += finding is null ? 0 : 1;
            }
        }

        return failures == 0 ? 0 : 1;
    }

    private static int WriteCorpus(FuzzPaths paths, IEnumerable<FuzzTarget> targets)
    {
        foreach (var target in targets)
        {
            var dir = Path.Combine(paths.CorpusRoot, target.Name);
            Directory.CreateDirectory(dir);
            foreach (var (name, data) in target.Seeds())
            {
                if (FuzzRunner.RunOne(target, data) is { } finding)
                {
                    Console.Error.WriteLine($"seed {target.Name}/{name} fails its own target: {finding.Message}");
                    return 1;
                }

                File.WriteAllBytes(Path.Combine(dir, $"seed-{name}.bin"), data);
            }

            Console.WriteLine($"{dir}: {target.Seeds().Count()} seeds");
        }

        return 0;
    }
}

/// <summary>
/// <c>--afl TARGET</c>: one process serves afl-fuzz's fork server through SharpFuzz; documented parse
/// errors are caught inside the target, anything else escapes and afl records a crash.
/// </summary>
internal static class AflEntry
{
    public static int Run(FuzzTarget target)
    {
        SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
        {
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            target.Run(memory.ToArray());
        });
        return 0;
    }
}
