using System.Runtime.InteropServices;

namespace Perf.Core.Internal;

/// <summary>
/// Runs maintenance (an automatic checkpoint's telemetry snapshot, compaction and persist) on a thread of its own at
/// a lower scheduling priority, so that it neither holds a thread-pool worker for its hundreds of milliseconds nor
/// competes as an equal with the threads that acknowledge messages.
/// </summary>
/// <remarks>
/// Measured at 185,000 msgs/s on 2 cores (docs/PERFORMANCE.md, "Session of 2026-11-23, 22:35"): on the thread pool,
/// PUBACKs stalled for the length of the checkpoint (100 to 160 ms, once per checkpoint). The priority is the thread's
/// nice value (Linux; lowering it needs no privilege); elsewhere only the thread is its own.
/// </remarks>
internal static partial class BackgroundThread
{
    /// <summary>Nice value of the maintenance thread: about a tenth of a default thread's share of a busy CPU.</summary>
    internal const int Nice = 10;

    /// <summary>Runs <paramref name="work"/> on a new low-priority thread; the task completes with the work's own task.</summary>
    public static Task Run(Func<Task> work) =>
        Task.Factory.StartNew(() =>
        {
            Lower();
            return work();
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

    /// <summary>Lowers the calling thread's priority; false when the platform has no per-thread nice value or refused.</summary>
    internal static bool Lower()
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        return setpriority(PrioProcess, gettid(), Nice) == 0;
    }

    /// <summary>The calling thread's nice value (Linux; tests).</summary>
    internal static int CurrentNice() => getpriority(PrioProcess, gettid());

    private const int PrioProcess = 0;

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int setpriority(int which, int who, int prio);

    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    private static partial int getpriority(int which, int who);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int gettid();
}
