using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>Aggregation of a history query, as in the reference's <c>agg</c> parameter.</summary>
public enum Aggregation : byte
{
    None = 0,
    Min,
    Max,
    Avg,
    Sum,
    Count,
}

/// <summary>
/// Time series per device and key: the latest value and the history, kept in memory as sorted
/// per-(device, key) series rebuilt at open from the FasterKV state store + log, and trimmed by retention. Writes are
/// durable log records applied after commit; subscribers are notified after apply.
/// </summary>
public sealed class TelemetryService
{
    // Small enough that the partial last chunk every appended series rewrites at a checkpoint stays cheap (a
    // checkpoint retains the full chunks before the first change); a recovered store in 4,096-point chunks is
    // rewritten in this size at the first checkpoint and its old keys are deleted.
    internal const int SnapshotChunk = 512;

    /// <summary>A snapshot chunk larger than this is written in parts (the state store's pages are 4 MiB).</summary>
    internal const int MaxStateRecordBytes = 1 << 20;

    private readonly UplinkLog _log;
    private readonly EntityRegistry _registry;
    private readonly SubscriptionHub _hub;
    private readonly ConcurrentDictionary<Guid, ConcurrentDictionary<string, Series>> _devices = new();
    private readonly TelemetryUplinkPool _uplinks = new();

    /// <summary>Replay's entry list for <see cref="RecordKind.TelemetryJson"/> records (replay runs on one thread; apply copies the entries).</summary>
    private readonly List<TsKvEntry> _replayEntries = new(8);

    internal TelemetryService(UplinkLog log, EntityRegistry registry, SubscriptionHub hub)
    {
        _log = log;
        _registry = registry;
        _hub = hub;
    }

