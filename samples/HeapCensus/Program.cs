using System.Globalization;
using Microsoft.Diagnostics.Runtime;

// Heap census of a running .NET process (issue 12, memory per idle connection): live objects per type
// (count, bytes), the GC segments' sizes, and optionally a second census's difference divided by N.
//   Perf.HeapCensus <pid> [--top 40] [--save before.tsv] [--diff before.tsv --per 9000] [--owners TYPE]
// --owners TYPE also counts, for the objects of TYPE (e.g. System.Threading.Lock), the types of the objects that
// reference them: who holds them.
// The process is suspended while the heap is walked (a few seconds for a few hundred MB). The walk sees
// every object still on the heap, garbage included: force a full GC first (our host: GET /health/heap
// with PERF_DIAGNOSTICS=true) for a census of live objects only.
if (args.Length == 0 || !int.TryParse(args[0], CultureInfo.InvariantCulture, out int pid))
{
    Console.Error.WriteLine("usage: Perf.HeapCensus <pid> [--top 40] [--save file.tsv] [--diff file.tsv --per N] [--owners TYPE]");
    return 2;
}

int top = 40;
string? save = null, diff = null, owned = null;
double per = 1;
for (int i = 1; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--top": top = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--save": save = args[i + 1]; break;
        case "--diff": diff = args[i + 1]; break;
        case "--per": per = double.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--owners": owned = args[i + 1]; break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}

var census = new Dictionary<string, (long Count, long Bytes)>(StringComparer.Ordinal);
var owners = new Dictionary<string, long>(StringComparer.Ordinal);
long total = 0, objects = 0;
using (var target = DataTarget.AttachToProcess(pid, suspend: true))
{
    // The DAC next to the target's runtime (no symbol server on Linux); ClrMD cannot read the version of a
    // live Linux runtime (it reports 0.0), so the match is by location: the DAC shipped with that very runtime.
    var clr = target.ClrVersions[0];
    var dac = Path.Combine(Path.GetDirectoryName(clr.ModuleInfo.FileName)!, "libmscordaccore.so");
    using var runtime = File.Exists(dac) ? clr.CreateRuntime(dac, ignoreMismatch: true) : clr.CreateRuntime();
    var heap = runtime.Heap;
    foreach (var segment in heap.Segments)
    {
        Console.WriteLine($"segment {segment.Kind,-10} committed {segment.CommittedMemory.Length / 1024,9:N0} KiB  used {segment.ObjectRange.Length / 1024,9:N0} KiB");
    }

    foreach (var obj in heap.EnumerateObjects())
    {
        if (!obj.IsValid)
        {
            continue;
        }

        string name = obj.Type?.Name ?? "<unknown>";
        long size = (long)obj.Size;
        var entry = census.GetValueOrDefault(name);
        census[name] = (entry.Count + 1, entry.Bytes + size);
        total += size;
        objects++;
        if (owned is not null)
        {
            foreach (var reference in obj.EnumerateReferences())
            {
                if (reference.Type?.Name == owned)
                {
                    owners[name] = owners.GetValueOrDefault(name) + 1;
                }
            }
        }
    }
}

if (owned is not null)
{
    Console.WriteLine($"objects referencing a {owned}, by type:");
    foreach (var (type, count) in owners.OrderByDescending(kv => kv.Value).Take(top))
    {
        Console.WriteLine($"{count,12:N0}  {type}");
    }
}

Console.WriteLine($"heap objects {objects:N0}, {total:N0} bytes");
if (save is not null)
{
    File.WriteAllLines(save, census.Select(kv => $"{kv.Key}\t{kv.Value.Count}\t{kv.Value.Bytes}"));
}

IEnumerable<(string Type, double Count, double Bytes)> rows;
if (diff is not null)
{
    var before = File.ReadAllLines(diff).Select(l => l.Split('\t')).ToDictionary(p => p[0], p => (Count: long.Parse(p[1], CultureInfo.InvariantCulture), Bytes: long.Parse(p[2], CultureInfo.InvariantCulture)));
    rows = census.Keys.Union(before.Keys).Select(k =>
    {
        var a = census.GetValueOrDefault(k);
        var b = before.GetValueOrDefault(k);
        return (k, (a.Count - b.Count) / per, (a.Bytes - b.Bytes) / per);
    });
    Console.WriteLine($"difference from {diff}, divided by {per:N0}: total {(total - before.Values.Sum(v => v.Bytes)) / per:N1} bytes");
}
else
{
    rows = census.Select(kv => (kv.Key, (double)kv.Value.Count, (double)kv.Value.Bytes));
}

Console.WriteLine($"{"bytes",14} {"count",12}  type");
foreach (var (type, count, bytes) in rows.OrderByDescending(r => Math.Abs(r.Bytes)).Take(top))
{
    Console.WriteLine($"{bytes,14:N1} {count,12:N2}  {type}");
}

return 0;
