using FASTER.core;
using Microsoft.Win32.SafeHandles;

namespace Perf.Core.Internal;

/// <summary>
/// A FASTER <see cref="IDevice"/> whose own heavy I/O gives way to the other writers on the same disk: truncated
/// segments are shrunk a step at a time in the background before they are deleted, and, with
/// <see cref="WritePieceBytes"/> set, its writes go to the disk one at a time in pieces. Everything else goes to the
/// wrapped device unchanged, except that with <see cref="BufferedWrites"/> writes go through the page cache.
/// </summary>
/// <remarks>
/// <para>Why: on ext4 mounted with <c>discard</c> (this machine's root), freeing a file's blocks issues the
/// discards inside the journal commit. Deleting a 1 GiB segment in one go took 410 ms here, and every write-through
/// append of the uplink log waits for that commit: a PUBACK stall of 0.4 to 1 s once per segment (docs/PERFORMANCE.md,
/// "Session of 2026-11-23, 22:35"). Shrinking by <see cref="StepBytes"/> with a pause between steps spreads it
/// out: the same writer's worst write was 5 to 10 ms instead of 139 ms.</para>
/// <para>Safety: FASTER truncates a segment only once nothing needs it (the uplink log after the commit that
/// persists the new begin address; the state store after compaction moved what was live), and nothing reads
/// below the begin address. A segment that is still on disk when the process stops is only a stale file: the
/// device finds it at open (<c>recoverDevice</c>) and the next truncation removes it.</para>
/// <para>Truncations run one at a time, in the order requested; the synchronous forms return at once. Paced
/// writes are for the state store, whose 4 MiB page flushes otherwise crowd out the uplink log's appends.</para>
/// </remarks>
internal sealed class GentleDevice(IDevice inner) : ForwardingDevice(inner)
{
    private readonly CancellationTokenSource _disposing = new();
    private readonly Lock _gate = new();
    private Task _truncating = Task.CompletedTask;
    private int _removedUntil;
    private int _failures;
    private readonly List<(int Segment, TaskCompletionSource Done)> _waiters = [];
    private readonly Queue<PacedWrite> _writes = new();
    private bool _writing;
    private readonly Dictionary<int, SafeFileHandle> _bufferedHandles = [];

    /// <summary>Bytes a segment file is shrunk by per step.</summary>
    internal long StepBytes { get; init; } = 8L << 20;

    /// <summary>Pause between two steps, so that the journal commits other writes in between.</summary>
    internal TimeSpan StepPause { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// When not 0, writes go to the device one at a time and in pieces of at most this many bytes (a multiple of the
    /// sector size), in the order they were asked for: a store's 4 MiB page flushes, several at once, kept the disk
    /// busy for tens of milliseconds in which the uplink log's write-through appends waited (and blocked as many
    /// thread-pool workers). Its own writes then take longer; each completes as before, once all of it is written.
    /// </summary>
    internal uint WritePieceBytes { get; init; }

    /// <summary>
    /// When true, writes go to the segment files through handles of this device's own, opened without write-through,
    /// so each returns once it is in the page cache (it survives a killed process, not a power cut). FASTER's device
    /// opens every write handle write-through (<c>O_SYNC</c> on Linux) whatever it is asked, so without this the log's
    /// <c>FsyncOnCommit = false</c> would change nothing. Reads, truncation and everything else stay the device's.
    /// </summary>
    internal bool BufferedWrites { get; init; }

    /// <summary>The error code (EIO) a short paced write, or a buffered write that failed, completes with.</summary>
    internal const uint IoError = 5;

    /// <summary>
    /// Segments that could not be shrunk (then deleted whole) or deleted (then left for the next truncation), and
    /// buffered writes that failed (completed with <see cref="IoError"/>).
    /// </summary>
    internal int Failures => Volatile.Read(ref _failures);

    /// <summary>Completes once every segment below <paramref name="segment"/> was removed through this device (tests).</summary>
    internal Task RemovedUntil(int segment)
    {
        lock (_gate)
        {
            if (_removedUntil >= segment)
            {
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _waiters.Add((segment, done));
            return done.Task;
        }
    }

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        if (DedicatedWriter)
        {
            QueueDedicated(new PacedWrite(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context));
            return;
        }
        if (BufferedWrites)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static state => state.Device.WriteBuffered(state.Write),
                (Device: this, Write: new PacedWrite(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context)), preferLocal: false);
            return;
        }
        if (WritePieceBytes == 0)
        {
            Inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
            return;
        }
        var write = new PacedWrite(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
        lock (_writes)
        {
            _writes.Enqueue(write);
            if (_writing)
            {
                return;
            }
            _writing = true;
        }
        IssuePiece(write);
    }


