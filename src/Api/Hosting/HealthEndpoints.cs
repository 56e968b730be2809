namespace Perf.Api.Hosting;

internal static class HealthEndpoints
{
    /// <summary><c>/health</c>: the process is alive. <c>/ready</c>: every door bound and storage open.</summary>
    public static void MapHealthEndpoints(this WebApplication app)
    {
        app.MapGet("/health", () => Results.Json(new { status = "UP" }));
        app.MapGet("/ready", (BoundEndpoints endpoints, Perf.Core.PerfEngine engine) => endpoints.AllBound && engine.IsReady
            ? Results.Json(new { status = "READY" })
            : Results.Json(new { status = "STARTING" }, statusCode: StatusCodes.Status503ServiceUnavailable));
    }
}
