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
}