    private void IssuePiece(PacedWrite write)
    {
        var length = Math.Min(WritePieceBytes, write.Length - write.Done);
        Inner.WriteAsync(write.Source + (nint)write.Done, write.Segment, write.Destination + write.Done, length, PieceWritten, write);
    }

    private void PieceWritten(uint errorCode, uint numBytes, object context)
    {
        var write = (PacedWrite)context;
        write.Done += numBytes;
        if (errorCode == 0 && numBytes > 0 && write.Done < write.Length)
        {
            IssuePiece(write);
            return;
        }
        // A piece that wrote nothing without an error would leave the write short: reported as an I/O error, never
        // as done.
        var error = errorCode != 0 ? errorCode : write.Done < write.Length ? IoError : 0u;
        write.Callback(error, error == 0 ? write.Length : write.Done, write.Context);
        PacedWrite next;
        lock (_writes)
        {
            _writes.Dequeue();
            if (!_writes.TryPeek(out next!))
            {
                _writing = false;
                return;
            }
        }
        IssuePiece(next);
    }

    /// <summary>
    /// When true, every write is made by one thread of this device's own, in the order asked, through handles of its
    /// own (write-through unless <see cref="BufferedWrites"/>), and its callback runs there. The uplink log's commit
    /// then never waits for a thread-pool worker: at a checkpoint the pool serves the state store's flushes and
    /// continuations, and the log's commits queued behind them took 1 to 6 ms instead of 0.5 (issue 12, row 5).
    /// </summary>
    internal bool DedicatedWriter { get; init; }

    private readonly Queue<PacedWrite> _dedicated = new();
    private Thread? _writer;
    private bool _writerStopping;

    private void QueueDedicated(PacedWrite write)
    {
        lock (_dedicated)
        {
            _dedicated.Enqueue(write);
            if (_writer is null)
            {
                _writer = new Thread(static state => ((GentleDevice)state!).RunWriter()) { IsBackground = true, Name = "Log writer" };
                _writer.Start(this);
            }
            else
            {
                Monitor.Pulse(_dedicated);
            }
        }
    }

    private void RunWriter()
    {
        while (true)
        {
            PacedWrite write;
            lock (_dedicated)
            {
                while (_dedicated.Count == 0)
                {
                    if (_writerStopping)
                    {
                        return;
                    }
                    Monitor.Wait(_dedicated);
                }
                write = _dedicated.Dequeue();
            }
            WriteBuffered(write);
        }
    }

    private unsafe void WriteBuffered(PacedWrite write)
    {
        uint error = 0;
        try
        {
            RandomAccess.Write(BufferedHandle(write.Segment), new ReadOnlySpan<byte>((void*)write.Source, (int)write.Length), (long)write.Destination);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            // FASTER fails the flush, and the commit waiting for it, on a non-zero code.
            error = IoError;
            Interlocked.Increment(ref _failures);
        }
        write.Callback(error, error == 0 ? write.Length : 0, write.Context);
    }

    private SafeFileHandle BufferedHandle(int segment)
    {
        lock (_bufferedHandles)
        {
            if (!_bufferedHandles.TryGetValue(segment, out var handle))
            {
                handle = File.OpenHandle($"{FileName}.{segment}", FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete,
                    BufferedWrites ? FileOptions.None : FileOptions.WriteThrough);
                _bufferedHandles[segment] = handle;
            }
            return handle;
        }
    }

    /// <summary>Closes this device's write handles of the segments below <paramref name="until"/> (all with int.MaxValue).</summary>
    private void CloseBufferedHandles(int until)
    {
        lock (_bufferedHandles)
        {
            foreach (var segment in _bufferedHandles.Keys.Where(s => s < until).ToList())
            {
                _bufferedHandles.Remove(segment, out var handle);
                handle!.Dispose();
            }
        }
    }

