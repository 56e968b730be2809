using System.Runtime.InteropServices;
using System.Text;
using FASTER.core;
using Perf.Core.Internal;

namespace Perf.Core.Tests.Internal;

/// <summary>
/// <see cref="DirectWriteDevice"/> under a real <see cref="FasterLog"/>: what its writer thread wrote is what
/// a reopened log reads back (through the managed device's read handles), across segments, after a
/// truncation past whole segments (FASTER removes them, in its own time), and with fast commits as the uplink log uses them.
/// </summary>
public class DirectWriteDeviceTests
{
    private const int SegmentBits = 22; // 4 MiB segments: a few thousand 1 KiB records span several

    [Fact]
    public async Task CommittedRecords_WrittenByTheWriterThread_AreReadBack_AfterReopen_AcrossSegments()
    {
        using var dir = new TempDir();
        var expected = new List<string>();
        await using (var log = await OpenAsync(dir.Path))
        {
            // Concurrent appenders and overlapping commits: writes are queued while others are on disk.
            var appenders = Enumerable.Range(0, 4).Select(a => Task.Run(async () =>
            {
                for (var i = 0; i < 3000; i++)
                {
                    log.Log.Enqueue(Record(a, i));
                    if (i % 50 == 0)
                    {
                        await log.Log.CommitAsync();
                    }
                }
            })).ToArray();
            await Task.WhenAll(appenders);
            await log.Log.CommitAsync();
            Assert.True(log.Log.TailAddress > 3L << SegmentBits, $"tail {log.Log.TailAddress} spans fewer than 3 segments");
        }

        for (var a = 0; a < 4; a++)
        {
            for (var i = 0; i < 3000; i++)
            {
                expected.Add(Encoding.UTF8.GetString(Record(a, i)));
            }
        }

        await using (var log = await OpenAsync(dir.Path))
        {
            var read = ReadAll(log.Log);
            Assert.Equal(expected.Count, read.Count);
            Assert.Equal(expected.Order(StringComparer.Ordinal), read.Order(StringComparer.Ordinal));
            // Each appender's records are in its own order in the log.
            for (var a = 0; a < 4; a++)
            {
                var prefix = $"appender {a} ";
                var mine = read.Where(r => r.StartsWith(prefix, StringComparison.Ordinal)).ToList();
                Assert.Equal(expected.Where(r => r.StartsWith(prefix, StringComparison.Ordinal)), mine);
            }
        }
    }

    [Fact]
    public async Task AfterATruncationAcrossSegments_TheRestStaysReadable_AfterReopen()
    {
        using var dir = new TempDir();
        long truncateAt;
        await using (var log = await OpenAsync(dir.Path))
        {
            for (var i = 0; i < 16000; i++)
            {
                log.Log.Enqueue(Record(0, i));
            }
            await log.Log.CommitAsync();
            truncateAt = log.Log.TailAddress;
            for (var i = 16000; i < 17000; i++)
            {
                log.Log.Enqueue(Record(0, i));
            }
            Assert.True(truncateAt >> SegmentBits >= 3, "the first records span at least three whole segments");
            log.Log.TruncateUntil(truncateAt);
            await log.Log.CommitAsync();
        }

        await using (var log = await OpenAsync(dir.Path))
        {
            Assert.Equal(truncateAt, log.Log.BeginAddress);
            var read = ReadAll(log.Log);
            Assert.Equal(Enumerable.Range(16000, 1000).Select(i => Encoding.UTF8.GetString(Record(0, i))), read);
        }
    }

    [Fact]
    public unsafe void Dispose_IssuesTheWritesAlreadyQueued_AndLaterWritesFail()
    {
        using var dir = new TempDir();
        var device = new DirectWriteDevice(Path.Combine(dir.Path, "raw.log"), disableFileBuffering: true, recoverDevice: false);
        device.Initialize(1L << SegmentBits);
        var page = NativeMemory.AlignedAlloc(4096, 4096);
        try
        {
            new Span<byte>(page, 4096).Fill(0x5A);
            var completions = new List<(uint Error, uint Bytes)>();
            var done = new CountdownEvent(9);
            for (var i = 0; i < 8; i++)
            {
                device.WriteAsync((nint)page, (ulong)i * 4096, 4096, (error, bytes, _) =>
                {
                    lock (completions)
                    {
                        completions.Add((error, bytes));
                    }
                    done.Signal();
                }, null!);
            }
            device.Dispose();
            device.WriteAsync((nint)page, 8 * 4096, 4096, (error, bytes, _) =>
            {
                lock (completions)
                {
                    completions.Add((error, bytes));
                }
                done.Signal();
            }, null!);

            Assert.True(done.Wait(TimeSpan.FromSeconds(30)));
            Assert.Equal(8, completions.Count(c => c == (0u, 4096u)));
            Assert.Equal(1, completions.Count(c => c.Error != 0 && c.Bytes == 0));
            var file = File.ReadAllBytes(Path.Combine(dir.Path, "raw.log.0"));
            Assert.Equal(8 * 4096, file.Length);
            Assert.All(file, b => Assert.Equal(0x5A, b));
        }
        finally
        {
            NativeMemory.AlignedFree(page);
        }
    }

    private static byte[] Record(int appender, int i) =>
        Encoding.UTF8.GetBytes($"appender {appender} record {i:D6} " + new string((char)('a' + (i % 26)), 1000));

    private static List<string> ReadAll(FasterLog log)
    {
        var read = new List<string>();
        using var iterator = log.Scan(log.BeginAddress, log.CommittedUntilAddress);
        while (iterator.GetNext(out var entry, out var length, out _))
        {
            read.Add(Encoding.UTF8.GetString(entry, 0, length));
        }
        return read;
    }

    private static async Task<OpenLog> OpenAsync(string directory)
    {
        var device = new DirectWriteDevice(Path.Combine(directory, "uplink.log"), disableFileBuffering: true, recoverDevice: true);
        var log = await FasterLog.CreateAsync(new FasterLogSettings
        {
            LogDevice = device,
            LogCommitDir = directory,
            PageSizeBits = 16,
            MemorySizeBits = 20,
            SegmentSizeBits = SegmentBits,
            TryRecoverLatest = true,
            FastCommitMode = true,
            LogChecksum = LogChecksumType.PerEntry,
        });
        return new OpenLog(log, device);
    }

    private sealed record OpenLog(FasterLog Log, IDevice Device) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            Log.Dispose();
            Device.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
