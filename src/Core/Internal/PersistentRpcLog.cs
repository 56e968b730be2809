using System.Collections.Concurrent;

namespace Perf.Core.Internal;

/// <summary>
/// Single-node <see cref="IPersistentRpcStore"/> over the engine's durable log: every mutation is a
/// record, applied on the commit loop after the commit that holds it, so live state equals what a
/// replay produces (transition checks included). Reads are lock-free over concurrent maps.
/// </summary>
internal sealed class PersistentRpcLog : IPersistentRpcStore
{
    private readonly UplinkLog _log;
    private readonly EntityRegistry _registry;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<Guid, PersistentRpc> _byId = new();
    private readonly ConcurrentDictionary<Guid, ConcurrentDictionary<int, Guid>> _byDevice = new();
    private readonly ConcurrentDictionary<Guid, StrongBox> _sequences = new();

    // Non-terminal RPCs, so the expiry sweep does not walk the terminal ones kept until their TTL.
    private readonly ConcurrentDictionary<Guid, byte> _active = new();

    public PersistentRpcLog(UplinkLog log, EntityRegistry registry, TimeProvider time)
    {
        _log = log;
        _registry = registry;
        _time = time;
    }

    private long Now => _time.GetUtcNow().ToUnixTimeMilliseconds();

    public int NextRequestId(Guid deviceId) =>
        Interlocked.Increment(ref _sequences.GetOrAdd(deviceId, static _ => new StrongBox()).Value);

    public Task<PersistentRpc?> AddAsync(PersistentRpc rpc)
    {
        ArgumentNullException.ThrowIfNull(rpc);
        var w = new RecordWriter(RecordKind.Rpc, 128 + rpc.ParamsJson.Length);
        Write(ref w, rpc);
        return _log.Append(ref w, () => ApplyAdd(rpc));
    }

    public Task<PersistentRpc?> TransitionAsync(Guid rpcId, PersistentRpcStatus status, string? responseJson = null)
    {
        var updated = Now;
        var w = new RecordWriter(RecordKind.RpcTransition, 48 + (responseJson?.Length ?? 0));
        w.WriteGuid(rpcId);
        w.WriteByte((byte)status);
        w.WriteInt64(updated);
        w.WriteNullableString(responseJson);
        return _log.Append(ref w, () => ApplyTransition(rpcId, status, updated, responseJson));
    }

    public Task<int> RemoveAsync(IReadOnlyCollection<Guid> rpcIds)
    {
        ArgumentNullException.ThrowIfNull(rpcIds);
        if (rpcIds.Count == 0)
        {
            return Task.FromResult(0);
        }
        var ids = rpcIds.ToArray();
        var w = new RecordWriter(RecordKind.RpcRemove, 8 + 16 * ids.Length);
        w.WriteVarUInt((uint)ids.Length);
        foreach (var id in ids)
        {
            w.WriteGuid(id);
        }
        return _log.Append(ref w, () => ApplyRemove(ids));
    }

    public PersistentRpc? Get(Guid rpcId) => _byId.GetValueOrDefault(rpcId);

    public PersistentRpc? FindByRequestId(Guid deviceId, int requestId) =>
        _byDevice.TryGetValue(deviceId, out var map) && map.TryGetValue(requestId, out var id) ? Get(id) : null;

    public IReadOnlyList<PersistentRpc> ListByDevice(Guid deviceId)
    {
        if (!_byDevice.TryGetValue(deviceId, out var map))
        {
            return [];
        }
        var list = new List<PersistentRpc>(map.Count);
        foreach (var id in map.Values)
        {
            if (_byId.TryGetValue(id, out var rpc))
            {
                list.Add(rpc);
            }
        }
        list.Sort(static (a, b) => a.RequestId.CompareTo(b.RequestId));
        return list;
    }

    public IEnumerable<PersistentRpc> Active
    {
        get
        {
            foreach (var id in _active.Keys)
            {
                if (_byId.TryGetValue(id, out var rpc) && !rpc.IsTerminal)
                {
                    yield return rpc;
                }
            }
        }
    }

    public IEnumerable<PersistentRpc> All => _byId.Values;

    /// <summary>The device was deleted: its RPCs go with it (raised on the apply thread, live and replay alike).</summary>
    public void RemoveDevice(Guid deviceId)
    {
        if (_byDevice.TryRemove(deviceId, out var map))
        {
            foreach (var id in map.Values)
            {
                _byId.TryRemove(id, out _);
                _active.TryRemove(id, out _);
            }
        }
        _sequences.TryRemove(deviceId, out _);
    }

    // ---------------------------------------------------------------- apply (commit loop / replay)

    private PersistentRpc? ApplyAdd(PersistentRpc rpc)
    {
        if (_registry.GetDevice(rpc.DeviceId) is null)
        {
            return null;
        }
        _byId[rpc.Id] = rpc;
        Track(rpc);
        _byDevice.GetOrAdd(rpc.DeviceId, static _ => new ConcurrentDictionary<int, Guid>())[rpc.RequestId] = rpc.Id;
        RaiseSequence(rpc.DeviceId, rpc.RequestId);
        return rpc;
    }

