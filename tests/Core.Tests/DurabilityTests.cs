using Perf.Core.Domain;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

public class DurabilityTests
{
    [Fact]
    public async Task EverythingWritten_IsBack_AfterDisposeAndReopen()
    {
        using var dir = new TempDir();
        Guid deviceId;
        string token;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.True(engine.IsReady);
            var (_, device, t) = await Engines.CreateDeviceAsync(engine);
            deviceId = device.Id;
            token = t;
            Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"ts\":1000,\"values\":{\"temp\":21.5,\"n\":3}}"))).IsOk);
            Assert.True((await engine.DeviceApi.PostAttributesAsync(device, Engines.Json("{\"fw\":\"1.0\"}"))).IsOk);
            Assert.True(await engine.Attributes.SaveAsync(deviceId, AttributeScope.Shared, [new KvEntry("mode", "eco")]));
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var device = engine.DeviceApi.Authenticate(token);
            Assert.NotNull(device);
            Assert.Equal(deviceId, device.Id);
            var latest = engine.Telemetry.GetLatest(deviceId, ["temp", "n"]);
            Assert.Equal(2, latest.Count);
            Assert.Equal(21.5, latest[0].Entry.DoubleValue);
            Assert.Equal(3, latest[1].Entry.LongValue);
            Assert.Single(engine.Telemetry.Query(deviceId, "temp", 0, 2000, 0, 100, Aggregation.None, false));
            Assert.True(engine.Attributes.TryGet(deviceId, AttributeScope.Client, "fw", out var fw));
            Assert.Equal("1.0", fw.Entry.Text);
            Assert.True(engine.Attributes.TryGet(deviceId, AttributeScope.Shared, "mode", out _));
        }
    }

    [Fact]
    public async Task AcknowledgedWrites_SurviveAbandonedEngine_WithoutDispose()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, device, token) = await Engines.CreateDeviceAsync(engine);
        var acknowledged = new List<long>();
        var writes = Enumerable.Range(0, 500).Select(async i =>
        {
            var result = await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{10_000 + i},\"values\":{{\"v\":{i}}}}}"));
            Assert.True(result.IsOk, result.Reason);
            lock (acknowledged)
            {
                acknowledged.Add(10_000 + i);
            }
        });
        await Task.WhenAll(writes);
        var second = await engine.Registry.CreateDeviceAsync(tenant, "dev-2", accessToken: "tok-2");
        Assert.True(second.IsOk);
        await engine.AbandonAsync(); // kill -9: no dispose, no snapshot, no flush

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(device.Id, reopened.DeviceApi.Authenticate(token)?.Id);
        Assert.Equal(second.Value!.Id, reopened.DeviceApi.Authenticate("tok-2"u8)?.Id);
        var history = reopened.Telemetry.Query(device.Id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false);
        Assert.Equal(acknowledged.Order(), history.Select(h => h.Ts));
    }

    [Fact]
    public async Task Checkpoint_ThenMoreWrites_ThenCrash_RecoversSnapshotPlusLogTail()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        for (var i = 0; i < 20; i++)
        {
            Assert.True(await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(i, new KvEntry("k", (long)i))]));
        }
        await engine.CheckpointAsync();
        Assert.True(File.Exists(Path.Combine(dir.Path, "snapshot.bin")));
        for (var i = 20; i < 30; i++)
        {
            Assert.True(await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(i, new KvEntry("k", (long)i))]));
        }
        await engine.Attributes.DeleteAsync(device.Id, AttributeScope.Client, ["none"]);
        await engine.Telemetry.DeleteAsync(device.Id, ["k"], deleteLatest: false, deleteHistory: true, 0, 5);
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        var history = reopened.Telemetry.Query(device.Id, "k", 0, 100, 0, 0, Aggregation.None, false);
        Assert.Equal(Enumerable.Range(5, 25).Select(i => (long)i), history.Select(h => h.Ts));
        Assert.Equal(29, reopened.Telemetry.GetLatest(device.Id, ["k"])[0].Entry.LongValue);
    }

    [Fact]
    public async Task SmallCheckpointThreshold_KeepsStateAcrossManyCheckpointsAndReopen()
    {
        using var dir = new TempDir();
        Guid id;
        await using (var engine = await Engines.OpenAsync(dir.Path, o => o.CheckpointLogBytes = 4096))
        {
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            id = device.Id;
            for (var i = 0; i < 300; i++)
            {
                Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{i},\"values\":{{\"a\":{i},\"s\":\"text-{i}\"}}}}"))).IsOk);
            }
        }
        await using var reopened = await Engines.OpenAsync(dir.Path, o => o.CheckpointLogBytes = 4096);
        Assert.Equal(300, reopened.Telemetry.Query(id, "s", 0, 1000, 0, 0, Aggregation.None, false).Count);
        Assert.Equal("text-299", reopened.Telemetry.GetLatest(id, ["s"])[0].Entry.Text);
    }

    [Fact]
    public async Task DeletedDevice_StaysDeleted_AfterCrash()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, device, token) = await Engines.CreateDeviceAsync(engine);
        await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(1, new KvEntry("x", 1L))]);
        Assert.True((await engine.Registry.DeleteDeviceAsync(device.Id)).IsOk);
        var again = await engine.Registry.CreateDeviceAsync(tenant, device.Name, accessToken: token);
        Assert.True(again.IsOk, again.Error);
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Null(reopened.Registry.GetDevice(device.Id));
        Assert.Equal(again.Value!.Id, reopened.DeviceApi.Authenticate(token)?.Id);
        Assert.Empty(reopened.Telemetry.GetLatest(device.Id));
    }
}
