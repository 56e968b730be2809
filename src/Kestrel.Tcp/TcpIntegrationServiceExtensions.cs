using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Perf.Kestrel.Tcp;

public static class TcpIntegrationServiceExtensions
{
    /// <summary>Registers the TCP integration door's services.</summary>
    public static IServiceCollection AddTcpIntegration(this IServiceCollection services, Action<TcpIntegrationOptions>? configure = null)
    {
        var builder = services.AddOptions<TcpIntegrationOptions>();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        services.AddSingleton<TcpIntegrationHandler>();
        return services;
    }

    /// <summary>Serves the TCP integration on this Kestrel endpoint.</summary>
    public static ListenOptions UseTcpIntegration(this ListenOptions listenOptions)
    {
        listenOptions.UseConnectionHandler<TcpIntegrationHandler>();
        return listenOptions;
    }
}
