using HdrHistogram;
using System.Diagnostics;

namespace Perf.Load.Tests;

public sealed class HistogramTests
{
    private static long MicrosToTicks(long micros) => micros * Stopwatch.Frequency / 1_000_000;

    [Fact]
    public void Percentiles_of_a_uniform_1_to_10000_us_distribution()
    {
        var recorder = new LatencyRecorder(shards: 4);
        for (var us = 1; us <= 10_000; us++)
        {
            recorder.RecordTicks(us, MicrosToTicks(us)); // spread over every shard
        }

        var h = recorder.Merge();
        Assert.Equal(10_000, h.TotalCount);
        // 3 significant digits: every value is within 0.1% of the exact percentile.
        Assert.InRange(h.GetValueAtPercentile(50), 4_995, 5_005);
        Assert.InRange(h.GetValueAtPercentile(90), 8_991, 9_009);
        Assert.InRange(h.GetValueAtPercentile(99), 9_890, 9_910);
        Assert.InRange(h.GetValueAtPercentile(99.9), 9_980, 10_010);
        Assert.InRange(h.GetMaxValue(), 10_000, 10_010);
        Assert.InRange(h.GetMean(), 5_000.5 * 0.999, 5_000.5 * 1.001);
        Assert.Equal(5.0, Report.Ms(h.GetValueAtPercentile(50)), 0);
    }

    [Fact]
    public void A_tail_shows_only_above_its_percentile()
    {
        var recorder = new LatencyRecorder();
        var ticks = new long[1000];
        Array.Fill(ticks, MicrosToTicks(100));
        ticks[^1] = MicrosToTicks(50_000); // one slow sample in a thousand
        recorder.RecordTicks(0, ticks);
        var h = recorder.Merge();
        Assert.InRange(h.GetValueAtPercentile(99), 100, 101);
        Assert.InRange(h.GetValueAtPercentile(99.9), 100, 101);
        Assert.InRange(h.GetValueAtPercentile(100), 49_950, 50_050);
        Assert.InRange(h.GetMaxValue(), 49_950, 50_050);
    }

    [Fact]
    public void Values_are_clamped_to_1_us_and_60_s()
    {
        var recorder = new LatencyRecorder(1);
        recorder.RecordTicks(0, 0);
        recorder.RecordTicks(0, MicrosToTicks(3_600_000_000)); // an hour
        var h = recorder.Merge();
        Assert.Equal(2, h.TotalCount);
        Assert.Equal(1, h.GetValueAtPercentile(50));
        Assert.InRange(h.GetMaxValue(), LatencyRecorder.HighestTrackableMicros, LatencyRecorder.HighestTrackableMicros * 1.001);
    }

    [Fact]
    public void Ticks_convert_to_microseconds()
    {
        Assert.Equal(1_000_000, LatencyRecorder.TicksToMicros(Stopwatch.Frequency));
        Assert.Equal(1_500, LatencyRecorder.TicksToMicros(Stopwatch.Frequency * 3 / 2000));
    }

    [Fact]
    public void Merging_sums_the_shards_and_leaves_them_intact()
    {
        var recorder = new LatencyRecorder(shards: 3);
        for (var worker = 0; worker < 9; worker++)
        {
            recorder.RecordTicks(worker, MicrosToTicks(1000 * (worker + 1)));
        }

        Assert.Equal(9, recorder.Merge().TotalCount);
        Assert.Equal(9, recorder.Merge().TotalCount);
        Assert.Equal(3, recorder.Shard(0).TotalCount);
    }

    [Fact]
    public void The_error_rate_is_errors_over_acked_plus_errors()
    {
        Assert.Equal(0, new RunResult { Scenario = "s", Target = "t" }.ErrorRate);
        var r = new RunResult { Scenario = "s", Target = "t", Sent = 100, Acked = 90, Errors = 10 };
        Assert.Equal(0.1, r.ErrorRate, 12);
        var allFailed = new RunResult { Scenario = "s", Target = "t", Sent = 0, Acked = 0, Errors = 5 };
        Assert.Equal(1.0, allFailed.ErrorRate, 12);
    }
}
