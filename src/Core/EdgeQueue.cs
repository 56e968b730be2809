using System.Collections.Concurrent;
using Perf.Core.Internal;

namespace Perf.Core;

/// <summary>One queued downlink of an edge: its sequence number (the wire's downlinkMsgId) and the encoded message.</summary>
public sealed record EdgeDownlink(long Seq, byte[] Payload);

/// <summary>A downlink that was given up on (too large, unacknowledged, rejected), kept for operators.</summary>
public sealed record EdgeDownlinkFailure(long Seq, string Error, long Ts);

/// <summary>What the server remembers of an edge's connection: the protocol version it last spoke and whether its first full sync was queued.</summary>
public readonly record struct EdgeConnectionInfo(int EdgeVersion, bool SyncQueued, long LastConnectTs);

/// <summary>
/// Durable per-edge state: the devices assigned to each edge and a FIFO of downlinks waiting for the
/// edge's acknowledgement. Every change is a log record applied after the group commit (so the queue
/// survives kill -9 and is rebuilt by snapshot + replay); payloads are opaque bytes encoded by the edge
/// door, so the core knows nothing of protobuf. Sequence numbers are assigned when a record is applied,
/// on the single apply thread, so replay reproduces them exactly.
/// </summary>
public sealed class EdgeQueues
{
    private const int MaxFailuresKept = 100;

    private readonly UplinkLog _log;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<Guid, EdgeState> _edges = new();
    private readonly ConcurrentDictionary<Guid, ConcurrentDictionary<Guid, byte>> _edgesByDevice = new();

    internal EdgeQueues(UplinkLog log, EntityRegistry registry, TimeProvider time)
    {
        _log = log;
        _time = time;
        // A deleted device leaves every edge it was assigned to (apply thread: live and replay alike).
        registry.DeviceRemoved += deviceId =>
        {
            if (!_edgesByDevice.TryRemove(deviceId, out var edges))
            {
                return;
            }
            foreach (var edgeId in edges.Keys)
            {
                if (_edges.TryGetValue(edgeId, out var state))
                {
                    lock (state)
                    {
                        state.Devices.Remove(deviceId);
                    }
                }
            }
            DeviceDeleted?.Invoke(deviceId, [.. edges.Keys]);
        };
    }

    /// <summary>Raised on the commit loop after a downlink for the edge was durably queued.</summary>
    public event Action<Guid>? DownlinkQueued;

    /// <summary>Raised on the commit loop after a device was assigned (true) to or unassigned (false) from an edge.</summary>
    public event Action<Guid, Guid, bool>? AssignmentChanged;

    /// <summary>Raised on the commit loop when a device that was assigned to the listed edges was deleted.</summary>
    public event Action<Guid, IReadOnlyList<Guid>>? DeviceDeleted;

    public IReadOnlyList<Guid> AssignedDevices(Guid edgeId)
    {
        if (!_edges.TryGetValue(edgeId, out var state))
        {
            return [];
        }
        lock (state)
        {
            return [.. state.Devices];
        }
    }

    public IReadOnlyList<Guid> EdgesOf(Guid deviceId) =>
        _edgesByDevice.TryGetValue(deviceId, out var edges) ? [.. edges.Keys] : [];

    public bool IsAssigned(Guid edgeId, Guid deviceId) =>
        _edgesByDevice.TryGetValue(deviceId, out var edges) && edges.ContainsKey(edgeId);

    public EdgeConnectionInfo GetConnectionInfo(Guid edgeId)
    {
        if (!_edges.TryGetValue(edgeId, out var state))
        {
            return default;
        }
        lock (state)
        {
            return new EdgeConnectionInfo(state.Version, state.SyncQueued, state.LastConnectTs);
        }
    }

    /// <summary>Downlinks still waiting for an acknowledgement.</summary>
    public int PendingCount(Guid edgeId)
    {
        if (!_edges.TryGetValue(edgeId, out var state))
        {
            return 0;
        }
        lock (state)
        {
            return state.Pending.Count;
        }
    }

    /// <summary>The most recent downlinks given up on, newest last.</summary>
    public IReadOnlyList<EdgeDownlinkFailure> Failures(Guid edgeId)
    {
        if (!_edges.TryGetValue(edgeId, out var state))
        {
            return [];
        }
        lock (state)
        {
            return [.. state.Failures];
        }
    }

    /// <summary>The first pending downlink with a sequence number above <paramref name="afterSeq"/>.</summary>
    public bool TryGetNext(Guid edgeId, long afterSeq, out EdgeDownlink downlink)
    {
        downlink = null!;
        if (!_edges.TryGetValue(edgeId, out var state))
        {
            return false;
        }
        lock (state)
        {
            foreach (var (seq, payload) in state.Pending)
            {
                if (seq > afterSeq)
                {
                    downlink = new EdgeDownlink(seq, payload);
                    return true;
                }
            }
        }
        return false;
    }

