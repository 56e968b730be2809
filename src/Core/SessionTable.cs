using System.Collections.Concurrent;
using Perf.Core.Internal;

namespace Perf.Core;

/// <summary>
/// Lock-free single-node session table: device id -> immutable array of sessions, replaced by
/// compare-and-swap. Readers get the stored array itself, so lookups never allocate.
/// </summary>
public sealed class SessionTable : ISessionTable
{
    private readonly ConcurrentDictionary<Guid, IDeviceSession[]> _sessions = new();
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public event Action<IDeviceSession>? SessionAvailable;

    public void Register(IDeviceSession session)
    {
        ArgumentNullException.ThrowIfNull(session);
        var deviceId = session.DeviceId;
        IDeviceSession? replaced;
        while (true)
        {
            replaced = null;
            if (!_sessions.TryGetValue(deviceId, out var current))
            {
                if (_sessions.TryAdd(deviceId, [session]))
                {
                    break;
                }
                continue;
            }

            var index = Array.FindIndex(current, s => string.Equals(s.Transport, session.Transport, StringComparison.Ordinal));
            IDeviceSession[] next;
            if (index >= 0)
            {
                if (ReferenceEquals(current[index], session))
                {
                    return;
                }
                replaced = current[index];
                next = (IDeviceSession[])current.Clone();
                next[index] = session;
            }
            else
            {
                next = new IDeviceSession[current.Length + 1];
                current.CopyTo(next, 0);
                next[^1] = session;
            }

            if (_sessions.TryUpdate(deviceId, next, current))
            {
                break;
            }
        }

        if (replaced is null)
        {
            Interlocked.Increment(ref _count);
            CoreMetrics.SessionOpened(session.Transport);
        }
        else
        {
            replaced.Close("replaced by a newer session");
        }
        SessionAvailable?.Invoke(session);
    }

    public void Unregister(IDeviceSession session)
    {
        ArgumentNullException.ThrowIfNull(session);
        var deviceId = session.DeviceId;
        while (_sessions.TryGetValue(deviceId, out var current))
        {
            var index = Array.IndexOf(current, session);
            if (index < 0)
            {
                return;
            }

            bool swapped;
            if (current.Length == 1)
            {
                swapped = _sessions.TryRemove(new KeyValuePair<Guid, IDeviceSession[]>(deviceId, current));
            }
            else
            {
                var next = new IDeviceSession[current.Length - 1];
                Array.Copy(current, 0, next, 0, index);
                Array.Copy(current, index + 1, next, index, current.Length - index - 1);
                swapped = _sessions.TryUpdate(deviceId, next, current);
            }

            if (swapped)
            {
                Interlocked.Decrement(ref _count);
                CoreMetrics.SessionClosed(session.Transport);
                return;
            }
        }
    }

    public IReadOnlyList<IDeviceSession> GetSessions(Guid deviceId) =>
        _sessions.TryGetValue(deviceId, out var sessions) ? sessions : [];

    public void SubscriptionsChanged(IDeviceSession session) => SessionAvailable?.Invoke(session);

    /// <summary>Closes every session of a device (device deleted).</summary>
    public void CloseAll(Guid deviceId, string reason)
    {
        if (_sessions.TryGetValue(deviceId, out var sessions))
        {
            foreach (var s in sessions)
            {
                s.Close(reason);
            }
        }
    }
}
