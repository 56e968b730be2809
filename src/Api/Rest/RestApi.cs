using Microsoft.Extensions.DependencyInjection.Extensions;
using Perf.Api.Hosting;
using Perf.Core.Telemetry;

namespace Perf.Api.Rest;

public static class RestApi
{
    /// <summary>Registers the REST API's services: JWT issuing and the key table for server-side saves.</summary>
    public static IServiceCollection AddRestApi(this IServiceCollection services, IConfiguration configuration, string dataDir)
    {
        var key = JwtService.LoadOrCreateKey(configuration["JWT_SIGNING_KEY"], dataDir);
        var access = TimeSpan.FromSeconds(ConfigValues.NonNegativeDouble(configuration, "JWT_TOKEN_EXPIRATION_TIME", 9000));
        var refresh = TimeSpan.FromSeconds(ConfigValues.NonNegativeDouble(configuration, "JWT_REFRESH_TOKEN_EXPIRATION_TIME", 604800));
        services.AddSingleton(new JwtService(key, access, refresh));
        services.TryAddSingleton<KeyTable>(); // the host registers the core's table first, shared by every door
        services.AddSingleton<JwtAuthFilter>();
        services.AddSingleton<OtaDrafts>();
        services.AddOpenApi();
        // A query or route value that does not parse throws, so RestErrorBodies answers it with the parameter named.
        services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        return services;
    }

    /// <summary>Maps the REST API under /api, the WebSockets and the OpenAPI description at /openapi/v1.json.</summary>
    public static WebApplication MapRestApi(this WebApplication app)
    {
        // The one registered filter instance: AddEndpointFilter<JwtAuthFilter>() would construct a new filter, and resolve
        // its services, from the request's services on every call (issue 12 row 7: allocation per REST call).
        app.UseRestErrorBodies();
        var secured = app.MapGroup("/api").AddEndpointFilter(app.Services.GetRequiredService<JwtAuthFilter>());
        app.MapAuthEndpoints(secured);
        secured.MapTenantEndpoints();
        secured.MapDeviceEndpoints();
        secured.MapDeviceProfileEndpoints();
        secured.MapTelemetryEndpoints();
        secured.MapRpcEndpoints();
        secured.MapOtaEndpoints();
        secured.MapIntegrationEndpoints();
        secured.MapEdgeEndpoints();
        app.MapWebSocketEndpoints();
        app.MapOpenApi();
        app.MapGet("/swagger", () => Results.Redirect("/openapi/v1.json"));
        return app;
    }
}
