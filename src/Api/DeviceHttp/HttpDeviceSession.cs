using Perf.Core;
using Perf.Core.Telemetry;

namespace Perf.Api.DeviceHttp;

/// <summary>
/// The HTTP device API's session for one device: registered with the session table while at least one
/// long poll (attribute updates or server RPC) of that device is waiting. A push completes waiters.
/// </summary>
internal sealed class HttpDeviceSession(Guid deviceId, string connectionId) : IDeviceSession
{
    private readonly Lock _lock = new();
    private readonly List<TaskCompletionSource<byte[]?>> _attributeWaiters = [];
    private readonly List<TaskCompletionSource<byte[]?>> _rpcWaiters = [];

    public Guid DeviceId { get; } = deviceId;
    public string Transport => "HTTP";
    public string ConnectionId { get; } = connectionId;

    /// <summary>Long polls holding this session (guarded by <see cref="HttpDeviceSessions"/>).</summary>
    public int References { get; set; }

    public bool WantsAttributeUpdates
    {
        get
        {
            lock (_lock)
            {
                return _attributeWaiters.Count > 0;
            }
        }
    }

    public bool WantsRpc
    {
        get
        {
            lock (_lock)
            {
                return _rpcWaiters.Count > 0;
            }
        }
    }

    public TaskCompletionSource<byte[]?> AddWaiter(bool rpc)
    {
        var waiter = new TaskCompletionSource<byte[]?>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            (rpc ? _rpcWaiters : _attributeWaiters).Add(waiter);
        }

        return waiter;
    }

    public void RemoveWaiter(TaskCompletionSource<byte[]?> waiter)
    {
        lock (_lock)
        {
            _rpcWaiters.Remove(waiter);
            _attributeWaiters.Remove(waiter);
        }
    }

    public void PushAttributeUpdate(IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        TaskCompletionSource<byte[]?>[] waiters;
        lock (_lock)
        {
            waiters = [.. _attributeWaiters];
            _attributeWaiters.Clear();
        }

        if (waiters.Length == 0)
        {
            return;
        }

        var json = DeviceJson.AttributeUpdate(updated, deleted);
        foreach (var waiter in waiters)
        {
            waiter.TrySetResult(json);
        }
    }

    public bool PushRpcRequest(RpcRequest request)
    {
        TaskCompletionSource<byte[]?>? waiter;
        lock (_lock)
        {
            // One request answers one long poll; the next poll gets the next request.
            waiter = _rpcWaiters.Find(w => !w.Task.IsCompleted);
            if (waiter is null)
            {
                return false;
            }

            _rpcWaiters.Remove(waiter);
        }

        return waiter.TrySetResult(DeviceJson.RpcRequest(request));
    }

    public void Close(string reason)
    {
        TaskCompletionSource<byte[]?>[] waiters;
        lock (_lock)
        {
            waiters = [.. _attributeWaiters, .. _rpcWaiters];
            _attributeWaiters.Clear();
            _rpcWaiters.Clear();
        }

        foreach (var waiter in waiters)
        {
            waiter.TrySetResult(null);
        }
    }
}

/// <summary>One <see cref="HttpDeviceSession"/> per device shared by its concurrent long polls.</summary>
internal sealed class HttpDeviceSessions(ISessionTable table)
{
    private readonly Lock _lock = new();
    private readonly Dictionary<Guid, HttpDeviceSession> _sessions = [];

    /// <summary>
    /// Waits for a push of the given kind, or null at the timeout (also when the session was closed).
    /// The session is registered for the duration of the wait.
    /// </summary>
    public async Task<byte[]?> WaitAsync(Guid deviceId, string connectionId, bool rpc, TimeSpan timeout, CancellationToken aborted)
    {
        HttpDeviceSession session;
        var created = false;
        lock (_lock)
        {
            if (!_sessions.TryGetValue(deviceId, out session!))
            {
                session = new HttpDeviceSession(deviceId, connectionId);
                _sessions[deviceId] = session;
                created = true;
            }

            session.References++;
        }

        var waiter = session.AddWaiter(rpc);
        try
        {
            if (created)
            {
                table.Register(session);
            }

            // Queued RPCs (and pushes that raced with registration) are delivered now.
            table.SubscriptionsChanged(session);
            return await waiter.Task.WaitAsync(timeout, aborted);
        }
        catch (TimeoutException)
        {
            return null;
        }
        finally
        {
            session.RemoveWaiter(waiter);
            var last = false;
            lock (_lock)
            {
                if (--session.References == 0)
                {
                    _sessions.Remove(deviceId);
                    last = true;
                }
            }

            if (last)
            {
                table.Unregister(session);
            }
        }
    }
}
