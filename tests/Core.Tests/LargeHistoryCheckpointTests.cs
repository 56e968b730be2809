using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

/// <summary>
/// A series whose points are long strings: a snapshot chunk of 512 such points is larger than the state store's 4 MiB
/// pages, and every checkpoint failed ("Entry does not fit on page"), so the log was never truncated. Such a chunk is
/// now written in parts; an unchanged chunk keeps all its parts, and a restart loads every point.
/// </summary>
public sealed class LargeHistoryCheckpointTests
{
    [Fact]
    public async Task LongStringHistory_CheckpointsInParts_RetainsThemUnchanged_AndRecoversEveryPoint()
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        for (var batch = 0; batch < 6; batch++)
        {
            var points = Enumerable.Range(batch * 100, 100).Select(i => new TsKvEntry(10_000 + i, new KvEntry("big", Value(i)))).ToList();
            Assert.True(await engine.Telemetry.SaveAsync(device.Id, points));
        }

        await engine.CheckpointAsync(); // 600 points of 16 KB: chunk 0 alone is 8 MB
        Assert.True(engine.State.Rewritten > 8, $"chunk 0 is written in parts: {engine.State.Rewritten} records");

        // Points after chunk 0 only: chunk 0 is retained, all of its parts.
        Assert.True(await engine.Telemetry.SaveAsync(device.Id, [new TsKvEntry(20_000, new KvEntry("big", Value(600)))]));
        await engine.CheckpointAsync();
        Assert.True(engine.State.RetainedCount >= 8, $"chunk 0's parts retained: {engine.State.RetainedCount}");
        await engine.AbandonAsync(); // kill -9 after the checkpoint: the state store alone holds the history

        await using var reopened = await Engines.OpenAsync(dir.Path);
        var history = reopened.Telemetry.Query(device.Id, "big", 0, long.MaxValue, 0, 0, Aggregation.None, false).OrderBy(p => p.Ts).ToList();
        Assert.Equal([.. Enumerable.Range(10_000, 600).Select(ts => (long)ts), 20_000L], history.Select(p => p.Ts));
        Assert.Equal(Value(0), history[0].Entry.Text);
        Assert.Equal(Value(511), history[511].Entry.Text);
        Assert.Equal(Value(600), history[^1].Entry.Text);
    }

    private static string Value(int i) => i.ToString("D5") + new string((char)('a' + (i % 26)), 16_000);
}