    private PersistentRpc? ApplyTransition(Guid rpcId, PersistentRpcStatus status, long updated, string? responseJson)
    {
        if (!_byId.TryGetValue(rpcId, out var current) || !PersistentRpc.IsAllowed(current.Status, status, current.OneWay))
        {
            return null;
        }
        var next = current with
        {
            Status = status,
            Attempts = status == PersistentRpcStatus.Sent ? current.Attempts + 1 : current.Attempts,
            ResponseJson = responseJson ?? current.ResponseJson,
            UpdatedTime = updated,
        };
        _byId[rpcId] = next;
        Track(next);
        return next;
    }

    private int ApplyRemove(Guid[] ids)
    {
        var removed = 0;
        foreach (var id in ids)
        {
            if (_byId.TryRemove(id, out var rpc))
            {
                removed++;
                _active.TryRemove(id, out _);
                if (_byDevice.TryGetValue(rpc.DeviceId, out var map))
                {
                    map.TryRemove(rpc.RequestId, out _);
                }
            }
        }
        return removed;
    }

    private void Track(PersistentRpc rpc)
    {
        if (rpc.IsTerminal)
        {
            _active.TryRemove(rpc.Id, out _);
        }
        else
        {
            _active[rpc.Id] = 0;
        }
    }

    private void RaiseSequence(Guid deviceId, int requestId)
    {
        var box = _sequences.GetOrAdd(deviceId, static _ => new StrongBox());
        var seen = Volatile.Read(ref box.Value);
        while (seen < requestId)
        {
            var prior = Interlocked.CompareExchange(ref box.Value, requestId, seen);
            if (prior == seen)
            {
                return;
            }
            seen = prior;
        }
    }

    internal void Replay(RecordKind kind, ref RecordReader r)
    {
        switch (kind)
        {
            case RecordKind.Rpc:
                ApplyAdd(Read(ref r));
                break;
            case RecordKind.RpcTransition:
                ApplyTransition(r.ReadGuid(), (PersistentRpcStatus)r.ReadByte(), r.ReadInt64(), r.ReadNullableString());
                break;
            case RecordKind.RpcRemove:
            {
                var ids = new Guid[r.ReadVarUInt()];
                for (var i = 0; i < ids.Length; i++)
                {
                    ids[i] = r.ReadGuid();
                }
                ApplyRemove(ids);
                break;
            }
            case RecordKind.RpcSequence:
            {
                var deviceId = r.ReadGuid();
                var last = (int)r.ReadVarUInt();
                if (_registry.GetDevice(deviceId) is not null)
                {
                    RaiseSequence(deviceId, last);
                }
                break;
            }
            default:
                throw new InvalidDataException($"Record kind {kind} is not an RPC record.");
        }
    }

    /// <summary>Emits the current RPCs and the request-id sequences (which outlive TTL-removed RPCs).</summary>
    internal void WriteSnapshot(SnapshotWriter snapshot)
    {
        foreach (var (deviceId, box) in _sequences)
        {
            var w = new RecordWriter(RecordKind.RpcSequence, 32);
            w.WriteGuid(deviceId);
            w.WriteVarUInt((uint)Volatile.Read(ref box.Value));
            snapshot.Write(ref w);
        }
        foreach (var rpc in _byId.Values)
        {
            var w = new RecordWriter(RecordKind.Rpc, 128 + rpc.ParamsJson.Length);
            Write(ref w, rpc);
            snapshot.Write(ref w);
        }
    }

    private static void Write(ref RecordWriter w, PersistentRpc rpc)
    {
        w.WriteGuid(rpc.Id);
        w.WriteGuid(rpc.TenantId);
        w.WriteGuid(rpc.DeviceId);
        w.WriteVarUInt((uint)rpc.RequestId);
        w.WriteInt64(rpc.CreatedTime);
        w.WriteInt64(rpc.ExpirationTime);
        w.WriteString(rpc.Method);
        w.WriteString(rpc.ParamsJson);
        w.WriteBool(rpc.OneWay);
        w.WriteVarUInt((uint)rpc.Retries);
        w.WriteVarUInt((uint)rpc.Attempts);
        w.WriteByte((byte)rpc.Status);
        w.WriteNullableString(rpc.ResponseJson);
        w.WriteNullableString(rpc.AdditionalInfoJson);
        w.WriteInt64(rpc.UpdatedTime);
    }

    private static PersistentRpc Read(ref RecordReader r) => new(
        r.ReadGuid(), r.ReadGuid(), r.ReadGuid(), (int)r.ReadVarUInt(), r.ReadInt64(), r.ReadInt64(), r.ReadString(), r.ReadString(),
        r.ReadBool(), (int)r.ReadVarUInt(), (int)r.ReadVarUInt(), (PersistentRpcStatus)r.ReadByte(), r.ReadNullableString(),
        r.ReadNullableString(), r.ReadInt64());

    private sealed class StrongBox
    {
        public int Value;
    }
}
