using System.Collections.Concurrent;

namespace Perf.Kestrel.Tcp.Internal;

/// <summary>
/// Downlinks for a device whose connection closed, waiting (bounded) for its next uplink connection.
/// Lives in the integration's table keyed by device id until the device reconnects or the time is up.
/// </summary>
internal sealed class ParkedDownlinks(TcpDeviceSession session, int capacity, ConcurrentDictionary<Guid, ParkedDownlinks> table)
{
    private readonly Queue<TcpDownlink> _queue = new();
    private readonly Lock _lock = new();
    private bool _taken;

    public TcpDeviceSession Session { get; } = session;

    public bool TryAdd(TcpDownlink downlink)
    {
        lock (_lock)
        {
            if (_taken || _queue.Count >= capacity)
            {
                return false;
            }

            _queue.Enqueue(downlink);
            return true;
        }
    }

    /// <summary>The device reconnected (or parking ended): returns what was queued and refuses further pushes.</summary>
    public TcpDownlink[] Take()
    {
        lock (_lock)
        {
            _taken = true;
            var items = _queue.ToArray();
            _queue.Clear();
            return items;
        }
    }

    /// <summary>The core closed the parked session (device deleted, shutdown): forget its downlinks.</summary>
    public void Abandon()
    {
        Take();
        table.TryRemove(new KeyValuePair<Guid, ParkedDownlinks>(Session.DeviceId, this));
    }
}
