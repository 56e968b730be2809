using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

public class TelemetryTests
{
    private static async Task<(PerfEngine Engine, Guid Id)> SeedAsync(TempDir dir)
    {
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        // ts 0..9 -> values 0..9 (long); ts 10..19 -> doubles 10.5..19.5
        var entries = Enumerable.Range(0, 10).Select(i => new TsKvEntry(i * 100, new KvEntry("t", (long)i)))
            .Concat(Enumerable.Range(10, 10).Select(i => new TsKvEntry(i * 100, new KvEntry("t", i + 0.5))))
            .ToList();
        Assert.True(await engine.Telemetry.SaveAsync(device.Id, entries));
        return (engine, device.Id);
    }

    [Fact]
    public async Task Query_Raw_HonoursRangeLimitAndOrder()
    {
        using var dir = new TempDir();
        var (engine, id) = await SeedAsync(dir);
        await using var _ = engine;
        var asc = engine.Telemetry.Query(id, "t", 200, 500, 0, 100, Aggregation.None, false);
        Assert.Equal([200L, 300, 400], asc.Select(e => e.Ts));
        var desc = engine.Telemetry.Query(id, "t", 0, 2000, 0, 2, Aggregation.None, true);
        Assert.Equal([1900L, 1800], desc.Select(e => e.Ts));
        Assert.Empty(engine.Telemetry.Query(id, "missing", 0, 2000, 0, 2, Aggregation.None, true));
    }

    [Theory]
    [InlineData(Aggregation.Min, 0L, 5L)]
    [InlineData(Aggregation.Max, 4L, 9L)]
    [InlineData(Aggregation.Sum, 10L, 35L)]
    [InlineData(Aggregation.Count, 5L, 5L)]
    public async Task Query_AggregatesLongBuckets_StampedAtBucketMiddle(Aggregation agg, long first, long second)
    {
        using var dir = new TempDir();
        var (engine, id) = await SeedAsync(dir);
        await using var _ = engine;
        var result = engine.Telemetry.Query(id, "t", 0, 1000, 500, 100, agg, false);
        Assert.Equal([250L, 750], result.Select(e => e.Ts));
        Assert.Equal(DataType.Long, result[0].Entry.Type);
        Assert.Equal([first, second], result.Select(e => e.Entry.LongValue));
    }

    [Fact]
    public async Task Query_Avg_IsDouble_AndMixedBucketsBecomeDouble()
    {
        using var dir = new TempDir();
        var (engine, id) = await SeedAsync(dir);
        await using var _ = engine;
        var avg = engine.Telemetry.Query(id, "t", 0, 1000, 1000, 100, Aggregation.Avg, false);
        Assert.Equal(4.5, Assert.Single(avg).Entry.DoubleValue);
        var max = engine.Telemetry.Query(id, "t", 0, 2000, 2000, 100, Aggregation.Max, false);
        Assert.Equal(19.5, Assert.Single(max).Entry.DoubleValue);
        Assert.Equal(1000, max[0].Ts);
        var empty = engine.Telemetry.Query(id, "t", 5000, 6000, 100, 100, Aggregation.Sum, false);
        Assert.Empty(empty);
        // As the reference's chunked aggregation: buckets oldest first, every one, whatever the order and the limit.
        var buckets = engine.Telemetry.Query(id, "t", 0, 2000, 500, 1, Aggregation.Count, true);
        Assert.Equal([250L, 750, 1250, 1750], buckets.Select(e => e.Ts));
    }

    [Fact]
    public async Task Query_MinAndMaxOfABucketWithNoNumber_AreItsLeastAndGreatestString()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        await engine.Telemetry.SaveAsync(device.Id,
        [
            new TsKvEntry(100, new KvEntry("s", "B2")), new TsKvEntry(200, new KvEntry("s", "A1")), new TsKvEntry(300, new KvEntry("s", "A2")),
            new TsKvEntry(1100, new KvEntry("s", "Z")), new TsKvEntry(1200, new KvEntry("s", 7L)),
        ]);

