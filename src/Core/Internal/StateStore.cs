using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using FASTER.core;
using Perf.Core.Domain;

namespace Perf.Core.Internal;

/// <summary>
/// The checkpointed key/value store of record: a FASTER <c>FasterKV&lt;SpanByte, SpanByte&gt;</c> in
/// <c>DataDir/kv</c> (hybrid log <c>kv/hlog.log</c>, checkpoints in <c>kv/checkpoints</c>).
/// </summary>
/// <remarks>
/// <para>Keys are a one-letter kind plus the entity key (see <see cref="StateKeys"/>); values are the
/// uplink log's own record encoding (<see cref="RecordWriter"/>), so recovery feeds them to the same
/// apply code as log replay. The reserved key <c>"#addr"</c> holds the uplink log address the
/// store is consistent with; it is written by the same FASTER checkpoint as the state, so the state
/// and its address can never disagree.</para>
/// <para>A checkpoint (<see cref="BeginCheckpoint"/>, <see cref="Write"/> per record,
/// <see cref="CommitAsync"/>) upserts every current record, deletes every key written by the previous
/// checkpoint that is absent now, compacts the part of the hybrid log that the rewrites superseded when the log
/// has grown enough for that to be worth it (amortized, see <see cref="PersistAsync"/>) and takes a FASTER
/// fold-over checkpoint. The log may therefore hold several versions of a key; <see cref="Load"/> reads by
/// key. Only after that checkpoint completed does the caller truncate the uplink log. A crash at any
/// earlier point recovers the previous FASTER checkpoint, whose address still lies inside the untruncated
/// uplink log, so nothing is lost or applied twice.</para>
/// <para>Written by one thread at a time: the commit loop (and open/close), or an automatic checkpoint's
/// background part, which the loop does not start the next checkpoint before; never read on the hot path:
/// readers use the in-memory maps the store is loaded into at open.</para>
/// </remarks>
internal sealed class StateStore : IDisposable
{
    private static ReadOnlySpan<byte> AddressKey => "#addr"u8;

    private readonly IDevice _device;
    private readonly ICheckpointManager _checkpoints;
    private readonly FasterKV<SpanByte, SpanByte> _store;
    private readonly ClientSession<SpanByte, SpanByte, SpanByte, SpanByteAndMemory, Empty, SpanByteFunctions<Empty>> _session;
    private readonly SpanByteFunctions<Empty> _functions = new();

    /// <summary>Keys live in the store as of the last checkpoint (so the next one can delete what vanished).</summary>
    private HashSet<string> _keys = new(StringComparer.Ordinal);
    private HashSet<string>? _writing;
    private long _dumpStart;
    private byte[] _scratch = new byte[256];

    /// <summary>Log size (tail minus begin) right after the last compaction, or the live records' size as loaded at open: the live data then.</summary>
    private long _liveAfterCompaction;

    private StateStore(string directory, long segmentSize)
    {
        Directory.CreateDirectory(directory);
        // Segments freed by compaction are shrunk step by step before they are deleted, and page flushes go to the
        // disk one at a time in 256 KiB pieces, so the uplink log's appends do not queue behind them (GentleDevice).
        _device = new GentleDevice(
            Devices.CreateLogDevice(Path.Combine(directory, "hlog.log"), preallocateFile: false, deleteOnClose: false))
        {
            WritePieceBytes = 256 << 10,
        };
        _checkpoints = new OffPoolCheckpointManager(
            new LocalStorageNamedDeviceFactory(), new DefaultCheckpointNamingScheme(Path.Combine(directory, "checkpoints")));
        _store = new FasterKV<SpanByte, SpanByte>(new FasterKVSettings<SpanByte, SpanByte>
        {
            IndexSize = 1L << 22,          // 64 Ki hash buckets; overflow buckets absorb more keys
            LogDevice = _device,
            PageSize = 1L << 22,           // 4 MiB pages: the largest single record (one value) must fit a page
            MemorySize = 1L << 25,         // 32 MiB of the hybrid log in memory, the rest on disk
            SegmentSize = segmentSize,     // 64 MiB files: segments before the begin address are deleted by the next checkpoint
            CheckpointManager = _checkpoints,
            TryRecoverLatest = false,
        });
        _session = _store.For(_functions).NewSession<SpanByteFunctions<Empty>>();
    }

    /// <summary>Live keys (excluding the address key) as of the last checkpoint or recovery.</summary>
    public int Count => _keys.Count;

    /// <summary>True when a FASTER checkpoint was found and recovered at open.</summary>
    public bool Recovered { get; private set; }

    /// <summary>Compaction is due when the log has grown past this factor of its size after the last one (see <see cref="PersistAsync"/>).</summary>
    internal double CompactionGrowth { get; set; } = 2;

