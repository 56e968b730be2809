using FASTER.core;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

/// <summary>
/// The uplink log after a failed write (a full or failing disk): the failed uplinks are refused, not acknowledged;
/// once the disk works again the log is opened again and uplinks are acknowledged and kept; a crash then loses
/// nothing acknowledged. FASTER alone keeps a failed flush as a permanent error until the process restarts.
/// </summary>
public sealed class LogFailureTests
{
    [Fact]
    public async Task FailedWrite_RefusesUplinks_ThenTheLogReopens_AndOnlyAcknowledgedDataSurvivesACrash()
    {
        using var dir = new TempDir();
        FailingDevice? failing = null;
        void Configure(CoreOptions options)
        {
            options.LogReopenInterval = TimeSpan.Zero; // reopened on every uplink while it fails
            options.WrapLogDevice = device => failing = new FailingDevice(device);
        }

        var engine = await Engines.OpenAsync(dir.Path, Configure);
        var (_, device, token) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await Post(engine, device, 1)).IsOk);
        Assert.Null(engine.StorageFailure);

        failing!.Failing = true;
        var refused = await Post(engine, device, 2);
        Assert.Equal(UplinkStatus.Unavailable, refused.Status);
        Assert.NotNull(engine.StorageFailure);
        // While the disk still fails, the log is reopened for each uplink and fails again at its write: still refused.
        for (var i = 3; i < 6; i++)
        {
            Assert.Equal(UplinkStatus.Unavailable, (await Post(engine, device, i)).Status);
        }

        failing.Failing = false;
        for (var i = 6; i < 26; i++)
        {
            var result = await Post(engine, device, i);
            Assert.True(result.IsOk, result.Reason);
        }
        Assert.Null(engine.StorageFailure);
        var live = engine.Telemetry.Query(device.Id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false).Select(p => p.Ts).ToList();
        Assert.Equal([1001L, .. Enumerable.Range(1006, 20).Select(ts => (long)ts)], live);
        await engine.AbandonAsync(); // kill -9

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(device.Id, reopened.DeviceApi.Authenticate(token)?.Id);
        var recovered = reopened.Telemetry.Query(device.Id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false).Select(p => p.Ts);
        Assert.Equal(live, recovered);
    }

    private static async Task<UplinkResult> Post(PerfEngine engine, Domain.Device device, int i) =>
        await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{1000 + i},\"values\":{{\"v\":{i}}}}}"));

    /// <summary>Forwards to the log's device; while <see cref="Failing"/>, completes every write with EIO and writes nothing.</summary>
    private sealed class FailingDevice(IDevice inner) : IDevice
    {
        public volatile bool Failing;

        public uint SectorSize => inner.SectorSize;
        public string FileName => inner.FileName;
        public long Capacity => inner.Capacity;
        public long SegmentSize => inner.SegmentSize;
        public int StartSegment => inner.StartSegment;
        public int EndSegment => inner.EndSegment;

        public int ThrottleLimit
        {
            get => inner.ThrottleLimit;
            set => inner.ThrottleLimit = value;
        }

        public void Initialize(long segmentSize, LightEpoch? epoch = null, bool omitSegmentIdFromFilename = false) =>
            inner.Initialize(segmentSize, epoch, omitSegmentIdFromFilename);

        public bool TryComplete() => inner.TryComplete();
        public bool Throttle() => inner.Throttle();

        public void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
        {
            if (Failing)
            {
                ThreadPool.UnsafeQueueUserWorkItem(_ => callback(5, 0, context), null);
                return;
            }
            inner.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
        }

        public void WriteAsync(IntPtr sourceAddress, ulong destinationAddress, uint numBytesToWrite, DeviceIOCompletionCallback callback, object context)
        {
            if (Failing)
            {
                ThreadPool.UnsafeQueueUserWorkItem(_ => callback(5, 0, context), null);
                return;
            }
            inner.WriteAsync(sourceAddress, destinationAddress, numBytesToWrite, callback, context);
        }

        public void ReadAsync(int segmentId, ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
            inner.ReadAsync(segmentId, sourceAddress, destinationAddress, readLength, callback, context);

        public void ReadAsync(ulong sourceAddress, IntPtr destinationAddress, uint readLength, DeviceIOCompletionCallback callback, object context) =>
            inner.ReadAsync(sourceAddress, destinationAddress, readLength, callback, context);

        public long GetFileSize(int segment) => inner.GetFileSize(segment);
        public void Reset() => inner.Reset();
        public void TruncateUntilAddressAsync(long toAddress, AsyncCallback callback, IAsyncResult result) => inner.TruncateUntilAddressAsync(toAddress, callback, result);
        public void TruncateUntilAddress(long toAddress) => inner.TruncateUntilAddress(toAddress);
        public void TruncateUntilSegmentAsync(int toSegment, AsyncCallback callback, IAsyncResult result) => inner.TruncateUntilSegmentAsync(toSegment, callback, result);
        public void TruncateUntilSegment(int toSegment) => inner.TruncateUntilSegment(toSegment);
        public void RemoveSegmentAsync(int segment, AsyncCallback callback, IAsyncResult result) => inner.RemoveSegmentAsync(segment, callback, result);
        public void RemoveSegment(int segment) => inner.RemoveSegment(segment);
        public void Dispose() => inner.Dispose();
    }
}
