using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Perf.Core.Telemetry;
using Perf.Kestrel.Tcp.Internal;

namespace Perf.Kestrel.Tcp;

public static class TcpIntegrationServiceExtensions
{
    /// <summary>
    /// Registers the default integration (from <see cref="TcpIntegrationOptions"/>) and its handler. The host
    /// registers its <see cref="ITcpUplinkSink"/> (before or after this call); until it does, uplinks are
    /// rejected as Unavailable. A <see cref="KeyTable"/> singleton, when registered, is shared with the core.
    /// </summary>
    public static IServiceCollection AddTcpIntegration(this IServiceCollection services, Action<TcpIntegrationOptions>? configure = null)
    {
        var builder = services.AddOptions<TcpIntegrationOptions>();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        services.TryAddSingleton<ITcpUplinkSink, UnwiredTcpUplinkSink>();
        services.TryAddSingleton(sp => TcpIntegration.Create(sp.GetRequiredService<IOptions<TcpIntegrationOptions>>().Value, sp.GetService<KeyTable>()));
        services.TryAddSingleton<TcpIntegrationHandler>();
        return services;
    }

    /// <summary>Serves the default integration on this Kestrel endpoint.</summary>
    public static ListenOptions UseTcpIntegration(this ListenOptions listenOptions)
    {
        listenOptions.UseConnectionHandler<TcpIntegrationHandler>();
        return listenOptions;
    }

    /// <summary>Serves <paramref name="integration"/> on this endpoint (one endpoint per integration port).</summary>
    public static ListenOptions UseTcpIntegration(this ListenOptions listenOptions, TcpIntegration integration)
    {
        var services = listenOptions.ApplicationServices;
        var handler = new TcpIntegrationHandler(
            integration,
            services.GetRequiredService<ITcpUplinkSink>(),
            services.GetRequiredService<ILogger<TcpIntegrationHandler>>(),
            services.GetService<Perf.Core.ConnectionGuard>());
        listenOptions.Run(handler.OnConnectedAsync);
        return listenOptions;
    }
}
