using Microsoft.Extensions.DependencyInjection;

namespace Perf.Coap;

public static class CoapServiceExtensions
{
    /// <summary>Registers the CoAP door as a hosted UDP server.</summary>
    public static IServiceCollection AddCoap(this IServiceCollection services, Action<CoapOptions>? configure = null)
    {
        var builder = services.AddOptions<CoapOptions>();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        services.AddSingleton<CoapServer>();
        services.AddHostedService(sp => sp.GetRequiredService<CoapServer>());
        return services;
    }
}
