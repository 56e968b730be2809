namespace Perf.Api.Edge;

/// <summary>
/// Keeps the edge port to the edge protocol, as the reference's port 7070 serves only <c>edge.EdgeRpcService</c>:
/// the REST API, the device API, the console and the metrics answer 404 there, and the edge RPC answers 404 on
/// every other port. Operators open the edge port to their edges without opening the rest with it.
/// </summary>
internal static class EdgeDoorFilter
{
    private const string ServicePath = "/edge.EdgeRpcService";

    /// <summary>Adds the filter ahead of everything else; <paramref name="edgePort"/> gives the edge listener's bound port once started.</summary>
    public static void UseEdgeDoorFilter(this WebApplication app, Func<int?> edgePort) =>
        app.Use((context, next) =>
        {
            var onEdgePort = context.Connection.LocalPort == edgePort();
            var isEdgeRpc = context.Request.Path.StartsWithSegments(ServicePath, StringComparison.Ordinal);
            return onEdgePort == isEdgeRpc
                ? next(context)
                : Rest.ApiError.NotFound(onEdgePort ? "The edge port serves only edge.EdgeRpcService" : "edge.EdgeRpcService is served on the edge port").ExecuteAsync(context);
        });
}