    /// <summary>Assigns (or unassigns) a device; completes after the commit. False when nothing changed.</summary>
    public Task<bool> SetAssignmentAsync(Guid edgeId, Guid deviceId, bool assigned)
    {
        var w = new RecordWriter(RecordKind.EdgeAssignment);
        w.WriteGuid(edgeId);
        w.WriteGuid(deviceId);
        w.WriteBool(assigned);
        return _log.Append(ref w, () =>
        {
            var changed = ApplyAssignment(edgeId, deviceId, assigned);
            if (changed)
            {
                AssignmentChanged?.Invoke(edgeId, deviceId, assigned);
            }
            return changed;
        });
    }

    /// <summary>Queues a downlink; completes with its sequence number once it is durable.</summary>
    public Task<long> EnqueueAsync(Guid edgeId, ReadOnlySpan<byte> payload)
    {
        var w = new RecordWriter(RecordKind.EdgeDownlink, 32 + payload.Length);
        w.WriteGuid(edgeId);
        w.WriteBytes(payload);
        var copy = payload.ToArray();
        return _log.Append(ref w, () =>
        {
            var seq = ApplyDownlink(edgeId, copy);
            DownlinkQueued?.Invoke(edgeId);
            return seq;
        });
    }

    /// <summary>Removes a downlink from the queue: acknowledged, or given up on with <paramref name="error"/>.</summary>
    public Task<bool> CompleteAsync(Guid edgeId, long seq, string? error = null)
    {
        var w = new RecordWriter(RecordKind.EdgeDownlinkDone);
        w.WriteGuid(edgeId);
        w.WriteInt64(seq);
        w.WriteNullableString(error);
        var ts = _time.GetUtcNow().ToUnixTimeMilliseconds();
        w.WriteInt64(ts);
        return _log.Append(ref w, () => ApplyDone(edgeId, seq, error, ts));
    }

    /// <summary>Records a connect: the edge's protocol version and, when <paramref name="syncQueued"/>, that its first full sync was queued.</summary>
    public Task RecordConnectAsync(Guid edgeId, int edgeVersion, bool syncQueued)
    {
        var ts = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var w = new RecordWriter(RecordKind.EdgeMeta);
        w.WriteGuid(edgeId);
        w.WriteInt64(long.MinValue);
        w.WriteInt64(edgeVersion);
        w.WriteBool(syncQueued);
        w.WriteInt64(ts);
        return _log.Append(ref w, () =>
        {
            ApplyMeta(edgeId, long.MinValue, edgeVersion, syncQueued, ts);
            return true;
        });
    }

    /// <summary>Forgets an edge's assignments and queue (after the edge was deleted).</summary>
    public Task RemoveEdgeAsync(Guid edgeId)
    {
        var w = new RecordWriter(RecordKind.EdgeQueueDelete);
        w.WriteGuid(edgeId);
        return _log.Append(ref w, () =>
        {
            ApplyRemove(edgeId);
            return true;
        });
    }

    // ---------------------------------------------------------------- apply (live after commit, and replay)

    private EdgeState State(Guid edgeId) => _edges.GetOrAdd(edgeId, static _ => new EdgeState());

    private bool ApplyAssignment(Guid edgeId, Guid deviceId, bool assigned)
    {
        var state = State(edgeId);
        bool changed;
        lock (state)
        {
            changed = assigned ? state.Devices.Add(deviceId) : state.Devices.Remove(deviceId);
        }
        if (assigned)
        {
            _edgesByDevice.GetOrAdd(deviceId, static _ => new ConcurrentDictionary<Guid, byte>())[edgeId] = 0;
        }
        else if (_edgesByDevice.TryGetValue(deviceId, out var edges))
        {
            edges.TryRemove(edgeId, out _);
        }
        return changed;
    }

    private long ApplyDownlink(Guid edgeId, byte[] payload)
    {
        var state = State(edgeId);
        lock (state)
        {
            var seq = ++state.NextSeq;
            state.Pending.Add(seq, payload);
            return seq;
        }
    }

    private bool ApplyDone(Guid edgeId, long seq, string? error, long ts)
    {
        if (!_edges.TryGetValue(edgeId, out var state))
        {
            return false;
        }
        lock (state)
        {
            if (error is not null)
            {
                state.Failures.Enqueue(new EdgeDownlinkFailure(seq, error, ts));
                while (state.Failures.Count > MaxFailuresKept)
                {
                    state.Failures.Dequeue();
                }
            }
            return state.Pending.Remove(seq);
        }
    }

    /// <summary><paramref name="nextSeq"/> = long.MinValue keeps the counter (a connect record).</summary>
    private void ApplyMeta(Guid edgeId, long nextSeq, long version, bool syncQueued, long ts)
    {
        var state = State(edgeId);
        lock (state)
        {
            if (nextSeq != long.MinValue)
            {
                state.NextSeq = nextSeq;
            }
            state.Version = (int)version;
            state.SyncQueued |= syncQueued;
            state.LastConnectTs = ts;
        }
    }