    /// <summary>One write the device was asked for, and how much of it is on disk (paced writes).</summary>
    private sealed class PacedWrite(IntPtr source, int segment, ulong destination, uint length, DeviceIOCompletionCallback callback, object context)
    {
        public readonly IntPtr Source = source;
        public readonly int Segment = segment;
        public readonly ulong Destination = destination;
        public readonly uint Length = length;
        public readonly DeviceIOCompletionCallback Callback = callback;
        public readonly object Context = context;
        public uint Done;
    }

    public override void TruncateUntilAddressAsync(long toAddress, AsyncCallback callback, IAsyncResult result) =>
        TruncateUntilSegmentAsync(SegmentOf(toAddress), callback, result);

    public override void TruncateUntilAddress(long toAddress) => TruncateUntilSegment(SegmentOf(toAddress));

    public override void TruncateUntilSegmentAsync(int toSegment, AsyncCallback callback, IAsyncResult result) =>
        Enqueue(() => ShrinkThen(StartSegment, toSegment, () => Inner.TruncateUntilSegmentAsync(toSegment, callback, result)));

    public override void TruncateUntilSegment(int toSegment) =>
        Enqueue(() => ShrinkThen(StartSegment, toSegment, () => Inner.TruncateUntilSegment(toSegment)));

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) =>
        Enqueue(() => ShrinkThen(segment, segment + 1, () => Inner.RemoveSegmentAsync(segment, callback, result)));

    public override void RemoveSegment(int segment) =>
        Enqueue(() => ShrinkThen(segment, segment + 1, () => Inner.RemoveSegment(segment)));

    private void Enqueue(Func<Task> work)
    {
        lock (_gate)
        {
            // Each truncation starts after the previous one (Unwrap: after its async work, not just its start).
            _truncating = _truncating.ContinueWith(_ => work(), CancellationToken.None,
                TaskContinuationOptions.DenyChildAttach, TaskScheduler.Default).Unwrap();
        }
    }

    /// <summary>Shrinks the files of segments [<paramref name="from"/>, <paramref name="to"/>) step by step, then lets the device remove them.</summary>
    private async Task ShrinkThen(int from, int to, Action remove)
    {
        var stopping = _disposing.Token;
        try
        {
            for (var segment = from; segment < to && !stopping.IsCancellationRequested; segment++)
            {
                await ShrinkAsync($"{FileName}.{segment}", stopping);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The rest is deleted whole below, as it would have been without this wrapper.
            Interlocked.Increment(ref _failures);
        }
        if (stopping.IsCancellationRequested)
        {
            return;
        }
        try
        {
            CloseBufferedHandles(to);
            remove();
            // The device deletes only files it has open; one left by an earlier process (stopped mid-truncation) is
            // deleted here. Deleting a missing file is not an error.
            for (var segment = from; segment < to; segment++)
            {
                File.Delete($"{FileName}.{segment}");
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A segment that could not be deleted stays on disk below the begin address; the next truncation retries.
            Interlocked.Increment(ref _failures);
            return;
        }
        Removed(to);
    }

    private void Removed(int until)
    {
        lock (_gate)
        {
            _removedUntil = Math.Max(_removedUntil, until);
            _waiters.RemoveAll(w => w.Segment <= _removedUntil && w.Done.TrySetResult());
        }
    }

    private async Task ShrinkAsync(string path, CancellationToken stopping)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (FileNotFoundException)
        {
            return;
        }
        using (handle)
        {
            var length = RandomAccess.GetLength(handle);
            while (length > 0 && !stopping.IsCancellationRequested)
            {
                length = Math.Max(0, length - StepBytes);
                RandomAccess.SetLength(handle, length);
                if (length > 0)
                {
                    try
                    {
                        await Task.Delay(StepPause, stopping);
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Stops a truncation in progress at its next step (the rest stays on disk, for the next open's truncation),
    /// waits for it, then disposes the device.
    /// </summary>
    public override void Dispose()
    {
        _disposing.Cancel();
        Task truncating;
        lock (_gate)
        {
            truncating = _truncating;
        }
        truncating.GetAwaiter().GetResult();
        Thread? writer;
        lock (_dedicated)
        {
            _writerStopping = true;
            writer = _writer;
            Monitor.Pulse(_dedicated);
        }
        writer?.Join();
        CloseBufferedHandles(int.MaxValue);
        _disposing.Dispose();
        base.Dispose();
    }
}
