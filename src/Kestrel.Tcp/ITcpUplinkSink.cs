using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Kestrel.Tcp;

/// <summary>
/// The seam between the TCP door and the core, implemented by the host. For each decoded message the door
/// calls <see cref="PublishAsync"/>; the host finds the device by name (creating it when the uplink says
/// <see cref="TcpUplink.AllowCreateDevices"/>), posts telemetry and attributes through the core, and returns
/// the device id. The door then opens one <see cref="IDeviceSession"/> per (connection, device) and hands it
/// to <see cref="OnSessionOpened"/> so downlinks for that device reach this connection; the most recent
/// connection of a device wins.
/// </summary>
public interface ITcpUplinkSink
{
    /// <summary>
    /// Stores one decoded message. Like <see cref="IDeviceApi"/>, the implementation copies what it keeps
    /// synchronously before its first await: the door reuses <paramref name="uplink"/> and its lists as soon
    /// as the call returns. The task completes when the data is durable or with a typed failure.
    /// </summary>
    ValueTask<TcpUplinkResult> PublishAsync(TcpUplink uplink);

    /// <summary>A connection carries <see cref="IDeviceSession.DeviceId"/> for the first time: register the session (replacing any older one).</summary>
    void OnSessionOpened(IDeviceSession session);

    /// <summary>The connection closed or the session was replaced: unregister it if it is still the registered one.</summary>
    void OnSessionClosed(IDeviceSession session);
}

/// <summary>One decoded uplink message. Reused by the door between calls; copy what you keep.</summary>
public sealed class TcpUplink
{
    /// <summary>The integration that decoded it (its name and events).</summary>
    public required TcpIntegration Integration { get; init; }

    /// <summary>Reference: allowCreateDevicesOrAssets of the integration.</summary>
    public bool AllowCreateDevices => Integration.Options.AllowCreateDevicesOrAssets;

    public string DeviceName { get; internal set; } = string.Empty;
    public string DeviceType { get; internal set; } = string.Empty;

    /// <summary>Timestamped telemetry (a converter without a ts gets the receive time).</summary>
    public IReadOnlyList<TsKvEntry> Telemetry { get; internal set; } = [];

    /// <summary>Client-side attributes reported by the device.</summary>
    public IReadOnlyList<KvEntry> Attributes { get; internal set; } = [];

    /// <summary>The Kestrel connection id, for logs.</summary>
    public string ConnectionId { get; internal set; } = string.Empty;
}

/// <summary>Outcome of <see cref="ITcpUplinkSink.PublishAsync"/>: the application result and, when it is Ok, the device's id.</summary>
public readonly record struct TcpUplinkResult(UplinkResult Result, Guid DeviceId)
{
    public static TcpUplinkResult Ok(Guid deviceId) => new(UplinkResult.Success, deviceId);

    public static TcpUplinkResult Fail(UplinkStatus status, string reason) => new(new UplinkResult(status, reason), Guid.Empty);
}
