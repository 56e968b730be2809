using Perf.Core.Domain;
using Perf.Core.Internal;
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
    public async Task ADataDirectory_IsOneEnginesAtATime_AndFreeAgainOnceItCloses()
    {
        // Two servers on one directory wrote one log from two places: acknowledged data was lost, then the
        // directory no longer opened. The second is refused, naming the directory.
        using var dir = new TempDir();
        var first = await Engines.OpenAsync(dir.Path);
        var refused = await Assert.ThrowsAsync<IOException>(() => Engines.OpenAsync(dir.Path));
        Assert.Contains("in use by another process", refused.Message, StringComparison.Ordinal);
        Assert.Contains(Path.GetFullPath(dir.Path), refused.Message, StringComparison.Ordinal);
        Assert.True(first.IsReady);

        await first.DisposeAsync();
        await using var second = await Engines.OpenAsync(dir.Path);
        Assert.True(second.IsReady);
    }

    [Fact]
    public async Task ALogCutAtACheckpointTheStoreNoLongerHas_IsRefused_NotServedAsAFreshInstall()
    {
        // kv/ lost (a partial restore): started anyway, the server came up empty with the default accounts again.
        using var dir = new TempDir();
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            for (var i = 0; i < 3; i++)
            {
                Assert.True(await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(i + 1, new KvEntry("v", (long)i))]));
                await engine.CheckpointAsync();
            }
        }

        Directory.Delete(Path.Combine(dir.Path, "kv"), recursive: true);
        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => Engines.OpenAsync(dir.Path));
        Assert.Contains("kv/ is missing or damaged", refused.Message, StringComparison.Ordinal);
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
        await engine.AbandonAsync(); // kill -9: no dispose, no checkpoint, no flush

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(device.Id, reopened.DeviceApi.Authenticate(token)?.Id);
        Assert.Equal(second.Value!.Id, reopened.DeviceApi.Authenticate("tok-2"u8)?.Id);
        var history = reopened.Telemetry.Query(device.Id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false);
        Assert.Equal(acknowledged.Order(), history.Select(h => h.Ts));
    }

    [Fact]
    public async Task TelemetryOnlyCheckpoint_RetainsRegistryAndAttributes_AndEveryEntityChangeIsStillRecovered()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, first, _) = await Engines.CreateDeviceAsync(engine);
        var devices = new List<Guid> { first.Id };
        for (var i = 0; i < 20; i++)
        {
            var created = await engine.Registry.CreateDeviceAsync(tenant, $"fleet-{i}", accessToken: $"fleet-token-{i}");
            Assert.True(created.IsOk);
            devices.Add(created.Value!.Id);
            Assert.True(await engine.Attributes.SaveAsync(created.Value.Id, AttributeScope.Server, [new KvEntry("rev", (long)i)]));
        }
        await engine.CheckpointAsync();
        var whole = engine.State.Rewritten;
        Assert.True(whole > 40, $"the first checkpoint writes everything: {whole}");

        // Telemetry and an RPC only: nothing that can change an entity or an attribute, so neither is rewritten.
        foreach (var id in devices)
        {
            Assert.True(await engine.Telemetry.SaveAsync(id, [new TsKvEntry(5_000, new KvEntry("t", 1.5))]));
        }
        await engine.CheckpointAsync();
        // 21 devices and 20 attributes (and the tenant and users) retained; telemetry writes its latest values.
        Assert.True(engine.State.RetainedCount >= 21 + 20, $"retained {engine.State.RetainedCount}");
        Assert.True(engine.State.Rewritten <= 2 * devices.Count, $"only telemetry (latest and history) is rewritten: {engine.State.Rewritten}");

        // A device created, one deleted and an attribute changed: the next snapshot writes both parts whole again.
        var late = await engine.Registry.CreateDeviceAsync(tenant, "late", accessToken: "late-token");
        Assert.True(late.IsOk);
        Assert.True((await engine.Registry.DeleteDeviceAsync(devices[5])).IsOk);
        Assert.True(await engine.Attributes.SaveAsync(devices[1], AttributeScope.Server, [new KvEntry("rev", 100L)]));
        await engine.CheckpointAsync();
        Assert.True(engine.State.Rewritten >= devices.Count + 19, $"rewritten {engine.State.Rewritten}");
        Assert.True(engine.State.RetainedCount <= devices.Count, $"only telemetry history is retained: {engine.State.RetainedCount}");

        // Telemetry only again (retained), then a crash: the snapshot plus the log hold every change.
        Assert.True(await engine.Telemetry.SaveAsync(late.Value!.Id, [new TsKvEntry(6_000, new KvEntry("t", 2.5))]));
        await engine.CheckpointAsync();
        Assert.True(engine.State.RetainedCount >= 21 + 19, $"retained {engine.State.RetainedCount}");
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(late.Value.Id, reopened.DeviceApi.Authenticate("late-token"u8)?.Id);
        Assert.Null(reopened.DeviceApi.Authenticate("fleet-token-4"u8));
        Assert.Null(reopened.Registry.GetDevice(devices[5]));
        Assert.Equal(devices[20], reopened.DeviceApi.Authenticate("fleet-token-19"u8)?.Id);
        Assert.True(reopened.Attributes.TryGet(devices[1], AttributeScope.Server, "rev", out var rev));
        Assert.Equal(100L, rev.Entry.LongValue);
        Assert.True(reopened.Attributes.TryGet(devices[20], AttributeScope.Server, "rev", out var last));
        Assert.Equal(19L, last.Entry.LongValue);
        Assert.False(reopened.Attributes.TryGet(devices[5], AttributeScope.Server, "rev", out _));
        Assert.Equal(2.5, reopened.Telemetry.GetLatest(late.Value.Id, ["t"]).Single().Entry.DoubleValue);
        Assert.Equal(1.5, reopened.Telemetry.GetLatest(devices[20], ["t"]).Single().Entry.DoubleValue);
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
        Assert.False(File.Exists(Path.Combine(dir.Path, "snapshot.bin")));
        Assert.True(Directory.EnumerateFiles(Path.Combine(dir.Path, "kv"), "*", SearchOption.AllDirectories).Any());
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
    public async Task BackgroundCheckpoints_WhileWritesContinue_ThenCrash_LoseNothingAcknowledged()
    {
        using var dir = new TempDir();
        // A 16 KiB threshold: automatic checkpoints keep starting (and persisting off the commit loop) while
        // concurrent writers go on; the crash comes with one possibly still persisting.
        var engine = await Engines.OpenAsync(dir.Path, o => o.CheckpointLogBytes = 16 * 1024);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var acknowledged = new System.Collections.Concurrent.ConcurrentBag<long>();
        await Parallel.ForAsync(0, 8, async (writer, _) =>
        {
            for (var i = 0; i < 250; i++)
            {
                var ts = 1_000_000 + (writer * 1_000) + i;
                var result = await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{ts},\"values\":{{\"v\":{i},\"s\":\"w{writer}-{i}\"}}}}"));
                Assert.True(result.IsOk, result.Reason);
                acknowledged.Add(ts);
            }
        });
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        var history = reopened.Telemetry.Query(device.Id, "s", 0, long.MaxValue, 0, 0, Aggregation.None, false);
        Assert.Equal(acknowledged.Order(), history.Select(h => h.Ts));
        Assert.Equal(2_000, reopened.Telemetry.Query(device.Id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false).Count);
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

    [Fact]
    public async Task StateComesFromFasterKv_AfterCheckpointAndLogTruncation()
    {
        using var dir = new TempDir();
        Guid deviceId;
        string token;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (_, device, t) = await Engines.CreateDeviceAsync(engine);
            deviceId = device.Id;
            token = t;
            Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"ts\":1000,\"values\":{\"temp\":21.5}}"))).IsOk);
            Assert.True(await engine.Attributes.SaveAsync(deviceId, AttributeScope.Server, [new KvEntry("mode", "eco")]));
            Assert.True(await engine.Attributes.SaveAsync(deviceId, AttributeScope.Shared, [new KvEntry("limit", 5L)]));
            Assert.True((await engine.DeviceApi.PostAttributesAsync(device, Engines.Json("{\"fw\":\"1.0\"}"))).IsOk);
            await engine.CheckpointAsync();
            // tenant, device, 3 attributes, latest + 1 history chunk
            Assert.Equal(7, engine.State.Count);
            await engine.AbandonAsync(); // nothing after the checkpoint: the log tail is empty
        }

        Assert.False(File.Exists(Path.Combine(dir.Path, "snapshot.bin")));
        await using (var reopened = await Engines.OpenAsync(dir.Path))
        {
            Assert.Equal(7, reopened.RecordsLoadedFromState);
            Assert.Equal(deviceId, reopened.DeviceApi.Authenticate(token)?.Id);
            Assert.Equal(21.5, reopened.Telemetry.GetLatest(deviceId, ["temp"])[0].Entry.DoubleValue);
            Assert.Single(reopened.Telemetry.Query(deviceId, "temp", 0, 2000, 0, 100, Aggregation.None, false));
            Assert.True(reopened.Attributes.TryGet(deviceId, AttributeScope.Server, "mode", out var mode));
            Assert.Equal("eco", mode.Entry.Text);
            Assert.True(reopened.Attributes.TryGet(deviceId, AttributeScope.Shared, "limit", out var limit));
            Assert.Equal(5, limit.Entry.LongValue);
            Assert.True(reopened.Attributes.TryGet(deviceId, AttributeScope.Client, "fw", out var fw));
            Assert.True(fw.LastUpdateTs > 0);
        }
    }

    [Fact]
    public async Task CrashAfterCheckpoint_WithMoreWrites_RecoversKvPlusLogTail()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, device, token) = await Engines.CreateDeviceAsync(engine);
        Assert.True(await engine.Attributes.SaveAsync(device.Id, AttributeScope.Shared, [new KvEntry("a", 1L)]));
        await engine.CheckpointAsync();
        Assert.True(await engine.Attributes.SaveAsync(device.Id, AttributeScope.Shared, [new KvEntry("a", 2L), new KvEntry("b", "x")]));
        var second = await engine.Registry.CreateDeviceAsync(tenant, "dev-2", accessToken: "tok-2");
        Assert.True(second.IsOk);
        await engine.CheckpointAsync();
        Assert.True(await engine.Telemetry.SaveAsync(second.Value!.Id, [new TsKvEntry(7, new KvEntry("t", 7L))]));
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.True(reopened.RecordsLoadedFromState > 0);
        Assert.Equal(device.Id, reopened.DeviceApi.Authenticate(token)?.Id);
        Assert.Equal(second.Value.Id, reopened.DeviceApi.Authenticate("tok-2"u8)?.Id);
        Assert.True(reopened.Attributes.TryGet(device.Id, AttributeScope.Shared, "a", out var a));
        Assert.Equal(2, a.Entry.LongValue);
        Assert.True(reopened.Attributes.TryGet(device.Id, AttributeScope.Shared, "b", out _));
        Assert.Equal(7, reopened.Telemetry.GetLatest(second.Value.Id, ["t"])[0].Entry.LongValue);
    }

    [Fact]
    public async Task DeletesAfterCheckpoint_StayDeleted_InTheKvAcrossCheckpointsAndCrashes()
    {
        using var dir = new TempDir();
        Guid keptId, goneId;
        string goneToken;
        {
            var engine = await Engines.OpenAsync(dir.Path);
            var (tenant, kept, _) = await Engines.CreateDeviceAsync(engine);
            var gone = await engine.Registry.CreateDeviceAsync(tenant, "gone", accessToken: "tok-gone");
            keptId = kept.Id;
            goneId = gone.Value!.Id;
            goneToken = "tok-gone";
            Assert.True(await engine.Attributes.SaveAsync(keptId, AttributeScope.Server, [new KvEntry("x", 1L), new KvEntry("y", 2L)]));
            Assert.True(await engine.Telemetry.SaveAsync(keptId, [new TsKvEntry(1, new KvEntry("t", 1L))]));
            Assert.True(await engine.Attributes.SaveAsync(goneId, AttributeScope.Server, [new KvEntry("z", 3L)]));
            await engine.CheckpointAsync();
            var before = engine.State.Count;

            Assert.True((await engine.Registry.DeleteDeviceAsync(goneId)).IsOk);
            await engine.Attributes.DeleteAsync(keptId, AttributeScope.Server, ["x"]);
            await engine.Telemetry.DeleteAsync(keptId, ["t"], deleteLatest: true, deleteHistory: true, 0, 100);
            await engine.CheckpointAsync();
            // gone device + its attribute, attribute x, latest t, history chunk of t
            Assert.Equal(before - 5, engine.State.Count);
            await engine.AbandonAsync();
        }

        // The deletes are in the FasterKV checkpoint itself (the log before it was truncated).
        {
            var engine = await Engines.OpenAsync(dir.Path);
            Assert.Null(engine.Registry.GetDevice(goneId));
            Assert.Null(engine.DeviceApi.Authenticate(goneToken));
            Assert.False(engine.Attributes.TryGet(goneId, AttributeScope.Server, "z", out _));
            Assert.False(engine.Attributes.TryGet(keptId, AttributeScope.Server, "x", out _));
            Assert.True(engine.Attributes.TryGet(keptId, AttributeScope.Server, "y", out _));
            Assert.Empty(engine.Telemetry.GetLatest(keptId, ["t"]));
            Assert.Empty(engine.Telemetry.Query(keptId, "t", 0, 100, 0, 0, Aggregation.None, false));

            // Delete after a checkpoint, then crash before the next one: replayed from the log tail.
            await engine.Attributes.DeleteAsync(keptId, AttributeScope.Server, ["y"]);
            await engine.AbandonAsync();
        }

        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.False(engine.Attributes.TryGet(keptId, AttributeScope.Server, "y", out _));
            Assert.NotNull(engine.Registry.GetDevice(keptId));
            Assert.Null(engine.Registry.GetDevice(goneId));
        }
    }

    [Fact]
    public async Task RecoveredKv_TakesUpdatesAndDeletes_AcrossSeveralRestarts()
    {
        using var dir = new TempDir();
        Guid id;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            id = device.Id;
            Assert.True(await engine.Attributes.SaveAsync(id, AttributeScope.Server, [new KvEntry("a", 1L), new KvEntry("b", 1L), new KvEntry("c", 1L)]));
        }
        for (var round = 2; round <= 4; round++)
        {
            await using var engine = await Engines.OpenAsync(dir.Path);
            Assert.True(engine.RecordsLoadedFromState > 0);
            Assert.True(engine.Attributes.TryGet(id, AttributeScope.Server, "a", out var a));
            Assert.Equal(round - 1, a.Entry.LongValue);
            Assert.True(await engine.Attributes.SaveAsync(id, AttributeScope.Server, [new KvEntry("a", (long)round)]));
            if (round == 3)
            {
                await engine.Attributes.DeleteAsync(id, AttributeScope.Server, ["b"]);
            }
            await engine.CheckpointAsync();
            Assert.Equal(round >= 3 ? 4 : 5, engine.State.Count);
        }
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            Assert.Equal(4, engine.RecordsLoadedFromState); // tenant, device, a, c: no stale versions, no resurrected b
            Assert.True(engine.Attributes.TryGet(id, AttributeScope.Server, "a", out var a));
            Assert.Equal(4, a.Entry.LongValue);
            Assert.False(engine.Attributes.TryGet(id, AttributeScope.Server, "b", out _));
            Assert.True(engine.Attributes.TryGet(id, AttributeScope.Server, "c", out _));
        }
    }
}

