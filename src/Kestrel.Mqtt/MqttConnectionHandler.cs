using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Perf.Core;
using Perf.Kestrel.Mqtt.Internal;

namespace Perf.Kestrel.Mqtt;

/// <summary>Kestrel connection handler speaking the ThingsBoard MQTT device and gateway API.</summary>
public sealed class MqttConnectionHandler : ConnectionHandler
{
    private readonly IDeviceApi _api;
    private readonly ISessionTable _sessions;
    private readonly MqttOptions _options;
    private readonly ILogger _logger;
    private readonly DeviceRateLimits _limits;
    private readonly MqttConnectionTicker _ticker;
    private readonly ConnectionGuard? _guard;

    /// <param name="limits">The host's limits shared with the other doors; without it the door builds its own from <see cref="MqttOptions"/>.</param>
    /// <param name="guard">Wrong-credential blocking and aggregated logging of hostile connections; none without it.</param>
    public MqttConnectionHandler(IDeviceApi api, ISessionTable sessions, IOptions<MqttOptions> options, ILogger<MqttConnectionHandler> logger,
        DeviceRateLimits? limits = null, ConnectionGuard? guard = null)
    {
        _api = api;
        _sessions = sessions;
        _options = options.Value;
        _logger = logger;
        _limits = limits ?? new DeviceRateLimits(_options.TenantMessagesRateLimit, _options.DeviceMessagesRateLimit, _options.GatewayMessagesRateLimit);
        _ticker = new MqttConnectionTicker(_options.TimerPeriod);
        _guard = guard;
    }

    /// <summary>The shared timer of this handler's connections (tests read its count).</summary>
    internal MqttConnectionTicker Ticker => _ticker;

    public override Task OnConnectedAsync(ConnectionContext connection) =>
        new MqttConnection(connection, _api, _sessions, _options, _limits, _ticker, _logger, _guard).RunAsync();
}
