using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Perf.Core.Internal;

/// <summary>Per-device subscriber lists (immutable arrays swapped by CAS); callbacks run on the commit loop after apply.</summary>
internal sealed class SubscriptionHub(ILogger logger)
{
    private readonly ConcurrentDictionary<Guid, Action<DeviceUpdate>[]> _subscribers = new();

    public bool HasSubscribers(Guid deviceId) => _subscribers.ContainsKey(deviceId);

    public IDisposable Subscribe(Guid deviceId, Action<DeviceUpdate> callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        _subscribers.AddOrUpdate(deviceId, static (_, cb) => [cb], static (_, current, cb) => [.. current, cb], callback);
        return new Subscription(this, deviceId, callback);
    }

    private void Unsubscribe(Guid deviceId, Action<DeviceUpdate> callback)
    {
        while (_subscribers.TryGetValue(deviceId, out var current))
        {
            var index = Array.IndexOf(current, callback);
            if (index < 0)
            {
                return;
            }
            if (current.Length == 1)
            {
                if (_subscribers.TryRemove(new KeyValuePair<Guid, Action<DeviceUpdate>[]>(deviceId, current)))
                {
                    return;
                }
                continue;
            }
            Action<DeviceUpdate>[] next = [.. current.AsSpan(0, index), .. current.AsSpan(index + 1)];
            if (_subscribers.TryUpdate(deviceId, next, current))
            {
                return;
            }
        }
    }

    public void Publish(DeviceUpdate update)
    {
        if (!_subscribers.TryGetValue(update.DeviceId, out var callbacks))
        {
            return;
        }
        foreach (var callback in callbacks)
        {
            try
            {
                callback(update);
            }
            catch (Exception e)
            {
                CoreLog.SubscriberFailed(logger, update.DeviceId, e);
            }
        }
    }

    private sealed class Subscription(SubscriptionHub hub, Guid deviceId, Action<DeviceUpdate> callback) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                hub.Unsubscribe(deviceId, callback);
            }
        }
    }
}