    /// <summary>Saves telemetry (history and latest); false when the device does not exist.</summary>
    public Task<bool> SaveAsync(Guid deviceId, IReadOnlyList<TsKvEntry> entries)
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
        var w = new RecordWriter(RecordKind.Telemetry, 32 + entries.Count * 32);
        WriteEntries(ref w, deviceId, TelemetryTarget.Both, entries);
        return _log.Append(ref w, () =>
        {
            if (!Apply(deviceId, TelemetryTarget.Both, entries))
            {
                return false;
            }
            if (_hub.HasSubscribers(deviceId))
            {
                _hub.Publish(new DeviceUpdate(deviceId, DeviceUpdateKind.Telemetry, null, entries, []));
            }
            return true;
        });
    }

    /// <summary>A pooled uplink for the device API's parse-append-acknowledge path (see <see cref="SaveUplink"/>).</summary>
    internal TelemetryUplink RentUplink() => _uplinks.Rent();

    /// <summary>
    /// Saves a device's telemetry payload through a pooled uplink, without a per-message closure or task: the record
    /// is the payload as it arrived (<see cref="RecordKind.TelemetryJson"/>), parsed while its commit is on the disk
    /// and applied after it, as <see cref="SaveAsync"/> applies its entries. The result is Ok after the commit,
    /// BadPayload for a payload that does not parse, NotFound for an unknown device, Unavailable on a storage failure;
    /// reading it returns <paramref name="uplink"/> to the pool. <paramref name="json"/> is copied before this returns.
    /// </summary>
    internal ValueTask<UplinkResult> SaveUplink(Guid deviceId, TelemetryUplink uplink, in ReadOnlySequence<byte> json, long nowTs, KeyTable keys)
    {
        if (_registry.GetDevice(deviceId) is null)
        {
            return uplink.CompleteNow(DeviceNotFound);
        }
        var w = new RecordWriter(RecordKind.TelemetryJson, uplink.RecordBuffer);
        w.WriteGuid(deviceId);
        w.WriteInt64(nowTs);
        w.WriteTail(json);
        uplink.DeviceId = deviceId;
        uplink.Service = this;
        uplink.NowTs = nowTs;
        uplink.Keys = keys;
        var task = uplink.AsValueTask();
        _log.Append(ref w, uplink);
        return task;
    }

    private static readonly UplinkResult DeviceNotFound = new(UplinkStatus.NotFound, "device not found");

    /// <summary>The commit loop's apply step of a pooled uplink. Subscribers get a copy (the list is reused).</summary>
    internal bool ApplyUplink(Guid deviceId, List<TsKvEntry> entries)
    {
        if (!Apply(deviceId, TelemetryTarget.Both, entries))
        {
            return false;
        }
        if (_hub.HasSubscribers(deviceId))
        {
            _hub.Publish(new DeviceUpdate(deviceId, DeviceUpdateKind.Telemetry, null, entries.ToArray(), []));
        }
        return true;
    }

    /// <summary>
    /// In-process subscription to a device's committed telemetry and attribute changes. The callback
    /// runs on the commit loop: keep it short (enqueue and return).
    /// </summary>
    public IDisposable Subscribe(Guid deviceId, Action<DeviceUpdate> callback) => _hub.Subscribe(deviceId, callback);

    /// <summary>Keys with telemetry for the device.</summary>
    public IReadOnlyList<string> GetKeys(Guid deviceId) =>
        _devices.TryGetValue(deviceId, out var series) ? [.. series.Keys] : [];

    /// <summary>Latest values; null <paramref name="keys"/> means all keys. Keys without a latest value are skipped.</summary>
    public IReadOnlyList<TsKvEntry> GetLatest(Guid deviceId, IReadOnlyList<string>? keys = null)
    {
        if (!_devices.TryGetValue(deviceId, out var device))
        {
            return [];
        }
        var result = new List<TsKvEntry>();
        if (keys is null)
        {
            foreach (var series in device.Values)
            {
                if (series.TryGetLatest(out var latest))
                {
                    result.Add(latest);
                }
            }
        }
        else
        {
            foreach (var key in keys)
            {
                if (device.TryGetValue(key, out var series) && series.TryGetLatest(out var latest))
                {
                    result.Add(latest);
                }
            }
        }
        return result;
    }

    /// <summary>
    /// History of one key over [<paramref name="startTs"/>, <paramref name="endTs"/>), as the reference's
    /// <c>AbstractChunkedAggregationTimeseriesDao.findAllAsync</c>. With <see cref="Aggregation.None"/>, or an
    /// <paramref name="intervalMs"/> below 1, the raw points, at most <paramref name="limit"/>, newest first when
    /// <paramref name="descending"/>. Otherwise every bucket of <paramref name="intervalMs"/> from startTs, oldest first
    /// (order and limit apply to raw points only); each non-empty bucket yields one point stamped at the bucket's middle.
    /// MIN, MAX and SUM of integers stay integers, AVG is a double, COUNT counts every value; MIN and MAX of a bucket
    /// with no number are its least and greatest string; other non-numeric values are ignored.
    /// </summary>
    public IReadOnlyList<TsKvEntry> Query(
        Guid deviceId, string key, long startTs, long endTs, long intervalMs, int limit, Aggregation agg, bool descending)
    {
        if (!_devices.TryGetValue(deviceId, out var device) || !device.TryGetValue(key, out var series) || endTs <= startTs)
        {
            return [];
        }
        limit = limit <= 0 ? int.MaxValue : limit;
        var points = series.Range(startTs, endTs);
        List<TsKvEntry> result;
        if (agg == Aggregation.None || intervalMs < 1)
        {
            result = new List<TsKvEntry>(Math.Min(points.Length, limit));
            if (descending)
            {
                for (var i = points.Length - 1; i >= 0 && result.Count < limit; i--)
                {
                    result.Add(points[i]);
                }
            }
            else
            {
                for (var i = 0; i < points.Length && result.Count < limit; i++)
                {
                    result.Add(points[i]);
                }
            }
            return result;
        }

        result = [];
        var index = 0;
        while (index < points.Length)
        {
            // Straight to the bucket of the next point: empty buckets cost nothing, so a tiny interval over a long
            // range is as cheap as the points in it (never more buckets than points). Unsigned, as the offset of a
            // point from startTs may pass long.MaxValue.
            var offset = unchecked((ulong)(points[index].Ts - startTs));
            var bucketStart = unchecked(startTs + (long)(offset / (ulong)intervalMs * (ulong)intervalMs));
            var bucketEnd = bucketStart > long.MaxValue - intervalMs ? endTs : Math.Min(bucketStart + intervalMs, endTs);
            var last = bucketEnd == endTs; // takes the rest, with a point at long.MaxValue when endTs is
            var accumulator = new Accumulator();
            while (index < points.Length && (last || points[index].Ts < bucketEnd))
            {
                accumulator.Add(points[index].Entry);
                index++;
            }
            if (accumulator.TryGetResult(key, agg, out var value))
            {
                result.Add(new TsKvEntry(bucketStart + (bucketEnd - bucketStart) / 2, value));
            }
        }
        return result;
    }

    /// <summary>
    /// Deletes keys' history in [startTs, endTs) and, with <paramref name="deleteLatest"/>, their latest value when its
    /// timestamp is in that range (as the reference does); with <paramref name="rewriteLatest"/> the newest point left
    /// in the history becomes the latest value instead.
    /// </summary>
    public Task DeleteAsync(Guid deviceId, IReadOnlyList<string> keys, bool deleteLatest, bool deleteHistory,
        long startTs = long.MinValue, long endTs = long.MaxValue, bool rewriteLatest = false)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (keys.Count == 0 || !_devices.ContainsKey(deviceId))
        {
            return Task.CompletedTask;
        }
        var w = new RecordWriter(RecordKind.TelemetryDelete);
        w.WriteGuid(deviceId);
        // The latest value's fate, one byte: 0 kept, 1 deleted when in range, 2 rewritten from the history (older logs hold 0 or 1).
        var latestMode = (byte)(!deleteLatest ? 0 : rewriteLatest ? 2 : 1);
        w.WriteByte(latestMode);
        w.WriteBool(deleteHistory);
        w.WriteInt64(startTs);
        w.WriteInt64(endTs);
        w.WriteVarUInt((uint)keys.Count);
        foreach (var key in keys)
        {
            w.WriteString(key);
        }
        return _log.Append(ref w, () =>
        {
            ApplyDelete(deviceId, keys, latestMode, deleteHistory, startTs, endTs);
            return true;
        });
    }

    internal static void WriteEntries(ref RecordWriter w, Guid deviceId, TelemetryTarget target, IReadOnlyList<TsKvEntry> entries)
    {
        w.WriteGuid(deviceId);
        w.WriteByte((byte)target);
        w.WriteVarUInt((uint)entries.Count);
        for (var i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            w.WriteInt64(e.Ts);
            w.WriteKv(e.Entry);
        }
    }

    internal bool Apply(Guid deviceId, TelemetryTarget target, IReadOnlyList<TsKvEntry> entries)
    {
        if (_registry.GetDevice(deviceId) is null)
        {
            return false;
        }
        var device = _devices.GetOrAdd(deviceId, static _ => new ConcurrentDictionary<string, Series>(StringComparer.Ordinal));
        for (var i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            var series = device.GetOrAdd(e.Entry.Key, static key => new Series(key));
            series.Add(e, target);
        }
        return true;
    }

    private void ApplyDelete(Guid deviceId, IReadOnlyList<string> keys, byte latestMode, bool deleteHistory, long startTs, long endTs)
    {
        if (!_devices.TryGetValue(deviceId, out var device))
        {
            return;
        }
        foreach (var key in keys)
        {
            if (device.TryGetValue(key, out var series) && series.Delete(latestMode, deleteHistory, startTs, endTs))
            {
                device.TryRemove(key, out _);
            }
        }
    }

    internal void RemoveDevice(Guid deviceId)
    {
        if (_devices.TryRemove(deviceId, out var device))
        {
            foreach (var series in device.Values)
            {
                series.Release();
            }
        }
    }

    /// <summary>Drops history older than <paramref name="cutoffTs"/> (latest values are kept).</summary>
    internal void TrimBefore(long cutoffTs)
    {
        foreach (var device in _devices.Values)
        {
            foreach (var series in device.Values)
            {
                series.TrimBefore(cutoffTs);
            }
        }
    }

    internal void Replay(RecordKind kind, ref RecordReader r)
    {
        var deviceId = r.ReadGuid();
        if (kind == RecordKind.TelemetryHistory)
        {
            var key = r.ReadKey();
            var count = r.ReadCount();
            var entries = new TsKvEntry[count];
            var ts = 0L;
            for (var i = 0; i < count; i++)
            {
                ts = i == 0 ? r.ReadInt64() : unchecked(ts + (long)r.ReadVarUInt64());
                entries[i] = new TsKvEntry(ts, r.ReadKvValue(key));
            }
            Apply(deviceId, TelemetryTarget.History, entries);
        }
        else if (kind == RecordKind.TelemetryJson)
        {
            // Parsed as it was live, with its receipt time; a payload answered BadPayload then is skipped now.
            var nowTs = r.ReadInt64();
            var entries = _replayEntries;
            entries.Clear();
            if (TelemetryUplink.Parse(r.ReadTail(), nowTs, r.Keys, entries) is null && entries.Count > 0)
            {
                Apply(deviceId, TelemetryTarget.Both, entries);
            }
        }
        else if (kind == RecordKind.Telemetry)
        {
            var target = (TelemetryTarget)r.ReadByte();
            var count = r.ReadCount();
            var entries = new TsKvEntry[count];
            for (var i = 0; i < count; i++)
            {
                var ts = r.ReadInt64();
                entries[i] = new TsKvEntry(ts, r.ReadKv());
            }
            Apply(deviceId, target, entries);
        }
        else
        {
            var latestMode = r.ReadByte();
            var deleteHistory = r.ReadBool();
            var startTs = r.ReadInt64();
            var endTs = r.ReadInt64();
            var count = r.ReadCount();
            var keys = new string[count];
            for (var i = 0; i < count; i++)
            {
                keys[i] = r.ReadKey();
            }
            ApplyDelete(deviceId, keys, latestMode, deleteHistory, startTs, endTs);
        }
    }

    /// <summary>
    /// Emits each series' latest value (key "L" + device + key) and its history in chunks of
    /// <see cref="SnapshotChunk"/> points (key "H" + device + chunk number + key).
    /// </summary>
    internal void WriteState(StateStore state, bool paced = false)
    {
        var slice = Stopwatch.GetTimestamp();
        foreach (var (deviceId, device) in _devices)
        {
            foreach (var (key, series) in device)
            {
                series.WriteState(state, deviceId, key);
                SeriesSnapshotted?.Invoke();
                if (paced && Stopwatch.GetElapsedTime(slice) >= PacedSlice)
                {
                    Thread.Sleep(PacedPause);
                    SnapshotPauses++;
                    slice = Stopwatch.GetTimestamp();
                }
            }
        }
    }

    /// <summary>
    /// A paced snapshot (an automatic checkpoint's, off the commit loop) sleeps <see cref="PacedPause"/> after each
    /// <see cref="PacedSlice"/> of work. Its encoding and the state store's upserts otherwise ran in one burst of 20 to
    /// 50 ms, in which the uplink log's commits took 1 to 6 ms instead of 0.5 and MQTT acknowledgements queued behind
    /// them (issue 12, row 5). The snapshot takes about twice as long; what it holds is the same (each series is
    /// copied under its own lock at some moment after the checkpoint's log address, whenever that is).
    /// </summary>
    internal static readonly TimeSpan PacedSlice = TimeSpan.FromMilliseconds(1);

    /// <inheritdoc cref="PacedSlice"/>
    internal static readonly TimeSpan PacedPause = TimeSpan.FromMilliseconds(1);

    /// <summary>Pauses taken by paced snapshots since open (tests and diagnostics; written by the one snapshot running).</summary>
    internal long SnapshotPauses { get; private set; }

    /// <summary>Test seam: called after each series is written by <see cref="WriteState"/>.</summary>
    internal Action? SeriesSnapshotted { get; set; }

    /// <summary>
    /// One (device, key) series: the history (one point per ts, a later write at the same ts replaces it, as
    /// the reference's primary key does) in native memory (<see cref="TelemetryHistory"/>) and the latest
    /// value. Written only by the apply thread; a short lock keeps concurrent readers consistent and keeps a
    /// block from being freed under a reader.
    /// </summary>
    private sealed class Series(string key)
    {
        private readonly Lock _lock = new();
        private readonly TelemetryHistory _history = new();
        private TsKvEntry _latest;
        private bool _hasLatest;

        // The smallest ts whose point was added, replaced or deleted since the last snapshot (everything at
        // first: the stored chunks of a recovered series are rewritten once). Points before it, and so the
        // snapshot chunks wholly before its index, are unchanged and are retained rather than rewritten.
        private long _changedFromTs = long.MinValue;

        // Parts per snapshot chunk at the last snapshot, for chunks written in more than one record (null: all in one).
        private List<int>? _chunkParts;

        public void Add(TsKvEntry entry, TelemetryTarget target)
        {
            lock (_lock)
            {
                if ((target & TelemetryTarget.History) != 0)
                {
                    _changedFromTs = Math.Min(_changedFromTs, entry.Ts);
                    _history.Put(entry.Ts, entry.Entry);
                }
                if ((target & TelemetryTarget.Latest) != 0 && (!_hasLatest || entry.Ts >= _latest.Ts))
                {
                    _latest = entry;
                    _hasLatest = true;
                }
            }
        }

        public bool TryGetLatest(out TsKvEntry latest)
        {
            lock (_lock)
            {
                latest = _latest;
                return _hasLatest;
            }
        }

        public TsKvEntry[] Range(long startTs, long endTs)
        {
            lock (_lock)
            {
                return _history.Range(startTs, endTs, key);
            }
        }

        /// <summary>
        /// Deletes history in the range; <paramref name="latestMode"/> 1 deletes the latest value when its timestamp is
        /// in the range, 2 replaces it then with the newest point left. Returns true when the series is now empty.
        /// </summary>
        public bool Delete(byte latestMode, bool history, long startTs, long endTs)
        {
            lock (_lock)
            {
                if (history)
                {
                    _changedFromTs = Math.Min(_changedFromTs, startTs);
                    _history.Delete(startTs, endTs);
                }
                if (latestMode != 0 && _hasLatest && _latest.Ts >= startTs && (_latest.Ts < endTs || endTs == long.MaxValue))
                {
                    _hasLatest = latestMode == 2 && _history.TryGetLast(key, out _latest);
                    if (!_hasLatest)
                    {
                        _latest = default;
                    }
                }
                return !_hasLatest && _history.Count == 0;
            }
        }

        public void TrimBefore(long cutoffTs)
        {
            lock (_lock)
            {
                var before = _history.Count;
                _history.TrimBefore(cutoffTs);
                if (_history.Count != before)
                {
                    _changedFromTs = long.MinValue;
                }
            }
        }

        /// <summary>
        /// The history in chunks of <see cref="SnapshotChunk"/> points, copied from native memory into the
        /// records (no managed copy of the points), then the latest value. Chunks wholly before the first
        /// change since the previous snapshot hold the same points as then: they are retained, not rewritten,
        /// so a checkpoint's work follows what changed, not all history. Runs on the commit loop (a requested
        /// checkpoint) or beside it (an automatic one, see PerfEngine.FinishInBackgroundAsync): the lock keeps
        /// the apply thread out while the records are made, so they hold the series as of one moment; they go
        /// into the store after it is released.
        /// </summary>
        public void WriteState(StateStore state, Guid deviceId, string stateKey)
        {
            var records = new List<(string Key, RecordWriter Record)>();
            lock (_lock)
            {
                var total = _history.Count;
                var firstChunk = _changedFromTs switch
                {
                    long.MaxValue => (total + SnapshotChunk - 1) / SnapshotChunk,
                    long.MinValue => 0,
                    var ts => Math.Min(_history.CountBefore(ts), total) / SnapshotChunk,
                };
                _changedFromTs = long.MaxValue;
                for (var chunk = 0; chunk < firstChunk; chunk++)
                {
                    state.Retain(StateKeys.History(deviceId, stateKey, chunk));
                    for (var part = 1; part < PartsOf(chunk); part++)
                    {
                        state.Retain(StateKeys.HistoryPart(deviceId, stateKey, chunk, part));
                    }
                }
                var start = firstChunk * SnapshotChunk;
                var position = start < total ? _history.PositionAt(start) : default;
                for (var offset = start; offset < total; offset += SnapshotChunk)
                {
                    WriteChunk(records, deviceId, stateKey, offset / SnapshotChunk, Math.Min(SnapshotChunk, total - offset), ref position);
                }
                var chunks = (total + SnapshotChunk - 1) / SnapshotChunk;
                if (_chunkParts is { } parts && parts.Count > chunks)
                {
                    parts.RemoveRange(chunks, parts.Count - chunks);
                }
                if (_hasLatest)
                {
                    var w = new RecordWriter(RecordKind.Telemetry);
                    WriteEntries(ref w, deviceId, TelemetryTarget.Latest, [_latest]);
                    records.Add((StateKeys.Latest(deviceId, stateKey), w));
                }
            }
            // Into the store outside the lock: an upsert can wait for the store to flush pages (its memory is bounded),
            // and the apply thread, which takes this lock for every point, must not wait with it.
            foreach (var (key, record) in records)
            {
                var w = record;
                state.Write(key, ref w);
            }
        }

        /// <summary>
        /// One chunk's records, under the lock: one record, or, when its points are large (long strings: 512 of 16 KB
        /// are 8 MB, and the store's pages are 4 MiB), as many parts of about equal point counts as keep each under
        /// <see cref="MaxStateRecordBytes"/>. Each part is a history record of its own, so loading needs nothing new.
        /// </summary>
        private void WriteChunk(List<(string Key, RecordWriter Record)> records, Guid deviceId, string stateKey, int chunk, int count, ref TelemetryHistory.SnapshotPosition position)
        {
            for (var parts = 1; ; parts = Math.Min(count, parts * 2))
            {
                var at = position;
                var first = records.Count;
                var fits = true;
                for (var part = 0; part < parts && fits; part++)
                {
                    var partCount = (count / parts) + (part < count % parts ? 1 : 0);
                    var w = new RecordWriter(RecordKind.TelemetryHistory, 48 + (key.Length * 3) + (partCount * 12));
                    w.WriteGuid(deviceId);
                    w.WriteString(key);
                    w.WriteVarUInt((uint)partCount);
                    _history.WriteEntries(ref w, ref at, partCount);
                    fits = w.Length <= MaxStateRecordBytes || parts == count;
                    records.Add((part == 0 ? StateKeys.History(deviceId, stateKey, chunk) : StateKeys.HistoryPart(deviceId, stateKey, chunk, part), w));
                }
                if (fits)
                {
                    position = at;
                    SetPartsOf(chunk, parts);
                    return;
                }
                for (var i = records.Count - 1; i >= first; i--)
                {
                    var w = records[i].Record;
                    ArrayPool<byte>.Shared.Return(w.Detach(out _));
                    records.RemoveAt(i);
                }
            }
        }

        /// <summary>How many records chunk <paramref name="chunk"/> was written as at the last snapshot (1 unless its points were large).</summary>
        private int PartsOf(int chunk) => _chunkParts is { } parts && chunk < parts.Count ? parts[chunk] : 1;

        private void SetPartsOf(int chunk, int count)
        {
            if (_chunkParts is null && count == 1)
            {
                return;
            }
            _chunkParts ??= [];
            while (_chunkParts.Count <= chunk)
            {
                _chunkParts.Add(1);
            }
            _chunkParts[chunk] = count;
        }

        /// <summary>Frees the history's native memory now (the device is gone); readers holding the series see it empty.</summary>
        public void Release()
        {
            lock (_lock)
            {
                _history.Dispose();
                _hasLatest = false;
                _latest = default;
            }
        }
    }

    private struct Accumulator
    {
        private long _count;
        private long _numeric;
        private bool _allLong;
        private long _longSum;
        private double _doubleSum;
        private double _min;
        private double _max;
        private long _longMin;
        private long _longMax;
        private string? _textMin;
        private string? _textMax;

        public void Add(in KvEntry entry)
        {
            _count++;
            if (entry.Type == DataType.String && entry.Text is { } text)
            {
                // The reference's findStringMin/findStringMax, used when a bucket holds no number.
                _textMin = _textMin is null || string.CompareOrdinal(text, _textMin) < 0 ? text : _textMin;
                _textMax = _textMax is null || string.CompareOrdinal(text, _textMax) > 0 ? text : _textMax;
                return;
            }

            var value = entry.AsDouble();
            if (double.IsNaN(value))
            {
                return;
            }
            if (_numeric == 0)
            {
                _allLong = true;
                _min = _max = value;
                _longMin = long.MaxValue;
                _longMax = long.MinValue;
            }
            _numeric++;
            _doubleSum += value;
            _min = Math.Min(_min, value);
            _max = Math.Max(_max, value);
            if (entry.Type == DataType.Long)
            {
                _longSum = unchecked(_longSum + entry.LongValue);
                _longMin = Math.Min(_longMin, entry.LongValue);
                _longMax = Math.Max(_longMax, entry.LongValue);
            }
            else
            {
                _allLong = false;
            }
        }

        public readonly bool TryGetResult(string key, Aggregation agg, out KvEntry result)
        {
            if (agg == Aggregation.Count)
            {
                result = new KvEntry(key, _count);
                return _count > 0;
            }
            result = default;
            if (_numeric == 0)
            {
                var text = agg switch { Aggregation.Min => _textMin, Aggregation.Max => _textMax, _ => null };
                if (text is not null)
                {
                    result = new KvEntry(key, text);
                }

                return text is not null;
            }
            result = agg switch
            {
                Aggregation.Min => _allLong ? new KvEntry(key, _longMin) : new KvEntry(key, _min),
                Aggregation.Max => _allLong ? new KvEntry(key, _longMax) : new KvEntry(key, _max),
                Aggregation.Sum => _allLong ? new KvEntry(key, _longSum) : new KvEntry(key, _doubleSum),
                Aggregation.Avg => new KvEntry(key, _doubleSum / _numeric),
                _ => throw new ArgumentOutOfRangeException(nameof(agg)),
            };
            return true;
        }
    }
}