    private void ApplyRemove(Guid edgeId)
    {
        if (!_edges.TryRemove(edgeId, out var state))
        {
            return;
        }
        lock (state)
        {
            foreach (var deviceId in state.Devices)
            {
                if (_edgesByDevice.TryGetValue(deviceId, out var edges))
                {
                    edges.TryRemove(edgeId, out _);
                }
            }
        }
    }

    internal void Replay(RecordKind kind, ref RecordReader r)
    {
        switch (kind)
        {
            case RecordKind.EdgeAssignment:
                ApplyAssignment(r.ReadGuid(), r.ReadGuid(), r.ReadBool());
                break;
            case RecordKind.EdgeDownlink:
                ApplyDownlink(r.ReadGuid(), r.ReadBytes());
                break;
            case RecordKind.EdgeDownlinkDone:
                ApplyDone(r.ReadGuid(), r.ReadInt64(), r.ReadNullableString(), r.ReadInt64());
                break;
            case RecordKind.EdgeMeta:
                ApplyMeta(r.ReadGuid(), r.ReadInt64(), r.ReadInt64(), r.ReadBool(), r.ReadInt64());
                break;
            case RecordKind.EdgeQueueDelete:
                ApplyRemove(r.ReadGuid());
                break;
            case RecordKind.EdgeState:
            {
                // Sub-records in the order WriteState emitted them (the KV store has no order of its own).
                var count = r.ReadCount();
                for (var i = 0; i < count; i++)
                {
                    var sub = r.ReadBytes();
                    var reader = new RecordReader(sub, r.Keys);
                    Replay((RecordKind)reader.ReadByte(), ref reader);
                }
                break;
            }
            default:
                throw new InvalidDataException($"Record kind {kind} is not an edge record.");
        }
    }

    /// <summary>
    /// One composite value per edge for the checkpointed state store: a meta record putting the counter
    /// just before the first pending downlink, the assignments, the pending downlinks (which replay
    /// renumbers identically), the real counter, then the kept failures, in that order.
    /// </summary>
    internal void WriteState(StateStore store)
    {
        foreach (var (edgeId, state) in _edges)
        {
            var parts = new List<byte[]>();
            lock (state)
            {
                var first = state.Pending.Count > 0 ? state.Pending.Keys[0] - 1 : state.NextSeq;
                parts.Add(Meta(edgeId, first, state));
                foreach (var deviceId in state.Devices)
                {
                    var w = new RecordWriter(RecordKind.EdgeAssignment);
                    w.WriteGuid(edgeId);
                    w.WriteGuid(deviceId);
                    w.WriteBool(true);
                    parts.Add(Bytes(ref w));
                }
                var expected = first;
                foreach (var (seq, payload) in state.Pending)
                {
                    // Gaps (acknowledged in the middle) are re-created by a counter jump.
                    if (seq != expected + 1)
                    {
                        parts.Add(Meta(edgeId, seq - 1, state));
                    }
                    var w = new RecordWriter(RecordKind.EdgeDownlink, 32 + payload.Length);
                    w.WriteGuid(edgeId);
                    w.WriteBytes(payload);
                    parts.Add(Bytes(ref w));
                    expected = seq;
                }
                parts.Add(Meta(edgeId, state.NextSeq, state));
                // Failures re-applied as completions of long-gone sequence numbers: they only re-fill the failure list.
                foreach (var failure in state.Failures)
                {
                    var w = new RecordWriter(RecordKind.EdgeDownlinkDone);
                    w.WriteGuid(edgeId);
                    w.WriteInt64(failure.Seq);
                    w.WriteNullableString(failure.Error);
                    w.WriteInt64(failure.Ts);
                    parts.Add(Bytes(ref w));
                }
            }

            var record = new RecordWriter(RecordKind.EdgeState, 16 + parts.Sum(p => p.Length + 5));
            record.WriteVarUInt((uint)parts.Count);
            foreach (var part in parts)
            {
                record.WriteBytes(part);
            }
            store.Write(StateKeys.EdgeQueue(edgeId), ref record);
        }
    }

    private static byte[] Meta(Guid edgeId, long nextSeq, EdgeState state)
    {
        var w = new RecordWriter(RecordKind.EdgeMeta);
        w.WriteGuid(edgeId);
        w.WriteInt64(nextSeq);
        w.WriteInt64(state.Version);
        w.WriteBool(state.SyncQueued);
        w.WriteInt64(state.LastConnectTs);
        return Bytes(ref w);
    }

    private static byte[] Bytes(ref RecordWriter w)
    {
        var buffer = w.Detach(out var length);
        var copy = buffer.AsSpan(0, length).ToArray();
        System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        return copy;
    }

    private sealed class EdgeState
    {
        public readonly HashSet<Guid> Devices = [];
        public readonly SortedList<long, byte[]> Pending = [];
        public readonly Queue<EdgeDownlinkFailure> Failures = new();
        public long NextSeq;
        public int Version;
        public bool SyncQueued;
        public long LastConnectTs;
    }
}
