using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Perf.Core.Domain;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>
/// The core: registry, sessions, attributes, telemetry and RPC over one durable uplink log.
/// </summary>
/// <remarks>
/// <para>Where things are: every mutation is first a record in the uplink log (FasterLog,
/// <c>DataDir/log</c>); acknowledged means committed there. Reads are served from in-memory maps.
/// The checkpointed state of record is a FasterKV store (<c>DataDir/kv</c>, see
/// <see cref="Internal.StateStore"/>) holding entities, devices with their access tokens (the token
/// index), attributes of every scope with lastUpdateTs, latest telemetry, telemetry history in chunks,
/// persistent RPCs and RPC sequences, plus the uplink log address that state is consistent with.
/// OTA package bytes are plain files in <c>DataDir/ota</c>.</para>
/// <para>A checkpoint (every <see cref="CoreOptions.CheckpointLogBytes"/> of log, on
/// <see cref="CheckpointAsync"/> and at <see cref="DisposeAsync"/>) writes the in-memory state into the
/// FasterKV store, takes a FasterKV checkpoint, and only then truncates the uplink log.
/// <see cref="OpenAsync"/> recovers the FasterKV checkpoint, loads it into memory and replays the uplink
/// log from the recorded address, so everything acknowledged before a crash is present.</para>
/// </remarks>
public sealed class PerfEngine : IAsyncDisposable
{
    private static readonly TimeSpan RetentionPassInterval = TimeSpan.FromMinutes(1);

    private readonly CoreOptions _options;
    private readonly UplinkLog _log;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly string _legacySnapshotPath;
    private readonly StateStore _state;
    /// <summary>Held from open to close: one process per data directory (<see cref="DataDirLock"/>).</summary>
    private DataDirLock? _dataDirLock;
    private readonly KeyTable _keys;
    private readonly PersistentRpcLog _rpcLog;
    private long _checkpointAddress;
    private long _lastRetentionPass;
    private TaskCompletionSource? _checkpointRequest;
    private Task _checkpointPersisting = Task.CompletedTask;
    private int _disposed;

    /// <summary>
    /// Record kinds applied since the last snapshot that completed (<see cref="UplinkLog.TakeAppliedKinds"/>),
    /// all of them until the first: what the registry and the attributes must be written whole for.
    /// </summary>
    private ulong _kindsSinceSnapshot = ulong.MaxValue;

    /// <summary>Kinds whose apply never changes the registry: the registry's own applies are private to it.</summary>
    private static readonly ulong RegistryUnchangedBy = KindBits(
        RecordKind.Telemetry, RecordKind.TelemetryJson, RecordKind.TelemetryDelete, RecordKind.Attributes, RecordKind.AttributesDelete,
        RecordKind.Rpc, RecordKind.RpcTransition, RecordKind.RpcRemove, RecordKind.RpcSequence);

    /// <summary>Kinds whose apply never changes attributes (a device's delete does, through the registry).</summary>
    private static readonly ulong AttributesUnchangedBy = KindBits(
        RecordKind.Telemetry, RecordKind.TelemetryJson, RecordKind.TelemetryDelete, RecordKind.Rpc, RecordKind.RpcTransition,
        RecordKind.RpcRemove, RecordKind.RpcSequence);

    private PerfEngine(CoreOptions options, UplinkLog log, StateStore state, ILoggerFactory loggerFactory, TimeProvider time)
    {
        _options = options;
        _log = log;
        _state = state;
        _time = time;
        _logger = loggerFactory.CreateLogger("Perf.Core");
        _legacySnapshotPath = Path.Combine(options.DataDir, "snapshot.bin");
        _keys = new KeyTable();
        var hub = new SubscriptionHub(_logger);
        var sessions = new SessionTable();
        Sessions = sessions;
        Registry = new EntityRegistry(log, options.DataDir, time);
        Attributes = new AttributeService(log, Registry, sessions, hub, time, _logger);
        Telemetry = new TelemetryService(log, Registry, hub);
        _rpcLog = new PersistentRpcLog(log, Registry, time);
        Rpc = new RpcService(sessions, _rpcLog, options, time, _logger);
        Edges = new EdgeQueues(log, Registry, time);
        Registry.IsMirrored = id => Edges.EdgesOf(id).Count > 0;
        DeviceApi = new DeviceApi(options, _keys, Registry, Attributes, Telemetry, Rpc, time);
        Registry.DeviceRemoved += id =>
        {
            Attributes.RemoveDevice(id);
            Telemetry.RemoveDevice(id);
            _rpcLog.RemoveDevice(id);
            Rpc.RemoveDevice(id);
            // Sessions exist only live (never during replay): a deleted device's doors are told to hang up.
            foreach (var session in Sessions.GetSessions(id))
            {
                session.Close("device deleted");
            }
        };
        Registry.CredentialsChanged += id =>
        {
            foreach (var session in Sessions.GetSessions(id))
            {
                if (session.EndsWhenCredentialsChange)
                {
                    session.Close("device credentials updated");
                }
            }
        };
    }