    /// <summary>...and past this many bytes (one segment): small stores do not compact at every checkpoint.</summary>
    internal long CompactionMinBytes { get; set; } = DefaultSegmentSize;

    /// <summary>Compactions run since open (tests and diagnostics).</summary>
    internal int Compactions { get; private set; }

    /// <summary>Reads at load that had to wait for the disk (tests).</summary>
    internal long DiskReads { get; private set; }

    /// <summary>Log bytes from the begin address to the tail: live records plus superseded versions not yet compacted away.</summary>
    internal long LogBytes => _store.Log.TailAddress - _store.Log.BeginAddress;

    private const long DefaultSegmentSize = 1L << 26;

    /// <summary>About what a record takes in the log besides its key and value bytes (record info, two length prefixes, alignment).</summary>
    private const int RecordHeaderBytes = 24;

    /// <summary>
    /// Opens the store in <paramref name="directory"/>, recovering its latest checkpoint when there is
    /// one (a damaged checkpoint throws rather than silently starting empty).
    /// </summary>
    public static StateStore Open(string directory) => Open(directory, DefaultSegmentSize);

    /// <summary><see cref="Open(string)"/> with another hybrid-log file (segment) size, at least the 4 MiB page size (tests).</summary>
    internal static StateStore Open(string directory, long segmentSize)
    {
        var store = new StateStore(directory, segmentSize);
        try
        {
            if (store._checkpoints.GetLogCheckpointTokens().Any())
            {
                store._store.Recover();
                store.Recovered = true;
            }
        }
        catch
        {
            store.Dispose();
            throw;
        }
        return store;
    }

    /// <summary>
    /// Feeds every live record to <paramref name="sink"/>: registry records (tenants, customers, users,
    /// devices, edges, OTA packages) in a first pass, everything that refers to them in a second.
    /// Returns the uplink log address the store is consistent with (0 when empty).
    /// </summary>
    /// <remarks>
    /// The hybrid log holds every version a key had since the last compaction (compaction is amortized, see
    /// <see cref="PersistAsync"/>), plus tombstones of deleted keys. So the log is only scanned for the keys it
    /// holds; each key's value is then a point read, which answers with its latest version or not found when
    /// that is a tombstone: superseded versions and deleted keys never reach <paramref name="sink"/>. Keys are
    /// read in the order of their latest version in the log, which is the order the last checkpoint wrote them
    /// in (parents before children).
    /// </remarks>
    public long Load(RecordSink sink, out long records)
    {
        records = 0;
        _keys.Clear();
        var keys = ScanKeys();
        long live = 0;
        var output = default(SpanByteAndMemory);
        long address = 0;
        if (TryRead(AddressKey, ref output, out var stored))
        {
            address = BinaryPrimitives.ReadInt64LittleEndian(stored);
        }
        Release(ref output);
        for (var pass = 0; pass < 2; pass++)
        {
            foreach (var entry in keys)
            {
                if (entry.Registry != (pass == 0))
                {
                    continue;
                }
                var key = EncodeKey(entry.Key);
                if (TryRead(key, ref output, out var value) && !value.IsEmpty)
                {
                    live += RecordHeaderBytes + key.Length + value.Length;
                    _keys.Add(entry.Key);
                    sink(value);
                    records++;
                }
                Release(ref output);
            }
        }
        // The baseline of the next compaction: what is live now, not the recovered log with its superseded versions
        // (else every restart could raise the bound).
        _liveAfterCompaction = live;
        return address;
    }

    /// <summary>
    /// Every distinct key in the log (except the address key) with whether its latest value is a registry record,
    /// ordered by the address of its latest version.
    /// </summary>
    private List<(string Key, long Address, bool Registry)> ScanKeys()
    {
        var latest = new Dictionary<string, (long Address, bool Registry)>(StringComparer.Ordinal);
        var lookup = latest.GetAlternateLookup<ReadOnlySpan<char>>();
        var chars = new char[256];
        using (var scan = _store.Log.Scan(_store.Log.BeginAddress, _store.Log.TailAddress))
        {
            while (scan.GetNext(out var info))
            {
                var key = scan.GetKey().AsReadOnlySpan();
                if (key.SequenceEqual(AddressKey))
                {
                    continue;
                }
                if (chars.Length < key.Length)
                {
                    chars = new char[Math.Max(key.Length, chars.Length * 2)];
                }
                var name = chars.AsSpan(0, Encoding.UTF8.GetChars(key, chars));
                // A key's kind never changes; a tombstone keeps the kind its earlier versions had.
                var registry = info.Tombstone
                    ? lookup.TryGetValue(name, out var previous) && previous.Registry
                    : scan.GetValue().AsReadOnlySpan() is { IsEmpty: false } value && IsRegistryRecord(value[0]);
                lookup[name] = (scan.CurrentAddress, registry);
            }
        }
        var keys = new List<(string Key, long Address, bool Registry)>(latest.Count);
        foreach (var (key, (keyAddress, registry)) in latest)
        {
            keys.Add((key, keyAddress, registry));
        }
        keys.Sort(static (a, b) => a.Address.CompareTo(b.Address));
        return keys;
    }

