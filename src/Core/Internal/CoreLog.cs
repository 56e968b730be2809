using Microsoft.Extensions.Logging;

namespace Perf.Core.Internal;

internal static partial class CoreLog
{
    [LoggerMessage(1, LogLevel.Error, "Log commit failed; the batch's writers were failed")]
    public static partial void CommitFailed(ILogger logger, Exception exception);

    [LoggerMessage(2, LogLevel.Error, "Checkpoint or retention pass failed")]
    public static partial void MaintenanceFailed(ILogger logger, Exception exception);

    [LoggerMessage(3, LogLevel.Information, "Core opened from {DataDir}: state store consistent with log address {CheckpointAddress}, {StateRecords} records loaded, replayed {Replayed} log records in {ElapsedMs} ms")]
    public static partial void Opened(ILogger logger, string dataDir, long checkpointAddress, long stateRecords, long replayed, long elapsedMs);

    [LoggerMessage(4, LogLevel.Information, "Checkpoint into the FasterKV state store at log address {Address}: {Records} records in {ElapsedMs} ms, of which {SnapshotMs} ms on the commit loop")]
    public static partial void Checkpointed(ILogger logger, long address, long records, long elapsedMs, long snapshotMs);

    [LoggerMessage(5, LogLevel.Warning, "Session push to {ConnectionId} failed")]
    public static partial void PushFailed(ILogger logger, string connectionId, Exception exception);

    [LoggerMessage(6, LogLevel.Warning, "Subscriber callback for device {DeviceId} failed")]
    public static partial void SubscriberFailed(ILogger logger, Guid deviceId, Exception exception);

    [LoggerMessage(7, LogLevel.Warning, "Persistent RPC work for device {DeviceId} failed")]
    public static partial void RpcDispatchFailed(ILogger logger, Guid deviceId, Exception exception);

    [LoggerMessage(8, LogLevel.Error, "The checkpoint at shutdown did not finish within {TimeoutMs} ms (is the data directory {DataDir} still there and writable?); closing without it: the uplink log is kept whole and replayed at the next start")]
    public static partial void ShutdownCheckpointTimedOut(ILogger logger, long timeoutMs, string dataDir);

    [LoggerMessage(9, LogLevel.Error, "The checkpoint at shutdown failed; closing without it: the uplink log is kept whole and replayed at the next start")]
    public static partial void ShutdownCheckpointFailed(ILogger logger, Exception exception);

    [LoggerMessage(10, LogLevel.Information, "Uplink log in {Directory} reopened after a failed write ({Cause}): it resumes at its last commit, address {CommittedUntil}; the failed batches were never acknowledged")]
    public static partial void UplinkLogReopened(ILogger logger, string directory, string cause, long committedUntil);

    [LoggerMessage(11, LogLevel.Error, "Uplink log in {Directory} could not be reopened after a failed write; uplinks are refused until it is (next try in {RetryMs} ms)")]
    public static partial void UplinkLogReopenFailed(ILogger logger, string directory, long retryMs, Exception exception);

    [LoggerMessage(12, LogLevel.Warning, "Uplink log in {Directory} is damaged at address {DamagedAt}; LOG_DAMAGE=keep-before: the state up to it is kept and checkpointed, and the {DroppedBytes} bytes of committed log from it on are dropped")]
    public static partial void LogDamageDropped(ILogger logger, string directory, long damagedAt, long droppedBytes);
}
