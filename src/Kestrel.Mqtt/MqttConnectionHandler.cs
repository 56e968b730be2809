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
    private readonly MqttRateLimits _limits;
    private readonly MqttConnectionTicker _ticker;

    public MqttConnectionHandler(IDeviceApi api, ISessionTable sessions, IOptions<MqttOptions> options, ILogger<MqttConnectionHandler> logger)
    {
        _api = api;
        _sessions = sessions;
        _options = options.Value;
        _logger = logger;
        _limits = new MqttRateLimits(_options);
        _ticker = new MqttConnectionTicker(_options.TimerPeriod);
    }

    /// <summary>The shared timer of this handler's connections (tests read its count).</summary>
    internal MqttConnectionTicker Ticker => _ticker;

    public override Task OnConnectedAsync(ConnectionContext connection) =>
        new MqttConnection(connection, _api, _sessions, _options, _limits, _ticker, _logger).RunAsync();
}
