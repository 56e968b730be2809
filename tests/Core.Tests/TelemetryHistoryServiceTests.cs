using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

/// <summary>The native-memory history through <see cref="TelemetryService"/>: readers during writes, device delete, reopen.</summary>
public class TelemetryHistoryServiceTests
{
    [Fact]
    public async Task Query_DuringWrites_AlwaysSeesASortedPrefixOfTheWrittenPoints()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        const int Points = 20_000;

        using var stop = new CancellationTokenSource();
        var failures = 0;
        var reads = 0;
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var seen = engine.Telemetry.Query(device.Id, "s", 0, long.MaxValue, 0, 0, Aggregation.None, false);
                for (var i = 0; i < seen.Count; i++)
                {
                    // Points are written in order 0, 1, 2, ...: any consistent view is exactly 0..n-1.
                    if (seen[i].Ts != i || seen[i].Entry.Text != "value " + i)
                    {
                        Interlocked.Increment(ref failures);
                        return;
                    }
                }
                Interlocked.Increment(ref reads);
            }
        });

        for (var batch = 0; batch < Points; batch += 500)
        {
            var entries = Enumerable.Range(batch, 500).Select(i => new TsKvEntry(i, new KvEntry("s", "value " + i))).ToList();
            Assert.True(await engine.Telemetry.SaveAsync(device.Id, entries));
        }
        stop.Cancel();
        await reader;

        Assert.Equal(0, failures);
        Assert.True(reads > 0);
        Assert.Equal(Points, engine.Telemetry.Query(device.Id, "s", 0, long.MaxValue, 0, 0, Aggregation.None, false).Count);
    }

    [Fact]
    public async Task DeleteDevice_DropsItsHistory_AndANewDeviceStartsEmpty()
    {
        using var dir = new TempDir();
        await using var engine = await Engines.OpenAsync(dir.Path);
        var (tenant, device, _) = await Engines.CreateDeviceAsync(engine);
        var entries = Enumerable.Range(0, 3_000).Select(i => new TsKvEntry(i, new KvEntry("k", (long)i))).ToList();
        Assert.True(await engine.Telemetry.SaveAsync(device.Id, entries));

        Assert.True((await engine.Registry.DeleteDeviceAsync(device.Id)).IsOk);

        Assert.Empty(engine.Telemetry.Query(device.Id, "k", 0, long.MaxValue, 0, 0, Aggregation.None, false));
        Assert.Empty(engine.Telemetry.GetKeys(device.Id));
        var again = await engine.Registry.CreateDeviceAsync(tenant, "dev-2", accessToken: "tok-2");
        Assert.True(await engine.Telemetry.SaveAsync(again.Value!.Id, [new TsKvEntry(5, new KvEntry("k", 5L))]));
        Assert.Single(engine.Telemetry.Query(again.Value.Id, "k", 0, long.MaxValue, 0, 0, Aggregation.None, false));
    }

    [Fact]
    public async Task History_WithEveryTypeAndOutOfOrderWrites_SurvivesReopen()
    {
        using var dir = new TempDir();
        Guid id;
        List<TsKvEntry> expected;
        {
            await using var engine = await Engines.OpenAsync(dir.Path);
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            id = device.Id;
            var big = new string('é', 20_000);
            await engine.Telemetry.SaveAsync(id, [new TsKvEntry(300, new KvEntry("v", 3L)), new TsKvEntry(100, new KvEntry("v", "one"))]);
            await engine.Telemetry.SaveAsync(id, [new TsKvEntry(200, new KvEntry("v", big, isJson: false))]);
            await engine.Telemetry.SaveAsync(id, [new TsKvEntry(100, new KvEntry("v", true)), new TsKvEntry(400, new KvEntry("v", "{\"a\":1}", isJson: true))]);
            await engine.Telemetry.SaveAsync(id, [new TsKvEntry(500, new KvEntry("v", 2.25))]);
            await engine.Telemetry.DeleteAsync(id, ["v"], deleteLatest: false, deleteHistory: true, 300, 301);
            expected =
            [
                new(100, new KvEntry("v", true)), new(200, new KvEntry("v", big)),
                new(400, new KvEntry("v", "{\"a\":1}", isJson: true)), new(500, new KvEntry("v", 2.25)),
            ];
            Assert.Equal(expected, engine.Telemetry.Query(id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false));
        }

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(expected, reopened.Telemetry.Query(id, "v", 0, long.MaxValue, 0, 0, Aggregation.None, false));
    }

    [Fact]
    public async Task AHistoryOfSeveralSnapshotChunks_ReadsBackTheSame_AfterCheckpointAndReopen()
    {
        using var dir = new TempDir();
        Guid id;
        TsKvEntry[] expected;
        {
            await using var engine = await Engines.OpenAsync(dir.Path);
            var (_, device, _) = await Engines.CreateDeviceAsync(engine);
            id = device.Id;
            // 10,000 points: three snapshot chunks of 4,096; every type, written in two interleaved passes.
            for (var pass = 0; pass < 2; pass++)
            {
                var entries = Enumerable.Range(0, 5_000).Select(i => i * 2 + pass).Select(ts => new TsKvEntry(ts, (ts % 4) switch
                {
                    0 => new KvEntry("m", (long)ts),
                    1 => new KvEntry("m", ts + 0.25),
                    2 => new KvEntry("m", "s" + ts),
                    _ => new KvEntry("m", ts % 8 == 3),
                })).ToList();
                Assert.True(await engine.Telemetry.SaveAsync(id, entries));
            }
            expected = [.. engine.Telemetry.Query(id, "m", 0, long.MaxValue, 0, 0, Aggregation.None, false)];
            Assert.Equal(10_000, expected.Length);
        } // dispose writes the checkpoint (WriteState) and drops the log before it

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(expected, reopened.Telemetry.Query(id, "m", 0, long.MaxValue, 0, 0, Aggregation.None, false));
        Assert.Equal(expected[^1], reopened.Telemetry.GetLatest(id, ["m"])[0]);
    }
}
