using BenchmarkDotNet.Running;
using Perf.Bench;
using Perf.Bench.Gate;

// No interactive menu (STYLE.md item 11): with no arguments, list the suites and how to run them.
if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    PrintUsage();
    return 0;
}

if (args[0] == "--gate")
{
    var gateFile = args.Length > 1 ? args[1] : Path.Combine(AppContext.BaseDirectory, AllocationGate.DefaultFileName);
    return GateRunner.Run(gateFile);
}

if (args[0] == "--ingest")
{
    return await Perf.Bench.Core.IngestRun.RunAsync(args);
}

if (args[0] == "--gate-selftest")
{
    return GateSelfTest.Run();
}

var summaries = BenchmarkSwitcher.FromTypes(BenchmarkNames.BenchmarkTypes()).Run(args, BenchConfig.Full());
return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;

static void PrintUsage()
{
    Console.WriteLine("Perf.Bench: BenchmarkDotNet suites, one class per hot path (in-memory, no sockets).");
    Console.WriteLine();
    Console.WriteLine("Usage (from the repository root, where BenchmarkDotNet finds bench/Bench.csproj):");
    Console.WriteLine("  dotnet run -c Release --project bench -- --filter '<glob>' [BenchmarkDotNet options]");
    Console.WriteLine("      run the matching benchmarks, e.g. --filter '*' (all) or --filter '*PipeRoundTrip*'");
    Console.WriteLine("  dotnet run -c Release --project bench -- --list flat");
    Console.WriteLine("  dotnet run -c Release --project bench -- --gate [gate.json]");
    Console.WriteLine("      run the benchmarks budgeted in bench/allocation-gate.json with a short in-process job;");
    Console.WriteLine("      exit 1 when any allocates more bytes per operation than its budget or is missing");
    Console.WriteLine("  dotnet run -c Release --project bench -- --ingest [seconds]");
    Console.WriteLine("      in-process durable ingest rate and ack latency with 1 and 100 concurrent writers");
    Console.WriteLine("  dotnet run -c Release --project bench -- --gate-selftest");
    Console.WriteLine("      check the gate's pass/fail rule on synthetic results (no benchmarks run)");
    Console.WriteLine();
    Console.WriteLine($"Results (markdown, JSON, CSV) go to ./{BenchConfig.ArtifactsFolder}/.");
    Console.WriteLine();
    Console.WriteLine("Benchmarks:");
    foreach (var type in BenchmarkNames.BenchmarkTypes())
    {
        foreach (var name in BenchmarkNames.MethodNames(type))
        {
            Console.WriteLine($"  {name}");
        }
    }
}
