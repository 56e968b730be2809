using System.Numerics;
using FASTER.core;

namespace Perf.Core.Internal;

/// <summary>
/// A FASTER <see cref="IDevice"/> that passes every call to the device it wraps (FASTER 2.6 has no wrapping base of
/// its own); a subclass overrides only what it changes. A write by address is split into segment and offset here and
/// goes through the by-segment overload, as <see cref="StorageDeviceBase"/> does, so overriding that one covers both.
/// </summary>
internal abstract class ForwardingDevice(IDevice inner) : IDevice
{
    protected IDevice Inner { get; } = inner;

    public uint SectorSize => Inner.SectorSize;
    public string FileName => Inner.FileName;
    public long Capacity => Inner.Capacity;
    public long SegmentSize => Inner.SegmentSize;
    public int StartSegment => Inner.StartSegment;
    public int EndSegment => Inner.EndSegment;

    public int ThrottleLimit
    {
        get => Inner.ThrottleLimit;
        set => Inner.ThrottleLimit = value;
    }

    public void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false) =>
        Inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);

    public bool TryComplete() => Inner.TryComplete();

    public bool Throttle() => Inner.Throttle();

    public virtual void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context) =>
        Inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);

    public void WriteAsync(IntPtr sourceAddress, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context) =>
        WriteAsync(sourceAddress, SegmentOf((long)destinationAddress), destinationAddress & ((1UL << SegmentBits) - 1), numBytesToWrite, callback, context);

    public void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        Inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

    public void ReadAsync(ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
        Inner.ReadAsync(sourceAddress, destinationAddress, readLength, callback, context);

    public long GetFileSize(int segment) => Inner.GetFileSize(segment);

    public void Reset() => Inner.Reset();

    public virtual void TruncateUntilAddressAsync(long toAddress, AsyncCallback callback, IAsyncResult result) =>
        Inner.TruncateUntilAddressAsync(toAddress, callback, result);

    public virtual void TruncateUntilAddress(long toAddress) => Inner.TruncateUntilAddress(toAddress);

    public virtual void TruncateUntilSegmentAsync(int toSegment, AsyncCallback callback, IAsyncResult result) =>
        Inner.TruncateUntilSegmentAsync(toSegment, callback, result);

    public virtual void TruncateUntilSegment(int toSegment) => Inner.TruncateUntilSegment(toSegment);

    public virtual void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) =>
        Inner.RemoveSegmentAsync(segment, callback, result);

    public virtual void RemoveSegment(int segment) => Inner.RemoveSegment(segment);

    public virtual void Dispose() => Inner.Dispose();

    /// <summary>The segment an address of the device falls in.</summary>
    protected int SegmentOf(long address) => (int)(address >> SegmentBits);

    private int SegmentBits => BitOperations.Log2((ulong)SegmentSize);
}