public class UplinkLogFormatTests
{
    [Fact]
    public async Task NewLog_IsWrittenWithFastCommits_AndItsRecordsSurviveACrash()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, token) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"ts\":5,\"values\":{\"v\":1}}"))).IsOk);
        await engine.AbandonAsync();

        Assert.True(File.Exists(Path.Combine(dir.Path, "log", UplinkLog.FastCommitMarker)));
        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(device.Id, reopened.DeviceApi.Authenticate(token)?.Id);
        Assert.Single(reopened.Telemetry.Query(device.Id, "v", 0, 10, 0, 0, Aggregation.None, false));
    }

    [Fact]
    public async Task LogWrittenBeforeFastCommits_KeepsItsFormat_AcrossCrashesAndReopens()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path, o => o.FastCommitForNewLog = false);
        var (tenant, device, token) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"ts\":5,\"values\":{\"v\":1}}"))).IsOk);
        await engine.AbandonAsync();
        Assert.False(File.Exists(Path.Combine(dir.Path, "log", UplinkLog.FastCommitMarker)));

        // Default options now: the existing log has no marker, so it is read (and extended) as it was written.
        engine = await Engines.OpenAsync(dir.Path);
        Assert.Equal(device.Id, engine.DeviceApi.Authenticate(token)?.Id);
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"ts\":6,\"values\":{\"v\":2}}"))).IsOk);
        Assert.True((await engine.Registry.CreateDeviceAsync(tenant, "dev-2", accessToken: "tok-2")).IsOk);
        await engine.AbandonAsync();
        Assert.False(File.Exists(Path.Combine(dir.Path, "log", UplinkLog.FastCommitMarker)));

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.NotNull(reopened.DeviceApi.Authenticate("tok-2"u8));
        var history = reopened.Telemetry.Query(device.Id, "v", 0, 10, 0, 0, Aggregation.None, false);
        Assert.Equal([5L, 6L], history.Select(h => h.Ts));
    }

    [Fact]
    public async Task OverlappingCommits_ApplyInLogOrder_LastWriteWinsLiveAndAfterCrash()
    {
        using var dir = new TempDir();
        // Interval 0: a commit is issued as soon as anything is queued, so 2,000 writes to one attribute arriving
        // without waiting are spread over many commits, each applied in log order.
        var engine = await Engines.OpenAsync(dir.Path, o => o.CommitIntervalMs = 0);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var writes = new List<Task<bool>>();
        for (var i = 0; i < 2_000; i++)
        {
            writes.Add(engine.Attributes.SaveAsync(device.Id, AttributeScope.Server, [new KvEntry("n", (long)i)]));
        }
        Assert.All(await Task.WhenAll(writes), Assert.True);
        Assert.True(engine.Attributes.TryGet(device.Id, AttributeScope.Server, "n", out var live));
        Assert.Equal(1_999, live.Entry.LongValue);
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.True(reopened.Attributes.TryGet(device.Id, AttributeScope.Server, "n", out var recovered));
        Assert.Equal(1_999, recovered.Entry.LongValue);
    }
}

