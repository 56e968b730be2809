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

    // The threads lowered by Run and still in their low-priority part (kernel tids): Restore leaves them alone. Process-wide
    // by nature: a nice value belongs to a thread of the process, whichever engine lowered it.
    private static readonly HashSet<int> Lowered = [];

    /// <summary>
    /// Runs <paramref name="work"/> on a new low-priority thread; the task completes with the work's own task. Only the
    /// work's synchronous part runs at the low priority; its continuations run on the thread pool as usual.
    /// </summary>
    public static Task Run(Func<Task> work) =>
        Task.Factory.StartNew(static state =>
        {
            var lowered = Lower(out var original);
            try
            {
                return ((Func<Task>)state!)();
            }
            finally
            {
                if (lowered)
                {
                    Restore(original);
                }
            }
        }, work, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default).Unwrap();

    /// <summary>
    /// Lowers the calling thread's priority to <see cref="Nice"/>; false when the platform has no per-thread nice
    /// value, or it refused, or the thread was already there. <paramref name="original"/> is the value before.
    /// </summary>
    internal static bool Lower(out int original)
    {
        original = 0;
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        var tid = gettid();
        original = getpriority(PrioProcess, tid);
        if (original >= Nice || setpriority(PrioProcess, tid, Nice) != 0)
        {
            return false;
        }

        lock (Lowered)
        {
            Lowered.Add(tid);
        }
        return true;
    }

    /// <summary>
    /// Puts the calling thread back at <paramref name="original"/>, and every thread that inherited the low
    /// priority from a lowered thread as well. On Linux a new thread starts with its creator's nice value, and the
    /// runtime creates a thread-pool worker on the thread that asks for one: work queued from the lowered thread
    /// (a file write, a continuation) can create a worker that would serve everything else at the low priority
    /// for the rest of the process's life. No other code sets <see cref="Nice"/>, so a thread found there that is
    /// not a lowered thread itself got it that way.
    /// </summary>
    internal static void Restore(int original)
    {
        var self = gettid();
        setpriority(PrioProcess, self, original);
        lock (Lowered)
        {
            Lowered.Remove(self);
            foreach (var task in Directory.EnumerateDirectories("/proc/self/task"))
            {
                if (int.TryParse(Path.GetFileName(task), out var tid) && !Lowered.Contains(tid) && getpriority(PrioProcess, tid) == Nice)
                {
                    setpriority(PrioProcess, tid, original);
                }
            }
        }
    }

    /// <summary>The calling thread's nice value (Linux; tests).</summary>
    internal static int CurrentNice() => getpriority(PrioProcess, gettid());

    /// <summary>The calling thread's kernel id (Linux; tests).</summary>
    internal static int CurrentThreadId() => gettid();

    /// <summary>A thread's nice value by kernel id (Linux; tests).</summary>
    internal static int NiceOf(int tid) => getpriority(PrioProcess, tid);

    private const int PrioProcess = 0;

    [LibraryImport("libc", EntryPoint = "setpriority", SetLastError = true)]
    private static partial int setpriority(int which, int who, int prio);

    [LibraryImport("libc", EntryPoint = "getpriority", SetLastError = true)]
    private static partial int getpriority(int which, int who);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int gettid();
}
