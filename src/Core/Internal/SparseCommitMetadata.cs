using System.Runtime.ExceptionServices;
using FASTER.core;

namespace Perf.Core.Internal;

/// <summary>
/// Commit metadata for a fast-commit log, written sparsely. In FASTER's fast-commit mode every commit
/// record is in the log itself, and recovery reads the newest metadata file only to know where to start
/// scanning forward for the last commit record; so writing that file at every commit (a file created,
/// written and flushed, an older one deleted: most of a commit's latency here) buys nothing. This writes
/// it every <paramref name="every"/> commits, and always when the log's begin address moved (a
/// truncation): FASTER deletes old segments right after, and the metadata recovery starts from must not
/// point into a deleted one. The same rule as Garnet's FastCommitThrottleFreq, plus the begin-address guard.
/// </summary>
/// <remarks>
/// Each write runs on a thread of its own, never on the pool thread FASTER calls this from. FASTER's
/// <c>DeviceLogCommitCheckpointManager</c> writes the file with an asynchronous <c>FileStream</c> write, which .NET
/// queues to the calling pool thread's local queue, and then blocks that thread until the write completes. On a
/// pool thread the write could wait there, unstarted, until another worker stole it: 0.9 to 1.9 s stalls of the
/// commit, and of every MQTT acknowledgement behind it, in four of eight 40 s runs at 185,000 msgs/s, with the disk
/// idle. With the write on its own thread: none in six (issue 12, row 5; docs/PERFORMANCE.md, "Session of
/// 2026-11-24, 19:02").
/// </remarks>
internal sealed class SparseCommitMetadata(ILogCommitManager inner, int every) : ILogCommitManager
{
    private long _writtenBegin = -1;
    private int _skipped;

    /// <summary>Metadata writes made and skipped, for tests and diagnostics.</summary>
    public long Written { get; private set; }

    public long Skipped { get; private set; }

    public void Commit(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum, bool forceWriteMetadata)
    {
        // FASTER calls this from its serial commit worker: no concurrent calls.
        if (!forceWriteMetadata && beginAddress == _writtenBegin && ++_skipped < every)
        {
            Skipped++;
            return;
        }
        WriteOnOwnThread(beginAddress, untilAddress, commitMetadata, commitNum);
        _writtenBegin = beginAddress;
        _skipped = 0;
        Written++;
    }

    /// <summary>Writes the metadata through <c>inner</c> on a new thread and waits for it; its failure is rethrown here.</summary>
    private void WriteOnOwnThread(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum)
    {
        ExceptionDispatchInfo? failure = null;
        var writer = new Thread(() =>
        {
            try
            {
                inner.Commit(beginAddress, untilAddress, commitMetadata, commitNum, forceWriteMetadata: true);
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        {
            IsBackground = true,
            Name = "Commit metadata",
        };
        writer.Start();
        writer.Join();
        failure?.Throw();
    }

    public byte[] GetCommitMetadata(long commitNum) => inner.GetCommitMetadata(commitNum);

    public IEnumerable<long> ListCommits() => inner.ListCommits();

    public void RemoveCommit(long commitNum) => inner.RemoveCommit(commitNum);

    public void RemoveAllCommits() => inner.RemoveAllCommits();

    public void OnRecovery(long commitNum) => inner.OnRecovery(commitNum);

    public void Dispose() => inner.Dispose();
}
