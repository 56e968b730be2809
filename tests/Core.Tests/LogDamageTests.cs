using System.Text;
using Perf.Core.Telemetry;

namespace Perf.Core.Tests;

/// <summary>
/// A start over an uplink log damaged in its middle (a record whose bytes changed on disk): by default the start fails
/// with a message that names the file, the address and the ways out, and changes nothing; with
/// <see cref="LogDamagePolicy.KeepBefore"/> it keeps the state up to the damaged record, checkpoints it, and drops the
/// log from it on, so that the next default start opens without reading the damaged bytes again.
/// </summary>
public sealed class LogDamageTests
{
    private const string ProbeKey = "damage_probe_key";

    /// <param name="damaged">Which point's record is damaged.</param>
    /// <param name="fillerBytes">The size of each point's second value. With 16 KB the log is 19 MB and the damaged record
    /// lies in its older part, which FASTER reads from the file and checks. With none it is 150 KB, all of it in the pages
    /// FASTER loads into memory at open and scans without its check (the replay checks them). In both, the damage is
    /// before the last commit metadata (commit 1,000), from where FASTER's recovery scans.</param>
    [Theory]
    [InlineData(100, 16_000)]
    [InlineData(100, 0)]
    public async Task DamagedRecord_StopsTheStartNamingFileAndWayOut_KeepBeforeKeepsThePrefixAndCutsTheLog(int damaged, int fillerBytes)
    {
        using var dir = new TempDir();
        var engine = await Engines.OpenAsync(dir.Path);
        var (_, device, _) = await Engines.CreateDeviceAsync(engine);
        // 1,200 commits: FASTER's recovery starts from the last commit metadata, written every 1,000 commits
        // (UplinkLog.FastCommitMetadataEvery), so the damage below lies inside the committed log and the replay reaches it.
        var filler = new string('f', fillerBytes);
        for (var i = 0; i < 1200; i++)
        {
            var posted = await engine.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":{1000 + i},\"values\":{{\"{ProbeKey}\":{i},\"filler\":\"{filler}\"}}}}"));
            Assert.True(posted.IsOk, posted.Reason);
        }
        await engine.AbandonAsync(); // kill -9: the records are only in the log

        // The damaged point's key changes on disk: its checksum no longer matches.
        var file = Path.Combine(dir.Path, "log", "uplink.log.0");
        var bytes = await File.ReadAllBytesAsync(file);
        var probe = Encoding.UTF8.GetBytes(ProbeKey);
        var at = -1;
        for (var n = 0; n <= damaged; n++)
        {
            at = bytes.AsSpan(at + 1).IndexOf(probe) + at + 1;
            Assert.True(at > n, $"occurrence {n} of the key not found in {file}");
        }
        using (var stream = new FileStream(file, FileMode.Open, FileAccess.Write))
        {
            stream.Position = at;
            stream.Write(Encoding.UTF8.GetBytes(new string('X', probe.Length)));
        }

        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => Engines.OpenAsync(dir.Path));
        Assert.Contains("is damaged at address", refused.Message);
        Assert.Contains(file, refused.Message);
        // The device's records (tenant, device, credentials) and the points before the damaged one.
        var read = System.Text.RegularExpressions.Regex.Match(refused.Message, @"The (\d+) records before it were read");
        Assert.True(read.Success && int.Parse(read.Groups[1].Value) - damaged is > 0 and < 10, refused.Message);
        Assert.Contains("LOG_DAMAGE=keep-before", refused.Message);
        Assert.Equal(bytes.Length, new FileInfo(file).Length); // nothing was changed by the refused start

        var kept = await Engines.OpenAsync(dir.Path, o => o.OnLogDamage = LogDamagePolicy.KeepBefore);
        Assert.True(kept.DamagedLogAt > 0);
        Assert.Equal(Enumerable.Range(1000, damaged).Select(ts => (long)ts), Points(kept, device.Id));
        Assert.True((await kept.DeviceApi.PostTelemetryAsync(device, Engines.Json($"{{\"ts\":5000,\"values\":{{\"{ProbeKey}\":1}}}}"))).IsOk);
        await kept.AbandonAsync(); // the checkpoint at open made the cut durable; no clean stop needed

        await using var reopened = await Engines.OpenAsync(dir.Path);
        Assert.Equal(-1, reopened.DamagedLogAt);
        Assert.Equal([.. Enumerable.Range(1000, damaged).Select(ts => (long)ts), 5000L], Points(reopened, device.Id));
    }

    private static IEnumerable<long> Points(PerfEngine engine, Guid deviceId) =>
        engine.Telemetry.Query(deviceId, ProbeKey, 0, long.MaxValue, 0, 0, Aggregation.None, false).Select(p => p.Ts).Order().ToList();
}