    public IDeviceApi DeviceApi { get; }
    public ISessionTable Sessions { get; }
    public EntityRegistry Registry { get; }
    public AttributeService Attributes { get; }
    public TelemetryService Telemetry { get; }
    public RpcService Rpc { get; }

    /// <summary>Edge device assignments and durable per-edge downlink queues.</summary>
    public EdgeQueues Edges { get; }

    /// <summary>Interned telemetry/attribute keys shared with the JSON parser.</summary>
    public KeyTable Keys => _keys;

    /// <summary>Test seam: the automatic checkpoint's background part (completed when none is running).</summary>
    internal Task CheckpointPersisting => _checkpointPersisting;

    /// <summary>Test seam: the FasterKV state store.</summary>
    internal StateStore State => _state;

    /// <summary>Test seam: records loaded from the FasterKV store at open (0 when it had no checkpoint).</summary>
    internal long RecordsLoadedFromState { get; private set; }

    /// <summary>True once recovery finished and the commit loop runs; false after disposal.</summary>
    public bool IsReady { get; private set; }

    /// <summary>
    /// Why uplinks are refused, while the uplink log recovers from a failed write (a full or failing disk); null when
    /// it works. The log is opened again on the next uplink at most every <see cref="CoreOptions.LogReopenInterval"/>.
    /// </summary>
    public string? StorageFailure => _log.Failure?.Message;

    /// <summary>Root of the persistent state (<see cref="CoreOptions.DataDir"/>).</summary>
    public string DataDir => _options.DataDir;

    public static async Task<PerfEngine> OpenAsync(CoreOptions options, ILoggerFactory loggerFactory, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var started = Stopwatch.GetTimestamp();
        Directory.CreateDirectory(options.DataDir);
        var dataDirLock = DataDirLock.Acquire(options.DataDir);
        UplinkLog log;
        StateStore state;
        try
        {
            log = await UplinkLog.OpenAsync(Path.Combine(options.DataDir, "log"), options, loggerFactory.CreateLogger("Perf.Core.Log"), ct);
        }
        catch
        {
            dataDirLock.Dispose();
            throw;
        }
        try
        {
            state = StateStore.Open(Path.Combine(options.DataDir, "kv"));
        }
        catch
        {
            await log.CloseAsync();
            dataDirLock.Dispose();
            throw;
        }
        try
        {
            var engine = new PerfEngine(options, log, state, loggerFactory, TimeProvider.System) { _dataDirLock = dataDirLock };
            Load(engine, options, log, state, started);
            if (engine.DamagedLogAt >= 0)
            {
                // The state is that of the log up to the damage; a checkpoint now makes it the durable state and cuts the log
                // at its tail, so no later start reads the damaged bytes (or the records after them) again.
                await engine.CheckpointAsync();
            }
            return engine;
        }
        catch
        {
            // The files of a failed start close with the process; the directory is free for another attempt at once.
            dataDirLock.Dispose();
            throw;
        }
    }

    /// <summary>Where the log read at open was damaged, with <see cref="LogDamagePolicy.KeepBefore"/> (-1: read whole).</summary>
    internal long DamagedLogAt { get; private set; } = -1;

    /// <summary>FASTER's first record address: the begin address of a log never cut.</summary>
    private const long FirstLogAddress = 64;

