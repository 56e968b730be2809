namespace Perf.Core;

/// <summary>Live device sessions, keyed by device id and transport.</summary>
public interface ISessionTable
{
    /// <summary>Adds a session; an older session of the same device and same <see cref="IDeviceSession.Transport"/> is closed through its <see cref="IDeviceSession.Close"/>.</summary>
    void Register(IDeviceSession session);

    /// <summary>Removes the session if it is still the registered one.</summary>
    void Unregister(IDeviceSession session);
}