public class SparseCommitMetadataTests
{
    private sealed class Recording : FASTER.core.ILogCommitManager
    {
        public readonly List<(long Begin, long Until, long Num)> Commits = [];
        public readonly List<bool> OnPoolThread = [];
        public Exception? Fail;

        public void Commit(long beginAddress, long untilAddress, byte[] commitMetadata, long commitNum, bool forceWriteMetadata)
        {
            OnPoolThread.Add(Thread.CurrentThread.IsThreadPoolThread);
            if (Fail is { } fail)
            {
                throw fail;
            }
            Commits.Add((beginAddress, untilAddress, commitNum));
        }

        public byte[] GetCommitMetadata(long commitNum) => [];
        public IEnumerable<long> ListCommits() => Commits.Select(c => c.Num);
        public void RemoveCommit(long commitNum) { }
        public void RemoveAllCommits() => Commits.Clear();
        public void OnRecovery(long commitNum) { }
        public void Dispose() { }
    }

    [Fact]
    public void WritesEveryNthCommit_AndEveryCommitThatMovesTheBeginAddress_AndForcedOnes()
    {
        var inner = new Recording();
        var sparse = new SparseCommitMetadata(inner, every: 10);
        for (var n = 1; n <= 25; n++)
        {
            sparse.Commit(64, n * 100, [], n, forceWriteMetadata: false);
        }
        // The first (no begin written yet), then every 10th after it.
        Assert.Equal([1L, 11L, 21L], inner.Commits.Select(c => c.Num));

        sparse.Commit(5_000, 2_600, [], 26, forceWriteMetadata: false); // truncated: begin moved
        sparse.Commit(5_000, 2_700, [], 27, forceWriteMetadata: false);
        sparse.Commit(5_000, 2_800, [], 28, forceWriteMetadata: true);
        Assert.Equal([1L, 11L, 21L, 26L, 28L], inner.Commits.Select(c => c.Num));
        Assert.Equal(5, sparse.Written);
        Assert.Equal(23, sparse.Skipped);
    }

