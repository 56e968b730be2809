using System.Runtime.ExceptionServices;

namespace Perf.Core.Internal;

/// <summary>
/// Runs a blocking call that waits for asynchronous file I/O (FASTER's <c>DeviceLogCommitCheckpointManager</c> writes and
/// reads its metadata files that way) off the thread pool.
/// </summary>
/// <remarks>
/// The manager starts a <c>FileStream</c> write or read, which .NET on Unix queues as a work item to the calling pool
/// thread's local queue, and then blocks that same thread until the I/O completes. The item waits there, unstarted,
/// until another worker happens to steal it: 0.9 to 1.9 s stalls with the disk idle, in four of eight 40 s runs at
/// 185,000 msgs/s (issue 12, row 5; docs/PERFORMANCE.md, "Session of 2026-11-24, 19:02"). On a thread of its own the
/// I/O goes to the pool's global queue, which every worker serves.
/// </remarks>
internal static class OffPool
{
    /// <summary>
    /// Runs <paramref name="work"/> and waits for it: on a new thread named <paramref name="name"/> when called from a
    /// pool thread, inline otherwise. Its exception is rethrown here with its original stack.
    /// </summary>
    public static void Run(string name, Action work)
    {
        if (!Thread.CurrentThread.IsThreadPoolThread)
        {
            work();
            return;
        }

        ExceptionDispatchInfo? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                work();
            }
            catch (Exception e)
            {
                failure = ExceptionDispatchInfo.Capture(e);
            }
        })
        {
            IsBackground = true,
            Name = name,
        };
        thread.Start();
        thread.Join();
        failure?.Throw();
    }
}
