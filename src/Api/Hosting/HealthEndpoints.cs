namespace Perf.Api.Hosting;

internal static class HealthEndpoints
{
    /// <summary><c>/health</c>: the process is alive. <c>/ready</c>: every door bound and storage open and writable. <c>/health/runtime</c>: GC counters and pause time.</summary>
    public static void MapHealthEndpoints(this WebApplication app)
    {
        app.MapGet("/health", () => Results.Json(new { status = "UP" }));
        app.MapGet("/ready", (BoundEndpoints endpoints, Perf.Core.PerfEngine engine) =>
            !(endpoints.AllBound && engine.IsReady) ? Results.Json(new { status = "STARTING" }, statusCode: StatusCodes.Status503ServiceUnavailable)
            : engine.StorageFailure is { } failure
                // The uplink log failed a write (a full or failing disk): uplinks are refused until it is reopened.
                ? Results.Json(new { status = "STORAGE_UNAVAILABLE", error = failure }, statusCode: StatusCodes.Status503ServiceUnavailable)
                : Results.Json(new { status = "READY" }));

        // Issue 12's allocation figure: read before and after a load run, divide the difference by the
        // messages acknowledged in between (the runtime's own counter, no dotnet-counters needed).
        app.MapGet("/health/runtime", () => Results.Json(new
        {
            allocatedBytes = GC.GetTotalAllocatedBytes(precise: false),
            gen0Collections = GC.CollectionCount(0),
            gen1Collections = GC.CollectionCount(1),
            gen2Collections = GC.CollectionCount(2),
            heapBytes = GC.GetTotalMemory(forceFullCollection: false),
            // Time the process spent paused by collections since it started: read around a run to tell a GC from
            // other stalls in its latency.
            gcPauseMs = (long)GC.GetTotalPauseDuration().TotalMilliseconds,
            serverGc = System.Runtime.GCSettings.IsServerGC,
        }));

        // PERF_DIAGNOSTICS=true only: the listener costs about 1% extra allocation and /health/heap blocks the process for a full GC.
        if (app.Services.GetRequiredService<HostSettings>().Diagnostics)
        {
            var diagnostics = app.Services.GetRequiredService<RuntimeDiagnostics>();
            app.MapGet("/health/allocations", (int? top, bool? reset) => Results.Json(diagnostics.Snapshot(Math.Clamp(top ?? 30, 1, 1000), reset ?? false)));
            app.MapGet("/health/heap", () => Results.Json(RuntimeDiagnostics.HeapCensus()));
        }
    }
}
