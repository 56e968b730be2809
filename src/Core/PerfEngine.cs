using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Perf.Core.Domain;
using Perf.Core.Internal;
using Perf.Core.Telemetry;

namespace Perf.Core;

/// <summary>
/// The core: registry, sessions, attributes, telemetry and RPC over one durable uplink log.
/// <see cref="OpenAsync"/> rebuilds memory from the last snapshot plus the log after it, so everything
/// acknowledged before a crash is present; <see cref="DisposeAsync"/> drains the commit queue and
/// writes a snapshot so the next open replays nothing.
/// </summary>
public sealed class PerfEngine : IAsyncDisposable
{
    private static readonly TimeSpan RetentionPassInterval = TimeSpan.FromMinutes(1);

    private readonly CoreOptions _options;
    private readonly UplinkLog _log;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly string _snapshotPath;
    private readonly KeyTable _keys;
    private readonly PersistentRpcLog _rpcLog;
    private long _snapshotAddress;
    private long _lastRetentionPass;
    private TaskCompletionSource? _checkpointRequest;
    private int _disposed;

    private PerfEngine(CoreOptions options, UplinkLog log, ILoggerFactory loggerFactory, TimeProvider time)
    {
        _options = options;
        _log = log;
        _time = time;
        _logger = loggerFactory.CreateLogger("Perf.Core");
        _snapshotPath = Path.Combine(options.DataDir, "snapshot.bin");
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

    /// <summary>True once recovery finished and the commit loop runs; false after disposal.</summary>
    public bool IsReady { get; private set; }

    public static async Task<PerfEngine> OpenAsync(CoreOptions options, ILoggerFactory loggerFactory, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(loggerFactory);
        var started = Stopwatch.GetTimestamp();
        Directory.CreateDirectory(options.DataDir);
        var log = await UplinkLog.OpenAsync(Path.Combine(options.DataDir, "log"), options, loggerFactory.CreateLogger("Perf.Core.Log"), ct);
        var engine = new PerfEngine(options, log, loggerFactory, TimeProvider.System);

        engine._snapshotAddress = SnapshotWriter.Load(engine._snapshotPath, engine.ApplyRecord, out var snapshotRecords);
        var replayed = log.Replay(engine._snapshotAddress, engine.ApplyRecord);
        engine.RetentionPass();
        log.Start(engine.AfterBatchAsync);
        engine.Rpc.Start();
        engine.IsReady = true;
        CoreLog.Opened(engine._logger, options.DataDir, engine._snapshotAddress, snapshotRecords, replayed,
            (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return engine;
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

    /// <summary>Writes a snapshot of all state and truncates the log before it (normally automatic, see <see cref="CoreOptions.CheckpointLogBytes"/>).</summary>
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
            case RecordKind.Telemetry or RecordKind.TelemetryDelete:
                Telemetry.Replay(kind, ref reader);
                break;
            case RecordKind.Rpc or RecordKind.RpcTransition or RecordKind.RpcRemove or RecordKind.RpcSequence:
                _rpcLog.Replay(kind, ref reader);
                break;
            case >= RecordKind.EdgeAssignment and <= RecordKind.EdgeQueueDelete:
                Edges.Replay(kind, ref reader);
                break;
            default:
                Registry.Replay(kind, ref reader);
                break;
        }
    }

    /// <summary>Runs on the commit loop after each applied batch: state equals the log up to <paramref name="tail"/>.</summary>
    private ValueTask AfterBatchAsync(long tail)
    {
        var request = Interlocked.Exchange(ref _checkpointRequest, null);
        if (request is not null || tail - _snapshotAddress >= _options.CheckpointLogBytes)
        {
            try
            {
                Checkpoint(tail);
                request?.TrySetResult();
            }
            catch (Exception e)
            {
                request?.TrySetException(e);
                throw;
            }
        }
        if (_options.TelemetryRetentionDays > 0 &&
            Stopwatch.GetElapsedTime(_lastRetentionPass) >= RetentionPassInterval)
        {
            RetentionPass();
        }
        return ValueTask.CompletedTask;
    }

    private void RetentionPass()
    {
        _lastRetentionPass = Stopwatch.GetTimestamp();
        if (_options.TelemetryRetentionDays > 0)
        {
            Telemetry.TrimBefore(_time.GetUtcNow().AddDays(-_options.TelemetryRetentionDays).ToUnixTimeMilliseconds());
        }
    }

    private void Checkpoint(long tail)
    {
        var started = Stopwatch.GetTimestamp();
        using var snapshot = new SnapshotWriter(_snapshotPath, tail);
        Registry.WriteSnapshot(snapshot);
        Attributes.WriteSnapshot(snapshot);
        Telemetry.WriteSnapshot(snapshot);
        _rpcLog.WriteSnapshot(snapshot);
        Edges.WriteSnapshot(snapshot);
        snapshot.Commit();
        _snapshotAddress = tail;
        _log.TruncateUntil(tail);
        CoreLog.Checkpointed(_logger, tail, snapshot.Records, (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds);
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
        if (_log.TailAddress > _snapshotAddress)
        {
            Checkpoint(_log.TailAddress);
        }
        await _log.CloseAsync();
    }

    /// <summary>Test seam simulating kill -9: stops committing at once without flush, snapshot or disposal.</summary>
    internal async Task AbandonAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        IsReady = false;
        Rpc.Stop();
        await _log.AbandonAsync();
    }
}