    /// <summary>A skipped commit (nearly every round's) allocates nothing: no closure for the write it does not make.</summary>
    [Fact]
    public void SkippedCommits_AllocateNothing()
    {
        var inner = new Recording();
        var sparse = new SparseCommitMetadata(inner, every: 1_000_000);
        byte[] metadata = [1, 2, 3];
        sparse.Commit(64, 100, metadata, 1, forceWriteMetadata: false);
        for (var n = 2; n <= 100; n++)
        {
            sparse.Commit(64, n * 100, metadata, n, forceWriteMetadata: false);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var n = 101; n <= 10_100; n++)
        {
            sparse.Commit(64, n * 100, metadata, n, forceWriteMetadata: false);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal(1, sparse.Written);
    }

    /// <summary>
    /// FASTER calls the commit manager from a pool thread, and its device manager blocks the calling thread on a write
    /// it queued to that thread's local queue: every write here must run on a thread of its own.
    /// </summary>
    [Fact]
    public async Task EveryWrite_RunsOffThePool_EvenWhenCalledFromIt_AndItsFailureReachesTheCaller()
    {
        var inner = new Recording();
        var sparse = new SparseCommitMetadata(inner, every: 2);
        await Task.Run(() =>
        {
            Assert.True(Thread.CurrentThread.IsThreadPoolThread);
            for (var n = 1; n <= 6; n++)
            {
                sparse.Commit(64, n * 100, [], n, forceWriteMetadata: false);
            }
            sparse.Commit(640, 700, [], 7, forceWriteMetadata: false);
        });
        Assert.Equal([1L, 3L, 5L, 7L], inner.Commits.Select(c => c.Num));
        Assert.Equal(4, inner.OnPoolThread.Count);
        Assert.All(inner.OnPoolThread, Assert.False);

        inner.Fail = new IOException("disk full");
        var thrown = await Assert.ThrowsAsync<IOException>(() => Task.Run(() => sparse.Commit(6_400, 800, [], 8, forceWriteMetadata: true)));
        Assert.Same(inner.Fail, thrown);
    }
}

public class OffPoolCheckpointManagerTests
{
    /// <summary>Records, for each metadata file write, whether it was issued from a pool thread.</summary>
    private sealed class RecordingFactory(FASTER.core.INamedDeviceFactory inner) : FASTER.core.INamedDeviceFactory
    {
        public System.Collections.Concurrent.ConcurrentQueue<bool> WritesOnPoolThread { get; } = new();

