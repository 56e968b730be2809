namespace Perf.Core;

/// <summary>
/// Live device sessions keyed by device id. The single-node implementation is <see cref="SessionTable"/>;
/// a cluster-aware one may replace it without touching the doors.
/// </summary>
public interface ISessionTable
{
    /// <summary>Adds a session. An older session of the same device and the same transport is closed ("replaced by a newer session").</summary>
    void Register(IDeviceSession session);

    /// <summary>Removes exactly this session instance (no-op when it was already replaced or removed).</summary>
    void Unregister(IDeviceSession session);

    /// <summary>The live sessions of a device; an empty list when none. Does not allocate.</summary>
    IReadOnlyList<IDeviceSession> GetSessions(Guid deviceId);

    /// <summary>Number of live sessions.</summary>
    int Count { get; }

    /// <summary>
    /// A door calls this after a session subscribed to RPC or attribute updates (MQTT SUBSCRIBE, CoAP
    /// Observe, HTTP long poll) so queued RPCs are delivered.
    /// </summary>
    void SubscriptionsChanged(IDeviceSession session);

    /// <summary>Raised after a session was registered or its subscriptions changed.</summary>
    event Action<IDeviceSession>? SessionAvailable;
}
