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
/// checkpoint that is absent now, compacts the part of the hybrid log that the rewrite superseded and
/// takes a FASTER fold-over checkpoint. Only after that checkpoint completed does the caller truncate
/// the uplink log. A crash at any earlier point recovers the previous FASTER checkpoint, whose address
/// still lies inside the untruncated uplink log, so nothing is lost or applied twice.</para>
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

    private StateStore(string directory)
    {
        Directory.CreateDirectory(directory);
        _device = Devices.CreateLogDevice(Path.Combine(directory, "hlog.log"), preallocateFile: false, deleteOnClose: false);
        _checkpoints = new DeviceLogCommitCheckpointManager(
            new LocalStorageNamedDeviceFactory(),
            new DefaultCheckpointNamingScheme(Path.Combine(directory, "checkpoints")),
            removeOutdated: true);
        _store = new FasterKV<SpanByte, SpanByte>(new FasterKVSettings<SpanByte, SpanByte>
        {
            IndexSize = 1L << 22,          // 64 Ki hash buckets; overflow buckets absorb more keys
            LogDevice = _device,
            PageSize = 1L << 22,           // 4 MiB pages: the largest single record (one value) must fit a page
            MemorySize = 1L << 25,         // 32 MiB of the hybrid log in memory, the rest on disk
            SegmentSize = 1L << 26,        // 64 MiB files: superseded segments are deleted after each checkpoint
            CheckpointManager = _checkpoints,
            TryRecoverLatest = false,
        });
        _session = _store.For(_functions).NewSession<SpanByteFunctions<Empty>>();
    }

    /// <summary>Live keys (excluding the address key) as of the last checkpoint or recovery.</summary>
    public int Count => _keys.Count;

    /// <summary>True when a FASTER checkpoint was found and recovered at open.</summary>
    public bool Recovered { get; private set; }

    /// <summary>
    /// Opens the store in <paramref name="directory"/>, recovering its latest checkpoint when there is
    /// one (a damaged checkpoint throws rather than silently starting empty).
    /// </summary>
    public static StateStore Open(string directory)
    {
        var store = new StateStore(directory);
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
    /// Feeds every stored record to <paramref name="sink"/>: registry records (tenants, customers, users,
    /// devices, edges, OTA packages) in a first pass, everything that refers to them in a second.
    /// Returns the uplink log address the store is consistent with (0 when empty).
    /// </summary>
    public long Load(RecordSink sink, out long records)
    {
        records = 0;
        long address = 0;
        _keys.Clear();
        for (var pass = 0; pass < 2; pass++)
        {
            using var iterator = _session.Iterate();
            while (iterator.GetNext(out _))
            {
                var key = iterator.GetKey().AsReadOnlySpan();
                var value = iterator.GetValue().AsReadOnlySpan();
                if (key.SequenceEqual(AddressKey))
                {
                    address = BinaryPrimitives.ReadInt64LittleEndian(value);
                    continue;
                }
                if (value.IsEmpty || IsRegistryRecord(value[0]) != (pass == 0))
                {
                    continue;
                }
                _keys.Add(Encoding.UTF8.GetString(key));
                sink(value);
                records++;
            }
        }
        return address;
    }

    private static bool IsRegistryRecord(byte kind) => (RecordKind)kind is >= RecordKind.Tenant and <= RecordKind.OtaPackage;

    /// <summary>Starts a checkpoint: every current record must follow through <see cref="Write"/>.</summary>
    public void BeginCheckpoint()
    {
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
    /// Compacts and takes a durable FASTER checkpoint of the sealed state. May run on another thread than
    /// the writing, but never at the same time as it: the next <see cref="BeginCheckpoint"/> waits for it.
    /// </summary>
    public async Task PersistAsync()
    {
        // Every live key was rewritten (or deleted) at or after _dumpStart, or retained unchanged: the log before
        // it holds superseded versions and the retained ones; compaction copies forward whatever is still live
        // there and moves the begin address. The old segments are removed from disk by the checkpoint.
        if (_dumpStart > _store.Log.BeginAddress)
        {
            _store.Log.Compact<SpanByte, SpanByteAndMemory, Empty, SpanByteFunctions<Empty>>(_functions, _dumpStart, CompactionType.Lookup);
        }
        var (success, _) = await _store.TakeHybridLogCheckpointAsync(CheckpointType.FoldOver);
        if (!success)
        {
            throw new InvalidOperationException("FASTER refused to start a checkpoint.");
        }
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

    public static string PersistentRpc(Guid id) => "R" + id.ToString("N");
    public static string RpcSequence(Guid deviceId) => "S" + deviceId.ToString("N");

    public static string EdgeQueue(Guid edgeId) => "Q" + edgeId.ToString("N");
}
