using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;
using Perf.Core.Domain;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>
/// Device attributes by scope (client, server, shared) with their last update time. Saves and deletes
/// are durable log records; once committed they are applied, SHARED changes are pushed to the device's
/// live sessions that subscribed to attribute updates, and in-process subscribers are notified.
/// </summary>
public sealed class AttributeService
{
    private readonly UplinkLog _log;
    private readonly EntityRegistry _registry;
    private readonly ISessionTable _sessions;
    private readonly SubscriptionHub _hub;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<Guid, DeviceAttributes> _devices = new();

    internal AttributeService(UplinkLog log, EntityRegistry registry, ISessionTable sessions, SubscriptionHub hub, TimeProvider time, ILogger logger)
    {
        _log = log;
        _registry = registry;
        _sessions = sessions;
        _hub = hub;
        _time = time;
        _logger = logger;
    }

    /// <summary>
    /// Saves attributes with <paramref name="ts"/> (default now) as lastUpdateTs; false when the device does not exist.
    /// <paramref name="origin"/> is the edge the change comes from, if any (<see cref="DeviceUpdate.Origin"/>).
    /// </summary>
    public Task<bool> SaveAsync(Guid deviceId, AttributeScope scope, IReadOnlyList<KvEntry> entries, long? ts = null, Guid origin = default)
    {
        ArgumentNullException.ThrowIfNull(entries);
        if (_registry.GetDevice(deviceId) is null)
        {
            return Task.FromResult(false);
        }
        if (entries.Count == 0)
        {
            return Task.FromResult(true);
        }
        var lastUpdateTs = ts ?? _time.GetUtcNow().ToUnixTimeMilliseconds();
        var w = new RecordWriter(RecordKind.Attributes, 32 + entries.Count * 32);
        w.WriteGuid(deviceId);
        w.WriteByte((byte)scope);
        w.WriteVarUInt((uint)entries.Count);
        foreach (var kv in entries)
        {
            w.WriteInt64(lastUpdateTs);
            w.WriteKv(kv);
        }
        var saved = _log.Append(ref w, () =>
        {
            if (!Apply(deviceId, scope, entries, lastUpdateTs))
            {
                return false;
            }
            if (scope == AttributeScope.Shared)
            {
                PushToSessions(deviceId, entries, []);
            }
            if (_hub.HasSubscribers(deviceId))
            {
                var update = new TsKvEntry[entries.Count];
                for (var i = 0; i < update.Length; i++)
                {
                    update[i] = new TsKvEntry(lastUpdateTs, entries[i]);
                }
                _hub.Publish(new DeviceUpdate(deviceId, DeviceUpdateKind.Attributes, scope, update, [], origin));
            }
            return true;
        });
        return AfterDerivedRecords(deviceId, scope, saved);
    }

    /// <summary>
    /// A shared-attribute change is applied on the commit loop, where subscribers may append records derived
    /// from it (an edge's downlink: its own record, committed by the next group commit). The caller's
    /// acknowledgement waits for those too: a barrier queued after the apply completes once everything the
    /// apply appended is durable, so a kill -9 right after the acknowledgement cannot lose the edge's copy
    /// (the edge is not full-synced again on reconnect). One commit interval more, only for subscribed devices.
    /// </summary>
    private Task<T> AfterDerivedRecords<T>(Guid deviceId, AttributeScope scope, Task<T> applied)
    {
        return scope != AttributeScope.Shared || !_hub.HasSubscribers(deviceId) ? applied : _log.ThenDerivedDurable(applied);
    }

    /// <summary>Deletes attributes; returns how many existed. <paramref name="origin"/> as for <see cref="SaveAsync"/>.</summary>
    public Task<int> DeleteAsync(Guid deviceId, AttributeScope scope, IReadOnlyList<string> keys, Guid origin = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (keys.Count == 0 || !_devices.ContainsKey(deviceId))
        {
            return Task.FromResult(0);
        }
        var w = new RecordWriter(RecordKind.AttributesDelete);
        w.WriteGuid(deviceId);
        w.WriteByte((byte)scope);
        w.WriteVarUInt((uint)keys.Count);
        foreach (var key in keys)
        {
            w.WriteString(key);
        }
        var deleted = _log.Append(ref w, () =>
        {
            var removed = ApplyDelete(deviceId, scope, keys);
            if (removed.Count > 0)
            {
                if (scope == AttributeScope.Shared)
                {
                    PushToSessions(deviceId, [], removed);
                }
                _hub.Publish(new DeviceUpdate(deviceId, DeviceUpdateKind.Attributes, scope, [], removed, origin));
            }
            return removed.Count;
        });
        return AfterDerivedRecords(deviceId, scope, deleted);
    }

