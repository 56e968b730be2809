using System.Diagnostics;

namespace Perf.Fuzz.Harness;

/// <summary>What went wrong with one input.</summary>
internal sealed record FuzzFinding(string Target, string Kind, string Message, byte[] Input, int Seed, long Iteration)
{
    public string? SavedTo { get; set; }
}

internal sealed record FuzzStats(string Target, long Execs, double Seconds, int CorpusSize, int SlowInputs, FuzzFinding? Finding)
{
    public double ExecsPerSecond => Seconds > 0 ? Execs / Seconds : 0;
}

/// <summary>
/// The mutational loop for one target: replays the corpus, then mutates corpus entries until the time is
/// up or an input fails. Inputs that show a behaviour signature not seen before join the in-memory corpus
/// (cheap feedback without coverage instrumentation). A watchdog flags an input still running after
/// <c>hangMs</c>; it re-runs that input on a fresh thread and reports a hang only if the re-run does not
/// finish within <c>ConfirmTimeout</c> (10 s) either (so a loaded machine's pause is not a finding).
/// </summary>
internal sealed class FuzzRunner(FuzzTarget target, FuzzPaths paths, TextWriter log)
{
    private const int MaxCorpus = 4096;

    private volatile byte[]? _current;
    private long _currentStarted;
    private long _iteration;
    private long _sequence;

    public int HangMilliseconds { get; init; } = 1000;

    /// <summary>How long the re-run of a suspect input may take before it is a hang.</summary>
    public TimeSpan ConfirmTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Runs one input and returns the finding, if any (no watchdog: for tests and replay).</summary>
    public static FuzzFinding? RunOne(FuzzTarget target, byte[] input, int seed = 0, long iteration = -1)
    {
        try
        {
            target.Run(input);
            return null;
        }
        catch (FuzzInvariantException ex)
        {
            return new FuzzFinding(target.Name, "invariant", ex.Message, input, seed, iteration);
        }
        catch (Exception ex)
        {
            return new FuzzFinding(target.Name, "crash", ex.ToString(), input, seed, iteration);
        }
    }

    public FuzzStats Run(TimeSpan duration, int seed)
    {
        var corpus = paths.LoadCorpus(target);
        var stopwatch = Stopwatch.StartNew();
        FuzzFinding? finding = null;
        long execs = 0;
        int slow = 0;
        var worker = new Thread(() => finding = Loop(corpus, duration, seed, ref execs))
        {
            IsBackground = true,
            Name = "fuzz-" + target.Name,
        };
        worker.Start();
        long confirmedSequence = -1;
        while (!worker.Join(100))
        {
            var input = _current;
            long iteration = Interlocked.Read(ref _iteration);
            long sequence = Interlocked.Read(ref _sequence);
            long elapsedMs = (long)Stopwatch.GetElapsedTime(Interlocked.Read(ref _currentStarted)).TotalMilliseconds;
            if (input is null || elapsedMs < HangMilliseconds || sequence == confirmedSequence)
            {
                continue;
            }

            confirmedSequence = sequence;
            var rerun = Stopwatch.StartNew();
            var confirm = new Thread(() => RunOne(target, input)) { IsBackground = true, Name = "fuzz-confirm" };
            confirm.Start();
            if (!confirm.Join(ConfirmTimeout))
            {
                var hang = new FuzzFinding(target.Name, "hang", $"still running after {elapsedMs} ms, and a re-run on a fresh thread did not finish within {ConfirmTimeout.TotalSeconds:0.#} s", input, seed, iteration);
                Report(hang);
                // The stuck threads are background threads: the process can still exit.
                return new FuzzStats(target.Name, Interlocked.Read(ref execs), stopwatch.Elapsed.TotalSeconds, corpus.Count, slow, hang);
            }

            slow++;
            log.WriteLine($"  [{target.Name}] slow input at iteration {iteration}: {elapsedMs} ms in the loop, re-run took {rerun.ElapsedMilliseconds} ms; not a hang ({input.Length} bytes)");
        }

        if (finding is not null)
        {
            Report(finding);
        }

        return new FuzzStats(target.Name, execs, stopwatch.Elapsed.TotalSeconds, corpus.Count, slow, finding);
    }

    private FuzzFinding? Loop(List<byte[]> corpus, TimeSpan duration, int seed, ref long execs)
    {
        var seen = new HashSet<ulong>();
        var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);

        // Every corpus entry as it is first.
        foreach (var input in corpus.ToArray())
        {
            if (Execute(input, seed, -1, seen, corpus: null, ref execs) is { } finding)
            {
                return finding;
            }
        }

