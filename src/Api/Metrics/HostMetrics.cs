using System.Diagnostics;
using System.Diagnostics.Metrics;
using Perf.Api.Edge;
using Perf.Core;

namespace Perf.Api.Metrics;

/// <summary>
/// Host-level observable instruments (meter <c>Perf.Host</c>): process memory and GC, edge queue depths and
/// connections. Observed only when scraped, so nothing here runs on the message path. The meter comes from
/// <see cref="IMeterFactory"/> and is disposed with the host, so a stopped host stops reporting.
/// </summary>
internal sealed class HostMetrics
{
    public const string MeterName = "Perf.Host";

    public HostMetrics(IMeterFactory meters, PerfEngine engine, EdgeHub edges)
    {
        var meter = meters.Create(MeterName);
        meter.CreateObservableCounter("process.gc.collections", ObserveCollections,
            description: "Garbage collections since start, by generation");
        meter.CreateObservableCounter("process.allocated", () => GC.GetTotalAllocatedBytes(), unit: "By",
            description: "Bytes allocated on the managed heap since start");
        meter.CreateObservableGauge("process.working_set", () => Environment.WorkingSet, unit: "By",
            description: "Working set of the process");
        meter.CreateObservableGauge("process.heap", () => GC.GetGCMemoryInfo().HeapSizeBytes, unit: "By",
            description: "Managed heap size after the last collection");
        meter.CreateObservableGauge("edge.queue.depth", () => ObserveEdgeQueues(engine),
            description: "Downlinks queued for an edge and not yet acknowledged, by edge");
        meter.CreateObservableGauge("edge.connected", () => ObserveEdgesConnected(engine, edges),
            description: "Edges with a live gRPC stream");
        // A full disk refuses every uplink until there is room again, and a nearly full one stalled PUBACKs for
        // up to 2 s here (docs/PERFORMANCE.md, "Session of 2026-11-24"): worth an alert well before either.
        meter.CreateObservableGauge("data_dir.free", () => new DriveInfo(Path.GetFullPath(engine.DataDir)).AvailableFreeSpace, unit: "By",
            description: "Bytes available to this process on the file system of DATA_DIR (uplink log, state store)");
        meter.CreateObservableGauge("storage.available", () => engine.StorageFailure is null ? 1 : 0,
            description: "1 while the uplink log accepts writes, 0 while it recovers from a failed write (uplinks refused)");
    }

    private static IEnumerable<Measurement<long>> ObserveCollections()
    {
        for (var generation = 0; generation <= GC.MaxGeneration; generation++)
        {
            yield return new Measurement<long>(GC.CollectionCount(generation), new KeyValuePair<string, object?>("generation", "gen" + generation));
        }
    }

    private static IEnumerable<Measurement<long>> ObserveEdgeQueues(PerfEngine engine)
    {
        foreach (var tenant in engine.Registry.ListTenants())
        {
            foreach (var edge in engine.Registry.ListEdges(tenant.Id))
            {
                yield return new Measurement<long>(engine.Edges.PendingCount(edge.Id), new KeyValuePair<string, object?>("edge", edge.Name));
            }
        }
    }

    private static long ObserveEdgesConnected(PerfEngine engine, EdgeHub edges) =>
        engine.Registry.ListTenants().Sum(t => engine.Registry.ListEdges(t.Id).Count(e => edges.IsConnected(e.Id)));
}
