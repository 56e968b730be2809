using System.Diagnostics.Tracing;
using System.Runtime;

namespace Perf.Api.Hosting;

/// <summary>
/// Opt-in (<c>PERF_DIAGNOSTICS=true</c>) profiling for issue 12, with no tool outside the process:
/// <list type="bullet">
/// <item><c>GET /health/allocations</c>: the runtime's AllocationTick samples (one event each time a heap
/// has allocated about 100 KB, naming the type of the allocation that crossed the mark), summed per type
/// since start or the last <c>?reset=true</c>. Over many samples a type's share of the sampled bytes is its
/// share of all allocated bytes (the sampling is by bytes, so large and frequent types both show).</item>
/// <item><c>GET /health/heap</c>: a full blocking, compacting collection, then the live managed heap
/// (<see cref="GC.GetGCMemoryInfo(GCKind)"/>): what survives, per generation, pinned objects, fragmentation
/// and committed bytes; what the process holds beyond that is native (sockets, pool slabs, stacks, code).</item>
/// </list>
/// The listener itself allocates per event (its payload objects), about 1 KB per 100 KB sampled, and shows
/// up in the list as <c>EventWrittenEventArgs</c> and friends; off by default for that reason.
/// </summary>
internal sealed class RuntimeDiagnostics : EventListener
{
    // Keywords of Microsoft-Windows-DotNETRuntime: GC (0x1); AllocationTick is written at Verbose.
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private const int AllocationTickEventId = 10;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, TypeSamples> _byType = new(StringComparer.Ordinal);
    private long _samples;
    private long _sampledBytes;
    private long _allocatedAtReset = GC.GetTotalAllocatedBytes(precise: false);
    private DateTime _resetAt = DateTime.UtcNow;

    protected override void OnEventSourceCreated(EventSource eventSource)
    {
        if (eventSource.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(eventSource, EventLevel.Verbose, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.EventId != AllocationTickEventId || e.Payload is null || e.PayloadNames is null)
        {
            return;
        }

        string type = "?";
        long amount = 0;
        for (int i = 0; i < e.PayloadNames.Count; i++)
        {
            switch (e.PayloadNames[i])
            {
                case "TypeName":
                    type = e.Payload[i] as string ?? "?";
                    break;
                case "AllocationAmount64":
                    amount = Convert.ToInt64(e.Payload[i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
                case "AllocationAmount" when amount == 0:
                    amount = Convert.ToInt64(e.Payload[i], System.Globalization.CultureInfo.InvariantCulture);
                    break;
            }
        }

        lock (_lock)
        {
            _samples++;
            _sampledBytes += amount;
            ref var entry = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_byType, type, out _);
            entry.Samples++;
            entry.Bytes += amount;
        }
    }

    /// <summary>The top <paramref name="top"/> types by sampled bytes, each with its estimated share of all bytes allocated since the reset.</summary>
    public object Snapshot(int top, bool reset)
    {
        lock (_lock)
        {
            long allocated = GC.GetTotalAllocatedBytes(precise: false) - _allocatedAtReset;
            var types = _byType
                .OrderByDescending(kv => kv.Value.Bytes)
                .Take(top)
                .Select(kv => new
                {
                    type = kv.Key,
                    samples = kv.Value.Samples,
                    sampledBytes = kv.Value.Bytes,
                    share = _sampledBytes == 0 ? 0 : Math.Round((double)kv.Value.Bytes / _sampledBytes, 4),
                    estimatedBytes = _sampledBytes == 0 ? 0 : (long)((double)kv.Value.Bytes / _sampledBytes * allocated),
                })
                .ToList();
            var snapshot = new
            {
                since = _resetAt,
                allocatedBytes = allocated,
                samples = _samples,
                sampledBytes = _sampledBytes,
                types,
            };
            if (reset)
            {
                _byType.Clear();
                _samples = 0;
                _sampledBytes = 0;
                _allocatedAtReset = GC.GetTotalAllocatedBytes(precise: false);
                _resetAt = DateTime.UtcNow;
            }

            return snapshot;
        }
    }

    /// <summary>Collects everything collectable, then reports the live heap.</summary>
    public static object HeapCensus()
    {
        GCSettings.LargeObjectHeapCompactionMode = GCLargeObjectHeapCompactionMode.CompactOnce;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        var info = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        string[] names = ["gen0", "gen1", "gen2", "loh", "poh"];
        var generations = info.GenerationInfo.ToArray();
        return new
        {
            liveBytes = GC.GetTotalMemory(forceFullCollection: false),
            heapSizeBytes = info.HeapSizeBytes,
            fragmentedBytes = info.FragmentedBytes,
            committedBytes = info.TotalCommittedBytes,
            pinnedObjects = info.PinnedObjectsCount,
            promotedBytes = info.PromotedBytes,
            generations = generations.Select((g, i) => new { name = i < names.Length ? names[i] : "gen" + i, sizeBytes = g.SizeAfterBytes, fragmentedBytes = g.FragmentationAfterBytes }),
            gcHeapCount = info.Generation == 2 ? GCHeapCount() : 0,
            serverGc = GCSettings.IsServerGC,
            concurrent = info.Concurrent,
            latencyMode = GCSettings.LatencyMode.ToString(),
            threads = System.Diagnostics.Process.GetCurrentProcess().Threads.Count,
            threadPoolThreads = ThreadPool.ThreadCount,
        };
    }

    private static int GCHeapCount() => AppContext.GetData("GCHeapCount") is { } n ? Convert.ToInt32(n, System.Globalization.CultureInfo.InvariantCulture) : (GCSettings.IsServerGC ? Environment.ProcessorCount : 1);

    private struct TypeSamples
    {
        public long Samples;
        public long Bytes;
    }
}