        var rng = new Random(seed ^ (int)Segmenter.Hash(System.Text.Encoding.UTF8.GetBytes(target.Name)));
        var mutator = new Mutator(target.Dictionary, target.MaxInputLength);
        for (long i = 0; Stopwatch.GetTimestamp() < deadline; i++)
        {
            var parent = corpus[rng.Next(corpus.Count)];
            var child = mutator.Mutate(parent, r => corpus[r.Next(corpus.Count)], rng);
            if (Execute(child, seed, i, seen, corpus, ref execs) is { } finding)
            {
                return finding;
            }
        }

        _current = null;
        return null;
    }

    private FuzzFinding? Execute(byte[] input, int seed, long iteration, HashSet<ulong> seen, List<byte[]>? corpus, ref long execs)
    {
        Interlocked.Exchange(ref _currentStarted, Stopwatch.GetTimestamp());
        Interlocked.Exchange(ref _iteration, iteration);
        Interlocked.Increment(ref _sequence);
        _current = input;
        try
        {
            ulong signature = target.Run(input);
            if (seen.Add(signature) && corpus is not null && corpus.Count < MaxCorpus)
            {
                corpus.Add(input);
            }

            return null;
        }
        catch (FuzzInvariantException ex)
        {
            return new FuzzFinding(target.Name, "invariant", ex.Message, input, seed, iteration);
        }
        catch (Exception ex)
        {
            return new FuzzFinding(target.Name, "crash", ex.ToString(), input, seed, iteration);
        }
        finally
        {
            _current = null;
            Interlocked.Increment(ref execs);
        }
    }

    private void Report(FuzzFinding finding)
    {
        finding.SavedTo = paths.SaveCrash(finding);
        log.WriteLine($"FINDING [{finding.Target}] {finding.Kind} at seed {finding.Seed}, iteration {finding.Iteration} ({finding.Input.Length} bytes)");
        log.WriteLine($"  {finding.Message.Split('\n').Take(12).Aggregate((a, b) => a + "\n  " + b)}");
        var hex = Convert.ToHexString(finding.Input.AsSpan(0, Math.Min(finding.Input.Length, 2048)));
        log.WriteLine($"  input hex: {hex}{(finding.Input.Length > 2048 ? "..." : string.Empty)}");
        log.WriteLine($"  saved to {finding.SavedTo}");
        log.WriteLine($"  reproduce: dotnet run -c Release --project tests/Fuzz -- --target {finding.Target} --replay {finding.SavedTo}");
    }
}

/// <summary>Where the corpus, the regression inputs and the crashes live.</summary>
internal sealed class FuzzPaths(string corpusRoot, string regressionsRoot, string crashesRoot)
{
    public string CorpusRoot { get; } = corpusRoot;
    public string RegressionsRoot { get; } = regressionsRoot;
    public string CrashesRoot { get; } = crashesRoot;

    /// <summary>The checked-in source folders when run from the repository, else the copies next to the binary.</summary>
    public static FuzzPaths Discover()
    {
        var source = FindSourceFolder();
        var root = source ?? AppContext.BaseDirectory;
        return new FuzzPaths(Path.Combine(root, "corpus"), Path.Combine(root, "regressions"), Path.Combine(source ?? Directory.GetCurrentDirectory(), "crashes"));
    }

    public static string? FindSourceFolder()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "tests", "Fuzz");
                if (File.Exists(Path.Combine(candidate, "Fuzz.csproj")))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    /// <summary>corpus/&lt;target&gt; plus regressions/&lt;target&gt;; the target's built-in seeds when both are empty.</summary>
    public List<byte[]> LoadCorpus(FuzzTarget target)
    {
        var inputs = Files(CorpusRoot, target).Concat(Files(RegressionsRoot, target)).Select(File.ReadAllBytes).ToList();
        if (inputs.Count == 0)
        {
            inputs.AddRange(target.Seeds().Select(s => s.Data));
        }

        return inputs;
    }

    public static IEnumerable<string> Files(string root, FuzzTarget target)
    {
        var dir = Path.Combine(root, target.Name);
        return Directory.Exists(dir) ? Directory.EnumerateFiles(dir).Order(StringComparer.Ordinal) : [];
    }

    public string SaveCrash(FuzzFinding finding)
    {
        var dir = Path.Combine(CrashesRoot, finding.Target);
        Directory.CreateDirectory(dir);
        var path = Path.Combine(dir, $"{finding.Kind}-{Segmenter.Hash(finding.Input):x16}.bin");
        File.WriteAllBytes(path, finding.Input);
        return path;
    }
}