        public void Initialize(string baseName) => inner.Initialize(baseName);

        public FASTER.core.IDevice Get(FASTER.core.FileDescriptor fileInfo) => new Device(inner.Get(fileInfo), WritesOnPoolThread);

        public void Delete(FASTER.core.FileDescriptor fileInfo) => inner.Delete(fileInfo);

        public IEnumerable<FASTER.core.FileDescriptor> ListContents(string path) => inner.ListContents(path);

        private sealed class Device(FASTER.core.IDevice device, System.Collections.Concurrent.ConcurrentQueue<bool> writes) : ForwardingDevice(device)
        {
            public override void WriteAsync(IntPtr sourceAddress, int segmentId, ulong destinationAddress, uint numBytesToWrite, FASTER.core.DeviceIOCompletionCallback callback, object context)
            {
                writes.Enqueue(Thread.CurrentThread.IsThreadPoolThread);
                base.WriteAsync(sourceAddress, segmentId, destinationAddress, numBytesToWrite, callback, context);
            }
        }
    }

    /// <summary>
    /// FASTER's checkpoint state machine calls the manager from a pool thread, and the base manager blocks the calling
    /// thread until its write, itself a pool work item, completes (see <see cref="OffPool"/>): every metadata write must
    /// be issued off the pool, and what was written must read back.
    /// </summary>
    [Fact]
    public async Task LogCheckpointMetadata_IsWrittenOffThePool_EvenWhenCalledFromIt_AndReadsBack()
    {
        using var dir = new TempDir();
        var factory = new RecordingFactory(new FASTER.core.LocalStorageNamedDeviceFactory());
        using var manager = new OffPoolCheckpointManager(factory, new FASTER.core.DefaultCheckpointNamingScheme(Path.Combine(dir.Path, "checkpoints")));
        var token = Guid.NewGuid();
        byte[] metadata = [.. Enumerable.Range(0, 300).Select(i => (byte)i)];

        await Task.Run(() =>
        {
            Assert.True(Thread.CurrentThread.IsThreadPoolThread);
            manager.CommitLogCheckpoint(token, metadata);
        });
        Assert.NotEmpty(factory.WritesOnPoolThread);
        Assert.All(factory.WritesOnPoolThread, Assert.False);

        var read = await Task.Run(() => manager.GetLogCheckpointMetadata(token, null!, false, -1));
        Assert.Equal(metadata, read);
        Assert.Equal([token], manager.GetLogCheckpointTokens());
    }

