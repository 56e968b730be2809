using Perf.Load.Scenarios;
using Perf.Load.Wire;

namespace Perf.Load.Tests;

public sealed class SoakAndCrashMathTests
{
    private static List<(double, double)> Line(int count, double intercept, double mbPerSecond, Func<int, double>? noise = null) =>
        [.. Enumerable.Range(0, count).Select(i => (i * 10.0, intercept + (mbPerSecond * i * 10.0) + (noise?.Invoke(i) ?? 0)))];

    [Fact]
    public void Slope_of_an_exact_line_is_its_gradient()
    {
        Assert.Equal(0.5, SoakTrend.SlopePerSecond(Line(10, 100, 0.5)), 9);
        Assert.Equal(-0.25, SoakTrend.SlopePerSecond(Line(7, 100, -0.25)), 9);
        Assert.Equal(0, SoakTrend.SlopePerSecond(Line(5, 100, 0)), 9);
    }

    [Fact]
    public void Slope_ignores_symmetric_noise_and_degenerate_inputs_give_zero()
    {
        // +3, -3 alternating around a flat line: the fit stays close to flat.
        Assert.InRange(SoakTrend.SlopePerSecond(Line(60, 200, 0, i => i % 2 == 0 ? 3 : -3)), -0.01, 0.01);
        Assert.Equal(0, SoakTrend.SlopePerSecond([(1, 5)]));
        Assert.Equal(0, SoakTrend.SlopePerSecond([(3, 5), (3, 9)])); // every x the same
    }

    [Fact]
    public void Trend_fits_only_the_second_half_so_warm_up_growth_does_not_count()
    {
        // 60 samples every 10 s (10 min): RSS climbs 100 -> 250 MB in the first 3 minutes, then is flat.
        var samples = Enumerable.Range(0, 60).Select(i => (i * 10.0, i < 18 ? 100 + (i * 150.0 / 18) : 250.0)).ToList();
        var trend = SoakTrend.Of(samples)!.Value;
        Assert.Equal(0, trend.SlopeMbPerMinute, 9);
        Assert.Equal(60, trend.Samples);
        Assert.Equal(100, trend.Min, 9);
        Assert.Equal(250, trend.Max, 9);
        Assert.True(trend.FirstThirdMean < trend.LastThirdMean);
        Assert.Equal(250, trend.LastThirdMean, 9);
    }

    [Fact]
    public void Trend_reports_a_steady_leak_in_mb_per_minute()
    {
        // 0.05 MB/s = 3 MB/min all along.
        var trend = SoakTrend.Of(Line(60, 150, 0.05))!.Value;
        Assert.Equal(3, trend.SlopeMbPerMinute, 6);
        // First third: samples 0..19 (mean at 95 s), last third: 40..59 (mean at 495 s): 400 s apart at 0.05 MB/s.
        Assert.Equal(20, trend.LastThirdMean - trend.FirstThirdMean, 6);
    }

    [Fact]
    public void Trend_needs_four_samples()
    {
        Assert.Null(SoakTrend.Of(Line(3, 1, 1)));
        Assert.NotNull(SoakTrend.Of(Line(4, 1, 1)));
    }

    [Fact]
    public void Crash_tally_counts_lost_inflight_duplicate_and_phantom_messages()
    {
        // Connection 1 of 4 sent messages k = 0..5, numbers 1, 5, 9, 13, 17, 21; 1, 5, 9 and 13 were acknowledged.
        var tally = new CrashTally();
        long Seq(long n) => MqttWire.UniqueSeqBase + n;
        tally.Add(1, 4, 6, new HashSet<long> { 1, 5, 9, 13 },
        [
            (1, Seq(1)), (5, Seq(5)), (13, Seq(13)),   // 9 is missing: lost
            (17, Seq(17)),                             // stored, its PUBACK never came: allowed
            (13, Seq(13)),                             // stored twice
            (25, Seq(25)),                             // k = 6 was never sent
            (2, Seq(2)),                               // another connection's number
            (21, Seq(20)),                             // seq does not match its ts: not this message
        ]);
        Assert.Equal(8, tally.Stored);
        Assert.Equal(1, tally.Lost);
        Assert.Equal([9L], tally.FirstLost);
        Assert.Equal(1, tally.StoredUnacked);
        Assert.Equal(2, tally.Duplicated);
        Assert.Equal(2, tally.Phantom);
        Assert.False(tally.Ok);
    }

    [Fact]
    public void Crash_tally_of_a_clean_run_is_ok()
    {
        var tally = new CrashTally();
        tally.Add(0, 2, 3, new HashSet<long> { 0, 2 }, [(0, MqttWire.UniqueSeqBase), (2, MqttWire.UniqueSeqBase + 2), (4, MqttWire.UniqueSeqBase + 4)]);
        Assert.True(tally.Ok);
        Assert.Equal(1, tally.StoredUnacked);
        Assert.Equal(0, tally.Lost);
    }
}
