using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Perf.Core;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt;

/// <summary>Kestrel connection handler speaking the ThingsBoard MQTT device and gateway API.</summary>
public sealed class MqttConnectionHandler : ConnectionHandler
{
    private readonly MqttDoorServices _door;

    /// <param name="limits">The host's limits shared with the other doors; without it the door builds its own from <see cref="MqttOptions"/>.</param>
    /// <param name="guard">Wrong-credential blocking and aggregated logging of hostile connections; none without it.</param>
    public MqttConnectionHandler(IDeviceApi api, ISessionTable sessions, IOptions<MqttOptions> options, ILogger<MqttConnectionHandler> logger,
        DeviceRateLimits? limits = null, ConnectionGuard? guard = null)
    {
        var settings = options.Value;
        _door = new MqttDoorServices(api, sessions, settings,
            limits ?? new DeviceRateLimits(settings.TenantMessagesRateLimit, settings.DeviceMessagesRateLimit, settings.GatewayMessagesRateLimit),
            new MqttConnectionTicker(settings.TimerPeriod), logger, guard);
    }

    /// <summary>The shared timer of this handler's connections (tests read its count).</summary>
    internal MqttConnectionTicker Ticker => _door.Ticker;

    public override Task OnConnectedAsync(ConnectionContext connection) =>
        new MqttConnection(connection, _door).RunAsync();
}