    [Fact]
    public async Task AFailure_OffThePool_ReachesTheCaller_WithItsOwnException()
    {
        var failure = new IOException("disk full");
        var thrown = await Assert.ThrowsAsync<IOException>(() => Task.Run(() => OffPool.Run(() => throw failure)));
        Assert.Same(failure, thrown);

        // Off the pool already: inline, on the caller's own thread.
        string? ranOn = null;
        var caller = new Thread(() => OffPool.Run(() => ranOn = Thread.CurrentThread.Name)) { Name = "caller" };
        caller.Start();
        caller.Join();
        Assert.Equal("caller", ranOn);
    }
}

public class IncrementalHistorySnapshotTests
{
    private static async Task PostAsync(PerfEngine engine, Device device, long ts, string value) =>
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{ts},\"values\":{{\"s\":\"{value}\"}}}}"))).IsOk);

    private static IReadOnlyList<TsKvEntry> History(PerfEngine engine, Guid id) =>
        engine.Telemetry.Query(id, "s", long.MinValue + 1, long.MaxValue, 0, 0, Aggregation.None, false);

    [Fact]
    public async Task ChunksRetainedAcrossCheckpoints_MatchLiveHistory_AfterInsertsDeletesTrimAndCrash()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var id = device.Id;

        // Many full snapshot chunks (TelemetryService.SnapshotChunk points each) and a partial one, then a checkpoint.
        var points = Enumerable.Range(0, 13_000).Select(i => new TsKvEntry((i * 10) + 1000, new KvEntry("s", $"v{i}"))).ToArray();
        Assert.True(await engine.Telemetry.SaveAsync(id, points));
        await engine.CheckpointAsync();

        // Appends only (chunks 0-2 retained), then a checkpoint with no change at all, then a crash.
        await PostAsync(engine, device, 500_000, "tail-1");
        await engine.CheckpointAsync();
        await engine.CheckpointAsync();
        await engine.AbandonAsync();
        engine = await Engines.OpenAsync(dir.Path);
        var afterAppends = History(engine, id);
        Assert.Equal(13_001, afterAppends.Count);
        Assert.Equal("tail-1", afterAppends[^1].Entry.Text);

        // An insert into chunk 1 shifts chunks 1.. (chunk 0 retained); a replace in chunk 2; a checkpoint.
        await PostAsync(engine, device, 1000 + (5_000 * 10) + 5, "inserted");
        await PostAsync(engine, device, 1000 + (9_000 * 10), "replaced");
        await engine.CheckpointAsync();
        // A range delete in chunk 0 and a retention-style trim shift everything; then a checkpoint and a crash.
        await engine.Telemetry.DeleteAsync(id, ["s"], deleteLatest: false, deleteHistory: true, 1000 + 100, 1000 + 200);
        await engine.CheckpointAsync();
        var live = History(engine, id);
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        var recovered = History(reopened, id);
        Assert.Equal(live.Select(p => (p.Ts, p.Entry.Text)), recovered.Select(p => (p.Ts, p.Entry.Text)));
        Assert.Equal(13_001 + 1 - 10, recovered.Count);
        Assert.Contains(recovered, p => p.Entry.Text == "inserted");
        Assert.Contains(recovered, p => p.Entry.Text == "replaced");
    }
}

