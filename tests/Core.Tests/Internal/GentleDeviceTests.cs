using FASTER.core;
using Perf.Core.Internal;

namespace Perf.Core.Tests.Internal;

/// <summary>
/// <see cref="GentleDevice"/> under a real FASTER log: truncated segments are shrunk and deleted in the
/// background, what lies after the begin address stays readable, and disposing stops a truncation in progress.
/// </summary>
public class GentleDeviceTests
{
    private const int SegmentBits = 16; // 64 KiB segment files

    private static (FasterLog Log, GentleDevice Device) Open(string dir, TimeSpan pause, uint writePiece = 0, bool buffered = false, bool dedicated = false)
    {
        var device = new GentleDevice(Devices.CreateLogDevice(Path.Combine(dir, "log"), preallocateFile: false,
            deleteOnClose: false, recoverDevice: true))
        {
            StepBytes = 16 << 10,
            StepPause = pause,
            WritePieceBytes = writePiece,
            BufferedWrites = buffered,
            DedicatedWriter = dedicated,
        };
        var log = new FasterLog(new FasterLogSettings
        {
            LogDevice = device,
            LogCommitDir = dir,
            PageSizeBits = 12,
            MemorySizeBits = 14,
            SegmentSizeBits = SegmentBits,
            TryRecoverLatest = true,
        });
        return (log, device);
    }

    private static async Task<List<long>> AppendAsync(FasterLog log, int count)
    {
        var addresses = new List<long>();
        var entry = new byte[1000];
        for (var i = 0; i < count; i++)
        {
            BitConverter.TryWriteBytes(entry, i);
            addresses.Add(log.Enqueue(entry));
        }
        await log.CommitAsync();
        return addresses;
    }

    private static string Segment(string dir, int segment) => Path.Combine(dir, $"log.{segment}");

    [Fact]
    public async Task TruncatedSegments_AreShrunkThenDeleted_AndTheRestStaysReadable()
    {
        using var dir = new TempDir();
        var (log, device) = Open(dir.Path, TimeSpan.FromMilliseconds(1));
        var addresses = await AppendAsync(log, 400); // about 6 segments
        Assert.True(File.Exists(Segment(dir.Path, 5)));
        var keepFrom = addresses.FindIndex(a => a >> SegmentBits >= 4);
        log.TruncateUntil(addresses[keepFrom]);
        await log.CommitAsync(); // persists the begin address; FASTER then truncates the device
        await device.RemovedUntil(4);

        for (var segment = 0; segment < 4; segment++)
        {
            Assert.False(File.Exists(Segment(dir.Path, segment)), $"segment {segment} still on disk");
        }
        Assert.True(File.Exists(Segment(dir.Path, 4)));
        Assert.Equal(0, device.Failures);
        var read = new List<int>();
        using (var scan = log.Scan(log.BeginAddress, log.CommittedUntilAddress))
        {
            while (scan.GetNext(out var entry, out _, out _))
            {
                read.Add(BitConverter.ToInt32(entry));
            }
        }
        Assert.Equal(Enumerable.Range(keepFrom, 400 - keepFrom), read);
        log.Dispose();
        device.Dispose();
    }

    [Fact]
    public async Task Dispose_StopsATruncationInProgress_AndTheNextOpenFinishesIt()
    {
        using var dir = new TempDir();
        var (log, device) = Open(dir.Path, TimeSpan.FromMinutes(10)); // one step, then a pause no test waits out
        var addresses = await AppendAsync(log, 400);
        var keepFrom = addresses.FindIndex(a => a >> SegmentBits >= 3);
        log.TruncateUntil(addresses[keepFrom]);
        await log.CommitAsync();
        log.Dispose();
        device.Dispose(); // returns at the pause instead of waiting it out
        Assert.True(File.Exists(Segment(dir.Path, 0)), "the truncation was stopped before it deleted anything");

        // The reopened log recovers its begin address; its next truncation removes the stale segments too.
        (log, device) = Open(dir.Path, TimeSpan.FromMilliseconds(1));
        Assert.Equal(addresses[keepFrom], log.BeginAddress);
        var more = await AppendAsync(log, 100);
        log.TruncateUntil(more[0]);
        await log.CommitAsync();
        await device.RemovedUntil((int)(more[0] >> SegmentBits));
        for (var segment = 0; segment < more[0] >> SegmentBits; segment++)
        {
            Assert.False(File.Exists(Segment(dir.Path, segment)), $"segment {segment} still on disk");
        }
        log.Dispose();
        device.Dispose();
    }

