using System.Globalization;
using System.Text;
using Microsoft.Diagnostics.Tracing.Etlx;
using Microsoft.Diagnostics.Tracing.Parsers.Clr;

// Usage: Perf.AllocStacks <trace.nettrace> [frames=14] [top=25]
// Every AllocationTick event (one per ~100 KB allocated on a heap, naming the type of the allocation that
// crossed the mark) is counted with its amount under its type and under its call stack (innermost first).
if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Perf.AllocStacks <trace.nettrace> [frames] [top]");
    return 2;
}

var frames = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 14;
var top = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 25;
var etlx = TraceLog.CreateFromEventPipeDataFile(args[0]);
using var log = new TraceLog(etlx);
var byType = new Dictionary<string, long>(StringComparer.Ordinal);
var byStack = new Dictionary<string, long>(StringComparer.Ordinal);
long total = 0;
foreach (var e in log.Events)
{
    if (e is not GCAllocationTickTraceData tick)
    {
        continue;
    }

    var amount = tick.AllocationAmount64;
    total += amount;
    byType[tick.TypeName] = byType.GetValueOrDefault(tick.TypeName) + amount;
    var stack = new StringBuilder(tick.TypeName);
    var frame = e.CallStack();
    for (var n = 0; frame is not null && n < frames; n++, frame = frame.Caller)
    {
        var name = frame.CodeAddress.FullMethodName;
        stack.Append("\n    ").Append(string.IsNullOrEmpty(name) ? frame.CodeAddress.ModuleName + "!?" : name);
    }

    var key = stack.ToString();
    byStack[key] = byStack.GetValueOrDefault(key) + amount;
}

if (total == 0)
{
    Console.WriteLine("no AllocationTick events (was the trace taken with --profile gc-verbose?)");
    return 1;
}

Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"sampled bytes {total:N0}\n\nby type:"));
foreach (var (type, bytes) in byType.OrderByDescending(x => x.Value).Take(top))
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{bytes * 100.0 / total,6:F1}% {bytes,14:N0} {type}"));
}

Console.WriteLine("\nby stack:");
foreach (var (stack, bytes) in byStack.OrderByDescending(x => x.Value).Take(top))
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{bytes * 100.0 / total,6:F1}% {bytes,14:N0} {stack}\n"));
}

return 0;
