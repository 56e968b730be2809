using FASTER.core;

namespace Perf.Core.Internal;

/// <summary>
/// FASTER's file checkpoint manager for the state store, with each checkpoint metadata write and read run off the
/// thread pool (<see cref="OffPool"/>). FASTER's checkpoint state machine calls these from whichever pool thread
/// drives it, and the base class blocks the calling thread until its file I/O, itself a pool work item, completes.
/// </summary>
/// <remarks>
/// Only log (fold-over) checkpoints are taken (<see cref="StateStore.PersistAsync"/>): the index checkpoint's write is
/// not virtual in FASTER 2.6 and is never called here.
/// </remarks>
internal sealed class OffPoolCheckpointManager(INamedDeviceFactory deviceFactory, ICheckpointNamingScheme naming)
    : DeviceLogCommitCheckpointManager(deviceFactory, naming, removeOutdated: true)
{
    public override void CommitLogCheckpoint(Guid logToken, byte[] commitMetadata) =>
        OffPool.Run(() => base.CommitLogCheckpoint(logToken, commitMetadata));

    public override void CommitLogIncrementalCheckpoint(Guid logToken, long version, byte[] commitMetadata, DeltaLog deltaLog) =>
        OffPool.Run(() => base.CommitLogIncrementalCheckpoint(logToken, version, commitMetadata, deltaLog));

    public override byte[] GetLogCheckpointMetadata(Guid logToken, DeltaLog deltaLog, bool scanDelta, long recoverTo)
    {
        byte[] metadata = [];
        OffPool.Run(() => metadata = base.GetLogCheckpointMetadata(logToken, deltaLog, scanDelta, recoverTo));
        return metadata;
    }
}
