using System.Runtime.InteropServices;
using Perf.Core.Internal;

namespace Perf.Core.Tests.Internal;

public class NativeHeapTests
{
    [Fact]
    public void Trim_ReturnsFreedNativeMemoryOnGlibc_AndIsANoOpElsewhere()
    {
        // Free a few MB of native memory in small blocks (kept in the arena, not unmapped), then trim: on glibc the
        // call binds and succeeds; anywhere else it reports false instead of throwing.
        var blocks = new nint[2048];
        for (var i = 0; i < blocks.Length; i++)
        {
            blocks[i] = Marshal.AllocHGlobal(2048);
        }

        foreach (var block in blocks)
        {
            Marshal.FreeHGlobal(block);
        }

        var glibc = OperatingSystem.IsLinux() && !RuntimeInformation.RuntimeIdentifier.Contains("musl", StringComparison.Ordinal);
        Assert.Equal(glibc, NativeHeap.Trim());
        Assert.Equal(glibc, NativeHeap.Trim());
    }
}