    /// <summary>Point read of <paramref name="key"/>'s latest value (waiting for the disk when it is not in memory); false when absent or deleted.</summary>
    private unsafe bool TryRead(ReadOnlySpan<byte> key, ref SpanByteAndMemory output, out ReadOnlySpan<byte> value)
    {
        Status status;
        fixed (byte* k = key)
        {
            var keyBytes = SpanByte.FromPointer(k, key.Length);
            status = _session.Read(ref keyBytes, ref output);
        }
        if (status.IsPending)
        {
            DiskReads++;
            _session.CompletePendingWithOutputs(out var completed, wait: true);
            using (completed)
            {
                if (!completed.Next())
                {
                    throw new InvalidOperationException("FASTER completed no pending read.");
                }
                status = completed.Current.Status;
                output = completed.Current.Output;
            }
        }
        if (status.IsFaulted)
        {
            throw new InvalidOperationException($"FASTER read failed: {status}");
        }
        value = !status.Found ? default
            : output.IsSpanByte ? output.SpanByte.AsReadOnlySpan()
            : output.Memory.Memory.Span[..output.Length];
        return status.Found;
    }

    private static void Release(ref SpanByteAndMemory output)
    {
        output.Memory?.Dispose();
        output = default;
    }

    private static bool IsRegistryRecord(byte kind) => (RecordKind)kind is >= RecordKind.Tenant and <= RecordKind.OtaPackage;

    /// <summary>Records the current (or last) checkpoint wrote (tests and diagnostics).</summary>
    internal long Rewritten { get; private set; }

    /// <summary>Records the current (or last) checkpoint retained unchanged (tests and diagnostics).</summary>
    internal long RetainedCount { get; private set; }

    /// <summary>Starts a checkpoint: every current record must follow through <see cref="Write"/> or <see cref="Retain"/>.</summary>
    public void BeginCheckpoint()
    {
        Rewritten = 0;
        RetainedCount = 0;
        _writing = new HashSet<string>(_keys.Count, StringComparer.Ordinal);
        _dumpStart = _store.Log.TailAddress;
    }