    /// <summary>Loads the last checkpoint and replays the log after it, then starts the commit loop.</summary>
    private static void Load(PerfEngine engine, CoreOptions options, UplinkLog log, StateStore state, long started)
    {

        long stateRecords;
        if (state.Recovered)
        {
            engine._checkpointAddress = state.Load(engine.ApplyRecord, out stateRecords);
            engine.RecordsLoadedFromState = stateRecords;
        }
        else
        {
            // A data directory from before the FasterKV store: its snapshot file is read this once.
            engine._checkpointAddress = LegacySnapshot.Load(engine._legacySnapshotPath, engine.ApplyRecord, out stateRecords);
        }
        if (engine._checkpointAddress < log.BeginAddress && log.BeginAddress > FirstLogAddress)
        {
            // The log was cut at a checkpoint the state store no longer has (kv/ deleted, not restored, or damaged):
            // starting would serve a data directory without everything before the cut, as if freshly installed.
            throw new InvalidDataException(
                $"DATA_DIR {Path.GetFullPath(options.DataDir)}: the log starts at address {log.BeginAddress}, after a checkpoint, but the state store " +
                $"(kv/) holds none up to it (it holds {engine._checkpointAddress}): kv/ is missing or damaged; restore it with log/ from the same backup");
        }
        var replayed = log.Replay(engine._checkpointAddress, engine.ApplyRecord, options.OnLogDamage == LogDamagePolicy.KeepBefore, out var damagedAt);
        if (damagedAt >= 0)
        {
            CoreLog.LogDamageDropped(engine._logger, Path.Combine(options.DataDir, "log"), damagedAt, log.TailAddress - damagedAt);
            engine.DamagedLogAt = damagedAt;
        }
        engine.RetentionPass();
        log.Start(engine.AfterBatchAsync);
        engine.Rpc.Start();
        engine.IsReady = true;
        CoreLog.Opened(engine._logger, options.DataDir, engine._checkpointAddress, stateRecords, replayed,
            (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    /// <summary>Assigns (or with null clears) a device's firmware and publishes the fw_* shared attributes to it.</summary>
    public async Task<RegistryResult<Device>> AssignFirmwareAsync(Guid deviceId, Guid? otaPackageId)
    {
        var result = await Registry.SetFirmwareAsync(deviceId, otaPackageId);
        if (!result.IsOk)
        {
            return result;
        }
        string[] fwKeys = ["fw_title", "fw_version", "fw_checksum", "fw_checksum_algorithm", "fw_size"];
        if (otaPackageId is { } id && Registry.GetOtaPackage(id) is { } package)
        {
            KvEntry[] values =
            [
                new(_keys.Intern(fwKeys[0]), package.Title),
                new(_keys.Intern(fwKeys[1]), package.Version),
                new(_keys.Intern(fwKeys[2]), package.Checksum),
                new(_keys.Intern(fwKeys[3]), package.ChecksumAlgorithm),
                new(_keys.Intern(fwKeys[4]), package.Size),
            ];
            await Attributes.SaveAsync(deviceId, AttributeScope.Shared, values);
        }
        else
        {
            await Attributes.DeleteAsync(deviceId, AttributeScope.Shared, fwKeys);
        }
        return result;
    }

    /// <summary>Checkpoints all state into the FasterKV store and truncates the log before it (normally automatic, see <see cref="CoreOptions.CheckpointLogBytes"/>).</summary>
    public Task CheckpointAsync()
    {
        var request = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Interlocked.Exchange(ref _checkpointRequest, request)?.TrySetResult();
        _ = _log.Barrier(static () => true);
        return request.Task;
    }

    private void ApplyRecord(ReadOnlySpan<byte> record)
    {
        var reader = new RecordReader(record, _keys);
        var kind = (RecordKind)reader.ReadByte();
        switch (kind)
        {
            case RecordKind.Attributes or RecordKind.AttributesDelete:
                Attributes.Replay(kind, ref reader);
                break;
            case RecordKind.Telemetry or RecordKind.TelemetryJson or RecordKind.TelemetryDelete or RecordKind.TelemetryHistory:
                Telemetry.Replay(kind, ref reader);
                break;
            case RecordKind.Rpc or RecordKind.RpcTransition or RecordKind.RpcRemove or RecordKind.RpcSequence:
                _rpcLog.Replay(kind, ref reader);
                break;
            case >= RecordKind.EdgeAssignment and <= RecordKind.EdgeState:
                Edges.Replay(kind, ref reader);
                break;
            default:
                Registry.Replay(kind, ref reader);
                break;
        }
    }

    /// <summary>
    /// Runs on the commit loop after each applied batch: state equals the log up to <paramref name="tail"/>.
    /// An automatic checkpoint copies the entities, attributes, RPCs and edge queues into the FasterKV store
    /// here, and the telemetry, compaction, the FASTER checkpoint and the log truncation in the background
    /// (<see cref="FinishInBackgroundAsync"/>), so acknowledgements keep flowing meanwhile; the next one
    /// starts only after it. A requested checkpoint is awaited whole.
    /// </summary>
    private async ValueTask AfterBatchAsync(long tail)
    {
        var request = Interlocked.Exchange(ref _checkpointRequest, null);
        if (request is not null)
        {
            try
            {
                await _checkpointPersisting;
                await CheckpointCoreAsync(tail);
                request.TrySetResult();
            }
            catch (Exception e)
            {
                request.TrySetException(e);
                throw;
            }
        }
        else if (_checkpointPersisting.IsCompleted && tail - Volatile.Read(ref _checkpointAddress) >= _options.CheckpointLogBytes)
        {
            var started = Stopwatch.GetTimestamp();
            SnapshotEntitiesIntoState();
            var onLoopMs = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            _checkpointPersisting = FinishInBackground(tail, started, onLoopMs);
        }
        if (_options.TelemetryRetentionDays > 0 &&
            Stopwatch.GetElapsedTime(_lastRetentionPass) >= RetentionPassInterval)
        {
            RetentionPass();
        }
    }

    // Its own method: a lambda in AfterBatchAsync capturing the parameter would allocate its closure on every batch.
    private Task FinishInBackground(long tail, long started, long onLoopMs) =>
        BackgroundThread.Run(() => FinishInBackgroundAsync(tail, started, onLoopMs));

    /// <summary>
    /// The automatic checkpoint's part off the commit loop: telemetry (by far the largest part of the state, and
    /// growing with history) is written into the store while the loop goes on applying later batches, then the
    /// snapshot is sealed at <paramref name="tail"/> and persisted. Each series is copied under its own lock, so
    /// it holds the series as of some moment after <paramref name="tail"/>; recovery replays the log from
    /// <paramref name="tail"/> over it, and replaying telemetry records over a state that already holds some of
    /// their effects ends in the same state (a point is put or deleted by ts, the latest value is replaced by
    /// ts, a device deleted later in the log is deleted again), so the result is the same as if the snapshot
    /// had been taken at <paramref name="tail"/>. A record of an entity created after <paramref name="tail"/>
    /// is dropped at load (its device is not known yet) and comes back from the log.
    /// </summary>
    private async Task FinishInBackgroundAsync(long tail, long started, long onLoopMs)
    {
        try
        {
            Telemetry.WriteState(_state, paced: true);
            var records = _state.Seal(tail);
            await PersistCheckpointAsync(tail, records, started, onLoopMs);
        }
        catch (Exception e)
        {
            // The log is not truncated, so nothing is lost: the next checkpoint covers this one's records too.
            CoreLog.MaintenanceFailed(_logger, e);
        }

        NativeHeap.Trim();
    }

    private void RetentionPass()
    {
        _lastRetentionPass = Stopwatch.GetTimestamp();
        if (_options.TelemetryRetentionDays > 0)
        {
            Telemetry.TrimBefore(_time.GetUtcNow().AddDays(-_options.TelemetryRetentionDays).ToUnixTimeMilliseconds());
        }
    }

    /// <summary>
    /// Runs on the commit loop (or at dispose after it stopped), so memory equals the log up to
    /// <paramref name="tail"/>. Order matters for crash safety: the FasterKV checkpoint (state plus
    /// <paramref name="tail"/>) must be durable before the log before <paramref name="tail"/> is dropped.
    /// </summary>
    private Task CheckpointCoreAsync(long tail)
    {
        var (records, started, snapshotMs) = SnapshotIntoState(tail);
        return PersistCheckpointAsync(tail, records, started, snapshotMs);
    }

    /// <summary>On the commit loop: every component writes its state into the store, consistent with <paramref name="tail"/>.</summary>
    private (long Records, long Started, long SnapshotMs) SnapshotIntoState(long tail)
    {
        var started = Stopwatch.GetTimestamp();
        SnapshotEntitiesIntoState();
        Telemetry.WriteState(_state);
        var records = _state.Seal(tail);
        return (records, started, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
    }

    /// <summary>
    /// On the commit loop: starts a checkpoint with everything but telemetry, exactly as of the applied log. The
    /// registry and the attributes are rewritten only when a record that can change them was applied since the
    /// last snapshot; otherwise their keys are retained as the last one wrote them (a telemetry-only interval
    /// costs one set insertion per entity here, not a serialization and an upsert). The applied kinds are kept
    /// until a snapshot completes, so one that fails midway is followed by a whole rewrite.
    /// </summary>
    private void SnapshotEntitiesIntoState()
    {
        var kinds = _kindsSinceSnapshot | _log.TakeAppliedKinds();
        _kindsSinceSnapshot = kinds;
        _state.BeginCheckpoint();
        Registry.WriteState(_state, changed: (kinds & ~RegistryUnchangedBy) != 0);
        Attributes.WriteState(_state, changed: (kinds & ~AttributesUnchangedBy) != 0);
        _rpcLog.WriteState(_state);
        Edges.WriteState(_state);
        _kindsSinceSnapshot = 0;
    }

    private static ulong KindBits(params ReadOnlySpan<RecordKind> kinds)
    {
        ulong bits = 0;
        foreach (var kind in kinds)
        {
            bits |= UplinkLog.KindBit((byte)kind);
        }
        return bits;
    }

    /// <summary>Makes the sealed snapshot durable, then drops the log before <paramref name="tail"/>. Off the commit loop for automatic checkpoints.</summary>
    private async Task PersistCheckpointAsync(long tail, long records, long started, long snapshotMs)
    {
        await _state.PersistAsync();
        Volatile.Write(ref _checkpointAddress, tail);
        if (File.Exists(_legacySnapshotPath))
        {
            File.Delete(_legacySnapshotPath);
        }
        _log.TruncateUntil(tail);
        CoreLog.Checkpointed(_logger, tail, records, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, snapshotMs);
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        IsReady = false;
        Rpc.Stop();
        await _log.StopAsync();
        Interlocked.Exchange(ref _checkpointRequest, null)?.TrySetResult();
        bool checkpointed = false;
        try
        {
            await FinalCheckpointAsync().WaitAsync(_options.ShutdownCheckpointTimeout);
            checkpointed = true;
        }
        catch (TimeoutException)
        {
            CoreLog.ShutdownCheckpointTimedOut(_logger, (long)_options.ShutdownCheckpointTimeout.TotalMilliseconds, _options.DataDir);
        }
        catch (Exception e)
        {
            CoreLog.ShutdownCheckpointFailed(_logger, e);
        }
        finally
        {
            await _log.CloseAsync();
            // A FASTER checkpoint that never completes keeps its store busy: disposing the store then would wait
            // for it. Its files are closed with the process instead.
            if (checkpointed)
            {
                _state.Dispose();
            }
            _dataDirLock?.Dispose();
        }
    }

    /// <summary>Waits for a checkpoint still persisting, then checkpoints what the log holds beyond it.</summary>
    private async Task FinalCheckpointAsync()
    {
        await _checkpointPersisting;
        if (_log.TailAddress > _checkpointAddress)
        {
            await CheckpointCoreAsync(_log.TailAddress);
        }
    }

    /// <summary>Test seam simulating kill -9: stops committing at once without flush or checkpoint (files are only closed).</summary>
    internal async Task AbandonAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        IsReady = false;
        Rpc.Stop();
        await _log.AbandonAsync();
        await _checkpointPersisting;
        _state.Dispose();
        _dataDirLock?.Dispose();
    }
}