public class BackgroundTelemetrySnapshotTests
{
    private static TsKvEntry Point(long ts, string key, string value) => new(ts, new KvEntry(key, value));

    /// <summary>Every series of every device: (device, key, latest, history) in a comparable form.</summary>
    private static List<string> Dump(PerfEngine engine, IEnumerable<Guid> devices)
    {
        var dump = new List<string>();
        foreach (var id in devices)
        {
            foreach (var key in engine.Telemetry.GetKeys(id).Order(StringComparer.Ordinal))
            {
                var latest = engine.Telemetry.GetLatest(id, [key]);
                var history = engine.Telemetry.Query(id, key, long.MinValue + 1, long.MaxValue, 0, 0, Aggregation.None, false);
                dump.Add($"{id:N}/{key} latest={string.Join(",", latest.Select(l => $"{l.Ts}:{l.Entry.Text}"))} " +
                    $"history={string.Join(",", history.Select(h => $"{h.Ts}:{h.Entry.Text}"))}");
            }
        }
        return dump;
    }

    /// <summary>An engine that checkpoints only when asked, or when a test lowers <see cref="CoreOptions.CheckpointLogBytes"/>, and a tenant.</summary>
    private static async Task<(PerfEngine Engine, CoreOptions Options, Guid Tenant)> OpenWithoutAutomaticCheckpointsAsync(string dir)
    {
        CoreOptions? options = null;
        var engine = await Engines.OpenAsync(dir, o =>
        {
            options = o;
            o.CheckpointLogBytes = long.MaxValue;
        });
        var tenant = (await engine.Registry.CreateTenantAsync("tenant")).Value!.Id;
        return (engine, options!, tenant);
    }

    [Fact]
    public async Task TheAutomaticCheckpointsTelemetrySnapshot_PausesBetweenSlicesOfWork_ARequestedOneDoesNot()
    {
        using var dir = new TempDir();
        var (engine, options, tenant) = await OpenWithoutAutomaticCheckpointsAsync(dir.Path);
        var device = (await engine.Registry.CreateDeviceAsync(tenant, "dev")).Value!.Id;
        Assert.True(await engine.Telemetry.SaveAsync(device, [.. Enumerable.Range(0, 6).Select(k => Point(1_000, $"k{k}", "v"))]));

        // Each series takes longer than a slice: the paced snapshot sleeps after each one.
        var snapshotted = 0;
        var allSix = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        engine.Telemetry.SeriesSnapshotted = () =>
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            while (System.Diagnostics.Stopwatch.GetElapsedTime(started) <= TelemetryService.PacedSlice)
            {
                Thread.SpinWait(100);
            }
            if (Interlocked.Increment(ref snapshotted) % 6 == 0)
            {
                allSix.TrySetResult();
            }
        };
        await engine.CheckpointAsync();
        Assert.Equal(6, snapshotted);
        Assert.Equal(0, engine.Telemetry.SnapshotPauses);

