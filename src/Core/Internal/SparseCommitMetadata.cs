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
/// Each write runs off the pool thread FASTER calls this from, and that thread waits for it in a way the pool sees
/// (<see cref="OffPool"/>): written on the pool thread itself, the commit, with every MQTT acknowledgement behind it,
/// stalled 0.9 to 1.9 s in half of the 40 s runs at 185,000 msgs/s, with the disk idle (issue 12, row 5;
/// docs/PERFORMANCE.md, "Session of 2026-11-24, 22:05").
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
        Write(beginAddress, untilAddress, commitMetadata, commitNum);
        _writtenBegin = beginAddress;
        _skipped = 0;
        Written++;
    }

    /// <summary>
    /// The write, in a method of its own: a lambda over <see cref="Commit"/>'s parameters would make the compiler
    /// allocate its closure at every commit, the skipped ones included (one per round on the epoll thread).
    /// </summary>
    private void Write(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum) =>
        OffPool.Run(() => inner.Commit(beginAddress, untilAddress, commitMetadata, commitNum, forceWriteMetadata: true));

    public byte[] GetCommitMetadata(long commitNum) => inner.GetCommitMetadata(commitNum);

    public IEnumerable<long> ListCommits() => inner.ListCommits();

    public void RemoveCommit(long commitNum) => inner.RemoveCommit(commitNum);

    public void RemoveAllCommits() => inner.RemoveAllCommits();

    public void OnRecovery(long commitNum) => inner.OnRecovery(commitNum);

    public void Dispose() => inner.Dispose();
}
