using FASTER.core;
using Perf.Core.Internal;

namespace Perf.Core.Tests;

/// <summary>
/// A failing disk under the uplink log (<see cref="CoreOptions.WrapLogDevice"/>): forwards to the log's device; while
/// <see cref="Failing"/>, completes every write with EIO and writes nothing. Linked into the end-to-end tests too.
/// </summary>
internal sealed class FailingDevice(IDevice inner) : ForwardingDevice(inner)
{
    public volatile bool Failing;

    public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
    {
        if (Failing)
        {
            ThreadPool.UnsafeQueueUserWorkItem(_ => callback(GentleDevice.IoError, 0, context), null);
            return;
        }
        base.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
    }
}