        allSix = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        options.CheckpointLogBytes = 1;
        Assert.True(await engine.Telemetry.SaveAsync(device, [Point(2_000, "k0", "trigger")]));
        await allSix.Task.WaitAsync(TimeSpan.FromSeconds(30));
        options.CheckpointLogBytes = long.MaxValue;
        await engine.CheckpointPersisting;
        Assert.Equal(12, snapshotted);
        Assert.Equal(6, engine.Telemetry.SnapshotPauses);
        engine.Telemetry.SeriesSnapshotted = null;
        await engine.DisposeAsync();
    }

    [Fact]
    public async Task WritesDuringTheBackgroundTelemetrySnapshot_AreAcknowledged_AndRecoveredExactlyAfterCrash()
    {
        using var dir = new TempDir();
        var (engine, options, tenant) = await OpenWithoutAutomaticCheckpointsAsync(dir.Path);
        var devices = new List<Guid>();
        for (var d = 0; d < 4; d++)
        {
            var device = await engine.Registry.CreateDeviceAsync(tenant, $"dev-{d}");
            devices.Add(device.Value!.Id);
            // Two keys; "a" spans several snapshot chunks so chunk retention is involved too.
            var points = Enumerable.Range(0, 1_300).Select(i => Point(1_000 + i, "a", $"a{d}-{i}"))
                .Append(Point(1_000, "b", $"b{d}")).ToArray();
            Assert.True(await engine.Telemetry.SaveAsync(device.Value.Id, points));
        }
        await engine.CheckpointAsync();

        // The next automatic checkpoint stops in the middle of its telemetry, off the commit loop.
        using var paused = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        var calls = 0;
        engine.Telemetry.SeriesSnapshotted = () =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                paused.Set();
                Assert.True(resume.Wait(TimeSpan.FromSeconds(60)));
            }
        };
        options.CheckpointLogBytes = 1;
        Assert.True(await engine.Telemetry.SaveAsync(devices[0], [Point(5_000, "a", "trigger")]));
        Assert.True(paused.Wait(TimeSpan.FromSeconds(30)), "the automatic checkpoint did not start");
        options.CheckpointLogBytes = long.MaxValue;

        // While it waits, the commit loop keeps acknowledging: appends, a same-ts replace, an out-of-order
        // insert, range deletes, a latest delete, a deleted device and a new one, on series it has already
        // written and on series it has not.
        foreach (var id in devices.Take(3))
        {
            Assert.True(await engine.Telemetry.SaveAsync(id, [Point(6_000, "a", "after"), Point(1_005, "a", "replaced"), Point(1_500, "b", "late-b")]));
            Assert.True(await engine.Telemetry.SaveAsync(id, [Point(999, "a", "before-all")]));
        }
        await engine.Telemetry.DeleteAsync(devices[1], ["a"], deleteLatest: false, deleteHistory: true, 1_100, 1_700);
        await engine.Telemetry.DeleteAsync(devices[2], ["b"], deleteLatest: true, deleteHistory: true);
        Assert.True((await engine.Registry.DeleteDeviceAsync(devices[3])).IsOk);
        var created = (await engine.Registry.CreateDeviceAsync(tenant, "dev-new")).Value!.Id;
        Assert.True(await engine.Telemetry.SaveAsync(created, [Point(7_000, "c", "new")]));
        devices.Add(created);

        resume.Set();
        await engine.CheckpointPersisting;
        Assert.True(calls > 1);
        engine.Telemetry.SeriesSnapshotted = null;
        var live = Dump(engine, devices);
        await engine.AbandonAsync();

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.True(reopened.RecordsLoadedFromState > 0);
        Assert.Equal(live, Dump(reopened, devices));
        Assert.Null(reopened.Registry.GetDevice(devices[3]));
        Assert.Empty(reopened.Telemetry.GetKeys(devices[3]));
        Assert.Contains(live, l => l.Contains("after", StringComparison.Ordinal));
    }

    [Fact]
    public async Task DeviceTelemetryPayloads_AreLoggedAsTheyArrived_AndReplayedAsParsedLive()
    {
        // The device API logs a telemetry payload as its bytes and parses it while the commit is on the disk: a payload
        // that does not parse is in the log too and must be skipped by replay, and entries without a ts keep the time
        // the payload arrived, not the time of the replay.
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var bad = await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"v\":1,\"w\":"));
        Assert.Equal(UplinkStatus.BadPayload, bad.Status);
        Assert.False(string.IsNullOrEmpty(bad.Reason));
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"v\":2}"))).IsOk);
        var split = Telemetry.SegmentedSequence.Split("{\"ts\":5000,\"values\":{\"s\":\"abcd\",\"n\":7}}"u8, 3);
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, split)).IsOk);
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{}"))).IsOk);

        var live = Dump(engine, device.Id);
        Assert.Equal(["n 5000 7", "s 5000 abcd", $"v {engine.Telemetry.GetLatest(device.Id, ["v"])[0].Ts} 2"], live);
        await engine.AbandonAsync(); // kill -9

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(live, Dump(reopened, device.Id));

        static string[] Dump(PerfEngine engine, Guid id) =>
        [
            .. engine.Telemetry.GetKeys(id).Order(StringComparer.Ordinal).SelectMany(key =>
                engine.Telemetry.Query(id, key, 0, long.MaxValue, 0, 0, Aggregation.None, false)
                    .Select(p => $"{key} {p.Ts} {p.Entry.ValueAsString()}")),
        ];
    }
}

public class ShutdownCheckpointBoundTests
{
    [Fact]
    public async Task Dispose_WhenTheDataDirectoryIsGone_StillCompletes_WithinItsCheckpointBound()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path, o => o.ShutdownCheckpointTimeout = TimeSpan.FromSeconds(2));
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"ts\":1000,\"values\":{\"t\":1}}"))).IsOk);

        // FASTER cannot create the checkpoint's files any more, and never completes that checkpoint.
        Directory.Delete(dir.Path, recursive: true);
        var dispose = engine.DisposeAsync().AsTask();
        var finished = await Task.WhenAny(dispose, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.Same(dispose, finished);
        await dispose;
        Assert.False(engine.IsReady);
    }
}