    /// <summary>Upserts one record under <paramref name="key"/>; takes over (and returns to the pool) the record's buffer.</summary>
    public void Write(string key, ref RecordWriter record)
    {
        var writing = _writing ?? throw new InvalidOperationException("No checkpoint in progress.");
        var buffer = record.Detach(out var length);
        try
        {
            if (!writing.Add(key))
            {
                throw new InvalidOperationException($"State key written twice in one checkpoint: {key}");
            }
            // Also remember it as possibly present, so that if this checkpoint is abandoned midway the next
            // one still deletes it when it has vanished by then.
            _keys.Add(key);
            Upsert(EncodeKey(key), buffer.AsSpan(0, length));
            Rewritten++;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Keeps <paramref name="key"/>'s value from the previous checkpoint as it is (its owner knows it did not
    /// change): counted as written, not rewritten. Compaction carries it forward in the background.
    /// </summary>
    public void Retain(string key)
    {
        var writing = _writing ?? throw new InvalidOperationException("No checkpoint in progress.");
        if (!writing.Add(key))
        {
            throw new InvalidOperationException($"State key written twice in one checkpoint: {key}");
        }
        _keys.Add(key);
        RetainedCount++;
    }

    /// <summary>
    /// Ends the writing of the checkpoint started by <see cref="BeginCheckpoint"/>: deletes vanished keys and
    /// records <paramref name="logAddress"/>. Returns the record count; <see cref="PersistAsync"/> makes it durable.
    /// </summary>
    public long Seal(long logAddress)
    {
        var writing = _writing ?? throw new InvalidOperationException("No checkpoint in progress.");
        _writing = null;
        foreach (var key in _keys)
        {
            if (!writing.Contains(key))
            {
                Delete(EncodeKey(key));
            }
        }
        Span<byte> address = stackalloc byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(address, logAddress);
        Upsert(AddressKey, address);
        _keys = writing;
        return writing.Count;
    }

    /// <summary>
    /// Compacts when due (see <see cref="CompactionDue"/>) and takes a durable FASTER checkpoint of the sealed
    /// state. May run on another thread than the writing, but never at the same time as it: the next
    /// <see cref="BeginCheckpoint"/> waits for it.
    /// </summary>
    public async Task PersistAsync()
    {
        // Every live key was rewritten (or deleted) at or after _dumpStart, or retained unchanged: the log before
        // it holds superseded versions and the retained ones; compaction copies forward whatever is still live
        // there and moves the begin address. The old segments are removed from disk by the checkpoint.
        if (CompactionDue())
        {
            _store.Log.Compact<SpanByte, SpanByteAndMemory, Empty, SpanByteFunctions<Empty>>(_functions, _dumpStart, CompactionType.Lookup);
            _liveAfterCompaction = _store.Log.TailAddress - _store.Log.BeginAddress;
            Compactions++;
        }
        var (success, _) = await _store.TakeHybridLogCheckpointAsync(CheckpointType.FoldOver);
        if (!success)
        {
            throw new InvalidOperationException("FASTER refused to start a checkpoint.");
        }
    }

    /// <summary>
    /// Compaction copies every retained (unchanged) record forward into new log pages, so its cost follows the
    /// stored state, not what changed. It is therefore amortized: due only once the log (begin to tail) has grown
    /// past <see cref="CompactionGrowth"/> times its size right after the previous compaction (the live data then)
    /// and past <see cref="CompactionMinBytes"/>. Between compactions the log holds at most that many bytes plus
    /// one checkpoint's writes, so the disk it takes stays bounded by a multiple of the live state; each byte
    /// appended is copied at most about once more. <see cref="Load"/> does not depend on it (it reads by key).
    /// </summary>
    private bool CompactionDue()
    {
        var size = _store.Log.TailAddress - _store.Log.BeginAddress;
        return _dumpStart > _store.Log.BeginAddress
            && size > Math.Max(CompactionMinBytes, (long)(CompactionGrowth * _liveAfterCompaction));
    }

    private ReadOnlySpan<byte> EncodeKey(string key)
    {
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        if (_scratch.Length < max)
        {
            _scratch = new byte[Math.Max(max, _scratch.Length * 2)];
        }
        return _scratch.AsSpan(0, Encoding.UTF8.GetBytes(key, _scratch));
    }

    private unsafe void Upsert(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        fixed (byte* k = key)
        fixed (byte* v = value)
        {
            var keyBytes = SpanByte.FromPointer(k, key.Length);
            var valueBytes = SpanByte.FromPointer(v, value.Length);
            var status = _session.Upsert(ref keyBytes, ref valueBytes);
            if (status.IsFaulted)
            {
                throw new InvalidOperationException($"FASTER upsert failed: {status}");
            }
        }
    }

    private unsafe void Delete(ReadOnlySpan<byte> key)
    {
        fixed (byte* k = key)
        {
            var keyBytes = SpanByte.FromPointer(k, key.Length);
            var status = _session.Delete(ref keyBytes);
            if (status.IsPending)
            {
                _session.CompletePending(wait: true);
            }
        }
    }

    public void Dispose()
    {
        _session.Dispose();
        _store.Dispose();
        _device.Dispose();
        _checkpoints.Dispose();
    }
}

/// <summary>
/// Keys of <see cref="StateStore"/>: one letter for the kind, then the entity key. Guids are 32 hex digits,
/// so a key name that follows one is unambiguous.
/// </summary>
internal static class StateKeys
{
    public static string Tenant(Guid id) => "N" + id.ToString("N");
    public static string Customer(Guid id) => "C" + id.ToString("N");
    public static string User(Guid id) => "U" + id.ToString("N");

    /// <summary>The device record, which also carries its access token (the token index is rebuilt from it).</summary>
    public static string Device(Guid id) => "D" + id.ToString("N");
    /// <summary>A device's X.509 certificate credentials (a device has these or an access token).</summary>
    public static string X509Credentials(Guid deviceId) => "X" + deviceId.ToString("N");
    public static string Edge(Guid id) => "E" + id.ToString("N");
    public static string OtaPackage(Guid id) => "O" + id.ToString("N");

    /// <summary>One attribute: device, scope digit, key.</summary>
    public static string Attribute(Guid deviceId, AttributeScope scope, string key) => $"A{deviceId:N}{(int)scope}{key}";

    /// <summary>The latest telemetry value of one key.</summary>
    public static string Latest(Guid deviceId, string key) => $"L{deviceId:N}{key}";

    /// <summary>Chunk <paramref name="chunk"/> (8 hex digits) of one key's time-series history.</summary>
    public static string History(Guid deviceId, string key, int chunk) => $"H{deviceId:N}{chunk:x8}{key}";

    /// <summary>Part <paramref name="part"/> (from 1; part 0 is <see cref="History"/>) of a chunk written in several records.</summary>
    public static string HistoryPart(Guid deviceId, string key, int chunk, int part) => $"P{deviceId:N}{chunk:x8}{part:x8}{key}";

    public static string PersistentRpc(Guid id) => "R" + id.ToString("N");
    public static string RpcSequence(Guid deviceId) => "S" + deviceId.ToString("N");

    public static string EdgeQueue(Guid edgeId) => "Q" + edgeId.ToString("N");
}
