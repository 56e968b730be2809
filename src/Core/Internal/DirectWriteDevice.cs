using FASTER.core;
using Microsoft.Win32.SafeHandles;

namespace Perf.Core.Internal;

/// <summary>
/// The uplink log's storage device: FASTER's <see cref="ManagedLocalStorageDevice"/> for everything but page
/// writes, which a dedicated thread issues as plain synchronous <c>pwrite</c>s on a write-through handle and
/// completes inline.
/// </summary>
/// <remarks>
/// The managed device turns each page write into three thread-pool work items on Linux (the emulated async
/// <c>pwrite</c>, a <c>Task.Run</c> and its continuation), and the first of them blocks a pool thread for the
/// whole disk write. Under load every group commit therefore waited behind the socket completions queued in
/// the same pool, on 2 cores: a 64 KiB <c>O_DIRECT|O_DSYNC</c> write takes about 0.3 ms (p99 1.1 ms) here,
/// a commit took 3 ms on average with 1.4 % over 20 ms (issue 12, target 5). The writer thread is woken by
/// the kernel the moment a write is queued and sleeps in the disk, not in the pool. Writes are issued in the
/// order FASTER hands them over; FASTER tolerates completions in any order, so serial issue is correct, and
/// one group commit is usually a single page write anyway.
/// </remarks>
internal sealed class DirectWriteDevice : StorageDeviceBase
{
    /// <summary>Linux <c>O_DIRECT</c> through .NET's <c>FileOptions</c> (Windows' FILE_FLAG_NO_BUFFERING value, as FASTER passes it).</summary>
    private const FileOptions NoBuffering = (FileOptions)0x20000000;

    private readonly ManagedLocalStorageDevice _inner;
    private readonly FileOptions _writeOptions;
    private readonly Dictionary<int, SafeFileHandle> _handles = [];
    private readonly Queue<WriteRequest> _queue = new();
    private readonly object _lock = new(); // Monitor.Wait/Pulse: not a System.Threading.Lock
    private readonly Thread _writer;
    private bool _writing;
    private bool _disposed;

    public DirectWriteDevice(string filename, bool disableFileBuffering, bool recoverDevice)
        : this(new ManagedLocalStorageDevice(filename, preallocateFile: false, deleteOnClose: false, disableFileBuffering, recoverDevice: recoverDevice), disableFileBuffering)
    {
    }

    private DirectWriteDevice(ManagedLocalStorageDevice inner, bool disableFileBuffering)
        : base(inner.FileName, inner.SectorSize, inner.Capacity)
    {
        _inner = inner;
        _writeOptions = FileOptions.WriteThrough | (disableFileBuffering ? NoBuffering : FileOptions.None);
        startSegment = inner.StartSegment;
        endSegment = inner.EndSegment;
        _writer = new Thread(WriteLoop) { IsBackground = true, Name = "uplink-log-writer" };
        _writer.Start();
    }

    public override void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false)
    {
        base.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
        _inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);
    }

    public override void WriteAsync(nint sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite,
        DeviceIOCompletionCallback callback, object context)
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _queue.Enqueue(new WriteRequest(sourceAddress, segmentId, (long)destinationAddress, numBytesToWrite, callback, context));
                Monitor.Pulse(_lock);
                return;
            }
        }

        callback(uint.MaxValue, 0, context);
    }

    public override void ReadAsync(int segmentId, ulong sourceAddress, nint destinationAddress, uint readLength,
        DeviceIOCompletionCallback callback, object context) =>
        _inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public override void RemoveSegment(int segment)
    {
        CloseHandle(segment);
        _inner.RemoveSegment(segment);
    }

    public override void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result)
    {
        CloseHandle(segment);
        _inner.RemoveSegmentAsync(segment, callback, result);
    }

    public override long GetFileSize(int segment) => _inner.GetFileSize(segment);

    public override bool TryComplete()
    {
        lock (_lock)
        {
            if (_queue.Count > 0 || _writing)
            {
                return false;
            }
        }
        return _inner.TryComplete();
    }

    public override void Reset()
    {
        CloseHandles();
        _inner.Reset();
    }

    /// <summary>Writes already queued are issued first; later ones fail.</summary>
    public override void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            Monitor.Pulse(_lock);
        }
        _writer.Join();
        CloseHandles();
        _inner.Dispose();
    }

    private void WriteLoop()
    {
        while (true)
        {
            WriteRequest request;
            lock (_lock)
            {
                _writing = false;
                while (_queue.Count == 0)
                {
                    if (_disposed)
                    {
                        return;
                    }
                    Monitor.Wait(_lock);
                }
                request = _queue.Dequeue();
                _writing = true;
            }

            var error = Write(request);
            request.Callback(error, error == 0 ? request.Length : 0, request.Context);
        }
    }

    private unsafe uint Write(in WriteRequest request)
    {
        try
        {
            var handle = HandleOf(request.Segment);
            RandomAccess.Write(handle, new ReadOnlySpan<byte>((void*)request.Source, (int)request.Length), request.Offset);
            return 0;
        }
        catch (IOException e)
        {
            return (uint)(e.HResult & 0xFFFF);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or ObjectDisposedException)
        {
            return uint.MaxValue;
        }
    }

    private SafeFileHandle HandleOf(int segment)
    {
        lock (_handles)
        {
            if (!_handles.TryGetValue(segment, out var handle))
            {
                handle = File.OpenHandle(GetSegmentFilename(FileName, segment), FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite, _writeOptions);
                _handles.Add(segment, handle);
            }
            return handle;
        }
    }

    private void CloseHandle(int segment)
    {
        lock (_handles)
        {
            if (_handles.Remove(segment, out var handle))
            {
                handle.Dispose();
            }
        }
    }

    private void CloseHandles()
    {
        lock (_handles)
        {
            foreach (var handle in _handles.Values)
            {
                handle.Dispose();
            }
            _handles.Clear();
        }
    }

    private readonly record struct WriteRequest(nint Source, int Segment, long Offset, uint Length, DeviceIOCompletionCallback Callback, object Context);
}