    [Fact]
    public async Task PacedWrites_InSectorPieces_LandWhereTheLogPutThem()
    {
        using var dir = new TempDir();
        var (log, device) = Open(dir.Path, TimeSpan.FromMilliseconds(1), writePiece: 512);
        var first = await AppendAsync(log, 300); // page flushes of 4 KiB, each written as eight 512-byte pieces
        var second = await AppendAsync(log, 300);
        log.Dispose();
        device.Dispose();

        (log, device) = Open(dir.Path, TimeSpan.FromMilliseconds(1)); // read back without pacing
        var read = new List<int>();
        using (var scan = log.Scan(log.BeginAddress, log.CommittedUntilAddress))
        {
            while (scan.GetNext(out var entry, out _, out _))
            {
                read.Add(BitConverter.ToInt32(entry));
            }
        }
        Assert.Equal(first.Count + second.Count, read.Count);
        Assert.Equal(Enumerable.Range(0, 300).Concat(Enumerable.Range(0, 300)), read);
        log.Dispose();
        device.Dispose();
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public async Task BufferedWrites_OpenTheSegmentWithoutSync_AndTheLogReadsBackAfterReopen(bool buffered, bool dedicated)
    {
        using var dir = new TempDir();
        var (log, device) = Open(dir.Path, TimeSpan.FromMilliseconds(1), buffered: buffered, dedicated: dedicated);
        var first = await AppendAsync(log, 200);

        // The flags of every descriptor this process holds on segment 0 (octal, /proc/self/fdinfo).
        var segment = Path.GetFullPath(Segment(dir.Path, 0));
        var writers = new List<int>();
        foreach (var fd in Directory.GetFiles("/proc/self/fd"))
        {
            if (new FileInfo(fd).LinkTarget == segment)
            {
                var flags = File.ReadLines($"/proc/self/fdinfo/{Path.GetFileName(fd)}").First(l => l.StartsWith("flags:", StringComparison.Ordinal));
                var value = Convert.ToInt32(flags["flags:".Length..].Trim(), 8);
                if ((value & 3) != 0) // O_WRONLY or O_RDWR
                {
                    writers.Add(value);
                }
            }
        }
        const int OSync = 0x101000; // O_SYNC (includes O_DSYNC's bit)
        Assert.NotEmpty(writers);
        if (buffered)
        {
            Assert.All(writers, flags => Assert.Equal(0, flags & OSync));
        }
        else
        {
            Assert.Contains(writers, flags => (flags & OSync) == OSync);
        }

        var second = await AppendAsync(log, 200);
        log.Dispose();
        device.Dispose();
        (log, device) = Open(dir.Path, TimeSpan.FromMilliseconds(1));
        var read = new List<int>();
        using (var scan = log.Scan(log.BeginAddress, log.CommittedUntilAddress))
        {
            while (scan.GetNext(out var entry, out _, out _))
            {
                read.Add(BitConverter.ToInt32(entry));
            }
        }
        Assert.Equal(Enumerable.Range(0, 200).Concat(Enumerable.Range(0, 200)), read);
        Assert.Equal(first.Count + second.Count, read.Count);
        Assert.Equal(0, device.Failures);
        log.Dispose();
        device.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DedicatedWriter_WritesInOrder_OnItsOwnThread_NotThePool_AndStopsWithTheDevice(bool buffered)
    {
        using var dir = new TempDir();
        var device = new GentleDevice(Devices.CreateLogDevice(Path.Combine(dir.Path, "log"), preallocateFile: false,
            deleteOnClose: false, recoverDevice: true))
        {
            BufferedWrites = buffered,
            DedicatedWriter = true,
        };
        const int Pieces = 8;
        const int PieceBytes = 4096;
        var source = new byte[Pieces * PieceBytes];
        for (var i = 0; i < source.Length; i++)
        {
            source[i] = (byte)(i / PieceBytes + 1);
        }
        var done = new List<(int Piece, Thread Thread, bool Pool, uint Error, uint Bytes)>();
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var pinned = System.Runtime.InteropServices.GCHandle.Alloc(source, System.Runtime.InteropServices.GCHandleType.Pinned);
        try
        {
            var address = pinned.AddrOfPinnedObject();
            for (var piece = 0; piece < Pieces; piece++)
            {
                device.WriteAsync(address + (piece * PieceBytes), 0, (ulong)(piece * PieceBytes), PieceBytes, (error, bytes, context) =>
                {
                    lock (done)
                    {
                        done.Add(((int)context, Thread.CurrentThread, Thread.CurrentThread.IsThreadPoolThread, error, bytes));
                        if (done.Count == Pieces)
                        {
                            all.TrySetResult();
                        }
                    }
                }, piece);
            }
            await all.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            pinned.Free();
        }

        Assert.Equal(Enumerable.Range(0, Pieces), done.Select(d => d.Piece));
        Assert.All(done, d => Assert.Equal((0u, (uint)PieceBytes, false, "Log writer"), (d.Error, d.Bytes, d.Pool, d.Thread.Name)));
        var writer = Assert.Single(done.Select(d => d.Thread).Distinct());
        Assert.Equal(source, File.ReadAllBytes(Segment(dir.Path, 0)));

        device.Dispose();
        Assert.False(writer.IsAlive);
    }
}
