using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Perf.Core;
using Perf.Kestrel.Tcp;

namespace Perf.Api.Tcp;

public static class TcpIntegrationHostExtensions
{
    /// <summary>Configuration section of the default integration (reference shape: Name, ClientConfiguration.HandlerConfiguration..., Metadata, UplinkConverter).</summary>
    public const string DefaultIntegrationSection = "TcpIntegration";

    /// <summary>
    /// Wires the TCP door to the core: the <see cref="CoreTcpUplinkSink"/>, the default integration bound from
    /// <see cref="DefaultIntegrationSection"/> (its port is TCP_INTEGRATION_PORT), and the REST-managed
    /// integrations, each on a listener of its own, loaded from DATA_DIR at start.
    /// </summary>
    public static IServiceCollection AddTcpIntegrations(this IServiceCollection services, IConfiguration configuration, PerfEngine engine)
    {
        services.AddSingleton(new CoreTcpUplinkSink(engine));
        services.AddSingleton<ITcpUplinkSink>(sp => sp.GetRequiredService<CoreTcpUplinkSink>());
        services.AddTcpIntegration(o => configuration.GetSection(DefaultIntegrationSection).Bind(o));

        // soBacklogOption of the default integration: Kestrel's socket transport has one backlog for all of the
        // host's endpoints, so the host keeps the larger of its own default (512) and the integration's.
        var backlog = configuration.GetValue<int?>($"{DefaultIntegrationSection}:ClientConfiguration:SoBacklogOption") ?? new TcpClientConfiguration().SoBacklogOption;
        services.Configure<SocketTransportOptions>(o => o.Backlog = Math.Max(o.Backlog, backlog));

        services.AddSingleton<TcpIntegrationService>();
        services.AddHostedService(sp => sp.GetRequiredService<TcpIntegrationService>());
        return services;
    }
}
