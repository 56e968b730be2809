using Microsoft.Extensions.Logging;
using Perf.Core;

namespace Perf.Kestrel.Mqtt.Internal;

/// <summary>
/// What every connection of one <see cref="MqttConnectionHandler"/> shares: the core's device API and session table,
/// the door's options and limits, the connection guard, the logger and the shared ticker.
/// </summary>
/// <remarks>
/// Issue 12 (memory per idle connection): each <see cref="MqttConnection"/> holds one reference to this instead of
/// seven of its own (48 bytes less per connection).
/// </remarks>
internal sealed class MqttDoorServices(IDeviceApi api, ISessionTable sessions, MqttOptions options, DeviceRateLimits limits,
    MqttConnectionTicker ticker, ILogger logger, ConnectionGuard? guard)
{
    public IDeviceApi Api { get; } = api;

    public ISessionTable Sessions { get; } = sessions;

    public MqttOptions Options { get; } = options;

    public DeviceRateLimits Limits { get; } = limits;

    public MqttConnectionTicker Ticker { get; } = ticker;

    public ILogger Logger { get; } = logger;

    /// <summary>Wrong-credential blocking and aggregated logging of hostile connections; none without it.</summary>
    public ConnectionGuard? Guard { get; } = guard;
}
