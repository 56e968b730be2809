using System.Runtime.InteropServices;

namespace Perf.Core.Internal;

/// <summary>
/// Gives the C library's free heap memory back to the system after an automatic checkpoint (glibc's
/// <c>malloc_trim</c>).
/// </summary>
/// <remarks>
/// The runtime and the telemetry history allocate natively, and glibc keeps an arena per thread that once
/// allocated, up to 8 per core. An arena keeps what was freed in it, so with thread-pool threads coming and going
/// the process's RSS crept up in steps while the managed heap stayed flat. The 4-minute soak
/// (<c>SOAK_DURATION=4m bash load/soak.sh</c>) grew 5.5 MB/min in its second half, and 0.3 MB/min with
/// <c>MALLOC_ARENA_MAX=2</c> (docs/PERFORMANCE.md). <c>malloc_trim(0)</c> returns the free pages of every arena.
/// It runs once per automatic checkpoint, after the checkpoint is persisted. Elsewhere (another C library, another
/// system) it is a no-op.
/// </remarks>
internal static partial class NativeHeap
{
    private static int _unavailable;

    /// <summary>Returns free native heap pages to the system; false when this C library has no <c>malloc_trim</c>.</summary>
    public static bool Trim()
    {
        if (!OperatingSystem.IsLinux() || Volatile.Read(ref _unavailable) != 0)
        {
            return false;
        }

        try
        {
            malloc_trim(0);
            return true;
        }
        catch (EntryPointNotFoundException)
        {
            // musl (Alpine) has no malloc_trim: remember it, and never try again.
            Volatile.Write(ref _unavailable, 1);
            return false;
        }
        catch (DllNotFoundException)
        {
            Volatile.Write(ref _unavailable, 1);
            return false;
        }
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int malloc_trim(nuint pad);
}
