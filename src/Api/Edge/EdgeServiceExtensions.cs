namespace Perf.Api.Edge;

public static class EdgeServiceExtensions
{
    /// <summary>Registers the edge door: gRPC with the negotiated receive limit, the options and the hub.</summary>
    public static IServiceCollection AddEdges(this IServiceCollection services, IConfiguration configuration)
    {
        var options = EdgeOptions.From(configuration);
        services.AddSingleton(options);
        services.AddSingleton<EdgeHub>();
        services.AddGrpc().AddServiceOptions<EdgeRpcService>(o =>
        {
            o.MaxReceiveMessageSize = options.MaxInboundMessageSize;
            // Each downlink is checked against the edge's own limit before it is sent.
            o.MaxSendMessageSize = null;
        });
        return services;
    }

    /// <summary>Maps <c>edge.EdgeRpcService</c> (answers only on the edge port) and creates the hub so core changes queue downlinks from start.</summary>
    public static WebApplication MapEdgeRpc(this WebApplication app)
    {
        var hub = app.Services.GetRequiredService<EdgeHub>();
        // Streams never end on their own; without this, shutdown would wait out the whole grace period.
        app.Lifetime.ApplicationStopping.Register(hub.CloseAll);
        app.MapGrpcService<EdgeRpcService>();
        return app;
    }
}