    /// <summary>Attributes of one scope; null <paramref name="keys"/> means all. Missing keys are skipped.</summary>
    public IReadOnlyList<AttributeKv> Get(Guid deviceId, AttributeScope scope, IReadOnlyList<string>? keys = null)
    {
        if (!_devices.TryGetValue(deviceId, out var attributes))
        {
            return [];
        }
        var map = attributes.Scope(scope);
        if (keys is null)
        {
            return [.. map.Values];
        }
        var result = new List<AttributeKv>(keys.Count);
        foreach (var key in keys)
        {
            if (map.TryGetValue(key, out var kv))
            {
                result.Add(kv);
            }
        }
        return result;
    }

    public bool TryGet(Guid deviceId, AttributeScope scope, string key, out AttributeKv value)
    {
        value = default;
        return _devices.TryGetValue(deviceId, out var attributes) && attributes.Scope(scope).TryGetValue(key, out value);
    }

    private void PushToSessions(Guid deviceId, IReadOnlyList<KvEntry> updated, IReadOnlyList<string> deleted)
    {
        foreach (var session in _sessions.GetSessions(deviceId))
        {
            if (!session.WantsAttributeUpdates)
            {
                continue;
            }
            try
            {
                session.PushAttributeUpdate(updated, deleted);
            }
            catch (Exception e)
            {
                CoreLog.PushFailed(_logger, session.ConnectionId, e);
            }
        }
    }

    private bool Apply(Guid deviceId, AttributeScope scope, IReadOnlyList<KvEntry> entries, long ts)
    {
        if (_registry.GetDevice(deviceId) is null)
        {
            return false;
        }
        var map = _devices.GetOrAdd(deviceId, static _ => new DeviceAttributes()).Scope(scope);
        foreach (var kv in entries)
        {
            map[kv.Key] = new AttributeKv(ts, kv);
        }
        return true;
    }

    private List<string> ApplyDelete(Guid deviceId, AttributeScope scope, IReadOnlyList<string> keys)
    {
        var removed = new List<string>(keys.Count);
        if (_devices.TryGetValue(deviceId, out var attributes))
        {
            var map = attributes.Scope(scope);
            foreach (var key in keys)
            {
                if (map.TryRemove(key, out _))
                {
                    removed.Add(key);
                }
            }
        }
        return removed;
    }

    internal void RemoveDevice(Guid deviceId) => _devices.TryRemove(deviceId, out _);

    internal void Replay(RecordKind kind, ref RecordReader r)
    {
        var deviceId = r.ReadGuid();
        var scope = (AttributeScope)r.ReadByte();
        var count = r.ReadCount();
        if (kind == RecordKind.Attributes)
        {
            if (_registry.GetDevice(deviceId) is null)
            {
                return;
            }
            var map = _devices.GetOrAdd(deviceId, static _ => new DeviceAttributes()).Scope(scope);
            for (var i = 0; i < count; i++)
            {
                var ts = r.ReadInt64();
                var kv = r.ReadKv();
                map[kv.Key] = new AttributeKv(ts, kv);
            }
        }
        else
        {
            var keys = new string[count];
            for (var i = 0; i < count; i++)
            {
                keys[i] = r.ReadKey();
            }
            ApplyDelete(deviceId, scope, keys);
        }
    }

    /// <summary>The keys of the last whole <see cref="WriteState"/>, retained by a checkpoint where nothing changed.</summary>
    private readonly CheckpointKeys _stateKeys = new();

    /// <summary>
    /// Emits one record per attribute (key "A" + device + scope + name), each with its lastUpdateTs; when nothing
    /// that can change attributes was applied since the last call that wrote them (<paramref name="changed"/>
    /// false), retains those keys instead.
    /// </summary>
    internal void WriteState(StateStore state, bool changed)
    {
        if (_stateKeys.RetainIfUnchanged(state, changed))
        {
            return;
        }
        foreach (var (deviceId, attributes) in _devices)
        {
            foreach (var scope in (ReadOnlySpan<AttributeScope>)[AttributeScope.Client, AttributeScope.Server, AttributeScope.Shared])
            {
                foreach (var value in attributes.Scope(scope).Values)
                {
                    var w = new RecordWriter(RecordKind.Attributes, 64 + value.Entry.Key.Length);
                    w.WriteGuid(deviceId);
                    w.WriteByte((byte)scope);
                    w.WriteVarUInt(1);
                    w.WriteInt64(value.LastUpdateTs);
                    w.WriteKv(value.Entry);
                    _stateKeys.Write(state, StateKeys.Attribute(deviceId, scope, value.Entry.Key), ref w);
                }
            }
        }
        _stateKeys.Done();
    }

    private sealed class DeviceAttributes
    {
        private readonly ConcurrentDictionary<string, AttributeKv> _client = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, AttributeKv> _server = new(StringComparer.Ordinal);
        private readonly ConcurrentDictionary<string, AttributeKv> _shared = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, AttributeKv> Scope(AttributeScope scope) => scope switch
        {
            AttributeScope.Client => _client,
            AttributeScope.Server => _server,
            AttributeScope.Shared => _shared,
            _ => throw new ArgumentOutOfRangeException(nameof(scope)),
        };
    }
}
