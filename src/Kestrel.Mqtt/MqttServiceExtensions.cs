using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace Perf.Kestrel.Mqtt;

/// <summary>The MQTT door: <c>services.AddMqtt()</c> and <c>listen.UseMqtt()</c>.</summary>
public static class MqttServiceExtensions
{
    /// <summary>Registers <see cref="MqttConnectionHandler"/> and <see cref="MqttOptions"/>. Needs <c>IDeviceApi</c> and <c>ISessionTable</c> registered by the core.</summary>
    public static IServiceCollection AddMqtt(this IServiceCollection services, Action<MqttOptions>? configure = null)
    {
        var builder = services.AddOptions<MqttOptions>();
        if (configure is not null)
        {
            builder.Configure(configure);
        }

        services.AddSingleton<MqttConnectionHandler>();
        return services;
    }

    /// <summary>Serves MQTT 3.1.1 on this endpoint.</summary>
    public static ListenOptions UseMqtt(this ListenOptions listenOptions)
    {
        listenOptions.UseConnectionHandler<MqttConnectionHandler>();
        return listenOptions;
    }
}
