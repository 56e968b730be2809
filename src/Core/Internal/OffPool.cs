namespace Perf.Core.Internal;

/// <summary>
/// Runs a blocking call that waits for asynchronous file I/O (FASTER's <c>DeviceLogCommitCheckpointManager</c> writes and
/// reads its metadata files that way) off the thread pool, and tells the pool when a pool thread waits for it.
/// </summary>
/// <remarks>
/// <para>The manager starts a <c>FileStream</c> write, which .NET on Unix runs as a pool work item, and then blocks the
/// calling thread on a semaphore until the write completes. FASTER calls it from pool threads (its commit callback and
/// its checkpoint state machine). Two ways that stalled the commit, and every MQTT acknowledgement behind it, for 0.9 to
/// 1.9 s with the disk idle (issue 12, row 5; docs/PERFORMANCE.md, "Session of 2026-11-24"):</para>
/// <list type="bullet">
/// <item>from a pool thread, the write item goes to that thread's own local queue, which only a stealing worker serves;</item>
/// <item>a pool thread blocked on a semaphore or in <c>Thread.Join</c> still counts as a working thread, so with both
/// of a 2-core machine's workers blocked so, the pool woke no worker for the queued write until its starvation check
/// added a thread, half a second or more later.</item>
/// </list>
/// <para>So the work runs on a dedicated thread (its I/O goes to the global queue), and the pool thread waits for it
/// through <see cref="Task"/>'s blocking wait, which tells the pool that the thread is blocked: the pool then brings in
/// another worker at once.</para>
/// </remarks>
internal static class OffPool
{
    /// <summary>
    /// Runs <paramref name="work"/> and waits for it: on a dedicated thread when called from a pool thread, inline
    /// otherwise. Its exception is rethrown here with its original stack.
    /// </summary>
    public static void Run(Action work)
    {
        if (!Thread.CurrentThread.IsThreadPoolThread)
        {
            work();
            return;
        }
        Task.Factory.StartNew(work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)
            .GetAwaiter().GetResult();
    }
}