        // The reference's findStringMin/findStringMax when a bucket has no number; a number wins where there is one.
        var min = engine.Telemetry.Query(device.Id, "s", 0, 2000, 1000, 100, Aggregation.Min, false);
        Assert.Equal("A1", min[0].Entry.Text);
        Assert.Equal((DataType.Long, 7L), (min[1].Entry.Type, min[1].Entry.LongValue));
        var max = engine.Telemetry.Query(device.Id, "s", 0, 2000, 1000, 100, Aggregation.Max, false);
        Assert.Equal("B2", max[0].Entry.Text);
        Assert.Equal(7L, max[1].Entry.LongValue);
        Assert.Empty(engine.Telemetry.Query(device.Id, "s", 0, 1000, 1000, 100, Aggregation.Avg, false));
        Assert.Equal(3L, Assert.Single(engine.Telemetry.Query(device.Id, "s", 0, 1000, 1000, 100, Aggregation.Count, false)).Entry.LongValue);
    }

    [Fact]
    public async Task SameTimestamp_Overwrites_AndLatestKeepsNewestTs()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(200, new KvEntry("k", 1L))]);
        await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(100, new KvEntry("k", 2L))]);
        await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(200, new KvEntry("k", 3L))]);
        Assert.Equal([2L, 3], engine.Telemetry.Query(device.Id, "k", 0, 1000, 0, 10, Aggregation.None, false).Select(e => e.Entry.LongValue));
        Assert.Equal(3, engine.Telemetry.GetLatest(device.Id, ["k"])[0].Entry.LongValue);
    }

    [Fact]
    public async Task DeviceApi_PostTelemetry_RejectsBadAndOversizedPayloads_AndNotifiesSubscribers()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path, o => o.MaxPayloadSize = 64);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        var bad = await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"a\":"));
        Assert.Equal(UplinkStatus.BadPayload, bad.Status);
        Assert.False(string.IsNullOrEmpty(bad.Reason));
        var big = await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"a\":\"" + new string('x', 100) + "\"}"));
        Assert.Equal(UplinkStatus.TooLarge, big.Status);

        var received = new TaskCompletionSource<DeviceUpdate>(TaskCreationOptions.RunContinuationsAsynchronously);
        using (engine.Telemetry.Subscribe(device.Id, u => received.TrySetResult(u)))
        {
            Assert.True((await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json("{\"temp\":25}"))).IsOk);
            var update = await received.Task;
            Assert.Equal(DeviceUpdateKind.Telemetry, update.Kind);
            Assert.Equal("temp", Assert.Single(update.Entries).Entry.Key);
        }
    }

    [Fact]
    public async Task Delete_RemovesLatestAndOrHistory()
    {
        using var dir = new TempDir();
        var (engine, id) = await SeedAsync(dir);
        await using var _ = engine;
        await engine.Telemetry.DeleteAsync(id, ["t"], deleteLatest: true, deleteHistory: false);
        Assert.Empty(engine.Telemetry.GetLatest(id, ["t"]));
        Assert.Equal(20, engine.Telemetry.Query(id, "t", 0, 5000, 0, 0, Aggregation.None, false).Count);
        await engine.Telemetry.DeleteAsync(id, ["t"], deleteLatest: false, deleteHistory: true);
        Assert.Empty(engine.Telemetry.GetKeys(id));
    }

    [Fact]
    public async Task Query_ATinyIntervalOverAHugeRange_CostsOnlyItsPoints()
    {
        using var dir = new TempDir();
        var (engine, id) = await SeedAsync(dir);
        await using var _ = engine;
        // 1.8e12 one-millisecond buckets, 20 of them with a point: walked bucket by bucket, this took hours.
        var counts = engine.Telemetry.Query(id, "t", 0, 1_800_000_000_000, 1, 100, Aggregation.Count, false);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => i * 100L), counts.Select(e => e.Ts));
        Assert.All(counts, e => Assert.Equal(1L, e.Entry.LongValue));
        // No interval is no aggregation (the reference's rule): the raw points, by the limit.
        Assert.Equal([1900L, 1800], engine.Telemetry.Query(id, "t", long.MinValue, long.MaxValue, 0, 2, Aggregation.Count, true).Select(e => e.Ts));
        // The whole range of timestamps in one interval: one bucket.
        Assert.Equal(20L, Assert.Single(engine.Telemetry.Query(id, "t", long.MinValue, long.MaxValue, long.MaxValue, 100, Aggregation.Count, false)).Entry.LongValue);
    }

    [Fact]
    public async Task DeleteARange_TakesTheLatestValueOnlyWhenItIsInTheRange_OrRewritesIt_AndReplays()
    {
        using var dir = new TempDir();
        Guid id;
        {
            var (engine, seeded) = await SeedAsync(dir);
            await using var _ = engine;
            id = seeded;
            await engine.Telemetry.DeleteAsync(id, ["t"], deleteLatest: true, deleteHistory: true, 0, 1500);
            Assert.Equal(1900, Assert.Single(engine.Telemetry.GetLatest(id, ["t"])).Ts); // outside the range: kept
            await engine.Telemetry.DeleteAsync(id, ["t"], deleteLatest: true, deleteHistory: true, 1800, 2000, rewriteLatest: true);
            var rewritten = Assert.Single(engine.Telemetry.GetLatest(id, ["t"]));
            Assert.Equal(1700, rewritten.Ts);
            Assert.Equal(17.5, rewritten.Entry.DoubleValue);
        }

        await using (var reopened = await Engines.OpenAsync(dir.Path))
        {
            Assert.Equal(1700, Assert.Single(reopened.Telemetry.GetLatest(id, ["t"])).Ts);
            Assert.Equal([1500L, 1600, 1700], reopened.Telemetry.Query(id, "t", 0, 5000, 0, 0, Aggregation.None, false).Select(e => e.Ts));
            await reopened.Telemetry.DeleteAsync(id, ["t"], deleteLatest: true, deleteHistory: true, 1600, 1800);
            Assert.Empty(reopened.Telemetry.GetLatest(id, ["t"]));
        }
    }

    [Fact]
    public async Task Retention_TrimsHistoryOlderThanWindow_AtOpen()
    {
        using var dir = new TempDir();
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        Guid id;
        await using (var engine = await Engines.OpenAsync(dir.Path))
        {
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            id = device.Id;
            await engine.Telemetry.SaveAsync(id, [new TsKvEntry(now - 3 * 86_400_000L, new KvEntry("k", 1L)), new TsKvEntry(now, new KvEntry("k", 2L))]);
        }
        await using var reopened = await Engines.OpenAsync(dir.Path, o => o.TelemetryRetentionDays = 1);
        var history = reopened.Telemetry.Query(id, "k", 0, long.MaxValue, 0, 0, Aggregation.None, false);
        Assert.Equal([2L], history.Select(h => h.Entry.LongValue));
    }
}
