using Perf.Load.Scenarios;

namespace Perf.Load.Tests;

public sealed class CompareTests
{
    [Theory]
    [InlineData(new double[] { 3 }, 3)]
    [InlineData(new double[] { 5, 1, 3 }, 3)]
    [InlineData(new double[] { 4, 1, 3, 2 }, 2.5)]
    [InlineData(new double[] { 10, double.NaN, 20 }, 15)]
    public void Median_of_odd_and_even_counts_ignoring_NaN(double[] values, double expected) =>
        Assert.Equal(expected, CompareMode.Median(values), 9);

    [Fact]
    public void Median_of_nothing_is_NaN()
    {
        Assert.True(double.IsNaN(CompareMode.Median([])));
        Assert.True(double.IsNaN(CompareMode.Median([double.NaN])));
    }

    [Fact]
    public void Ratio_is_a_over_b_of_the_medians_not_the_median_of_ratios()
    {
        CompareMode.Sample[] a = [new(100, 1, 10), new(300, 3, 30), new(200, 2, 20)];
        CompareMode.Sample[] b = [new(50, 4, 5), new(400, 8, 40), new(100, 2, 10)];
        var ma = CompareMode.MediansOf(a);
        var mb = CompareMode.MediansOf(b);
        Assert.Equal(new CompareMode.Medians(200, 2, 20), ma);
        Assert.Equal(new CompareMode.Medians(100, 4, 10), mb);
        var ratios = CompareMode.Ratios(ma, mb);
        Assert.Equal(2.0, ratios.Rate, 9);
        Assert.Equal(0.5, ratios.P50, 9);
        Assert.Equal(2.0, ratios.P99, 9);
    }

    [Fact]
    public void Ratio_with_a_zero_or_missing_denominator_is_NaN()
    {
        Assert.True(double.IsNaN(CompareMode.Ratio(1, 0)));
        Assert.True(double.IsNaN(CompareMode.Ratio(double.NaN, 1)));
        Assert.True(double.IsNaN(CompareMode.Ratio(1, double.NaN)));
        Assert.Equal(0, CompareMode.Ratio(0, 5));
    }

    [Fact]
    public void Reads_rate_and_percentiles_from_a_scenario_json()
    {
        var sample = CompareMode.ReadSample("""{"scenario":"mqtt-publish","parameters":{"rate":"max"},"rate":1234.5,"latencyMs":{"p50":0.5,"p90":1,"p99":2.25,"max":9}}""");
        Assert.Equal(new CompareMode.Sample(1234.5, 0.5, 2.25), sample);
        var noLatency = CompareMode.ReadSample("""{"rate":10}""");
        Assert.Equal(10, noLatency.Rate);
        Assert.True(double.IsNaN(noLatency.P50) && double.IsNaN(noLatency.P99));
    }

    [Fact]
    public void Parse_splits_own_options_from_forwarded_mqtt_publish_options()
    {
        var s = CompareMode.Parse(["--a", "127.0.0.1:1883", "--connections", "20", "--b=localhost:18830", "--unique", "--rounds", "5",
            "--a-name", "ours", "--qos=1", "--b-name", "mosquitto", "--json", "out.json", "--pause", "0"]);
        Assert.Equal(new CompareMode.Target("ours", "127.0.0.1", 1883), s.A);
        Assert.Equal(new CompareMode.Target("mosquitto", "localhost", 18830), s.B);
        Assert.Equal(5, s.Rounds);
        Assert.Equal(TimeSpan.Zero, s.Pause);
        Assert.Equal("out.json", s.JsonPath);
        Assert.Equal(["--connections", "20", "--unique", "--qos=1"], s.PublishArgs);
    }

    [Fact]
    public void Parse_defaults()
    {
        var s = CompareMode.Parse(["--a", "h:1", "--b", "[::1]:2"]);
        Assert.Equal(("A", "B"), (s.A.Name, s.B.Name));
        Assert.Equal("::1", s.B.Host);
        Assert.Equal(3, s.Rounds);
        Assert.Equal(TimeSpan.FromSeconds(1), s.Pause);
        Assert.Null(s.JsonPath);
        Assert.Empty(s.PublishArgs);
    }

    [Theory]
    [InlineData("--b", "h:1")]
    [InlineData("--a", "h:1")]
    [InlineData("--a", "h", "--b", "h:1")]
    [InlineData("--a", "h:0", "--b", "h:1")]
    [InlineData("--a", "h:70000", "--b", "h:1")]
    [InlineData("--a", "h:1", "--b", "h:2", "--host", "x")]
    [InlineData("--a", "h:1", "--b", "h:2", "--port", "3")]
    [InlineData("--a", "h:1", "--b", "h:2", "--html", "r.html")]
    [InlineData("--a", "h:1", "--b", "h:2", "--assert", "p99<5")]
    [InlineData("--a", "h:1", "--b", "h:2", "--rounds", "0")]
    [InlineData("--a", "h:1", "--b", "h:2", "--a-name", "x", "--b-name", "x")]
    [InlineData("--a", "h:1", "--b", "h:2", "stray")]
    public void Parse_rejects_bad_command_lines(params string[] args) =>
        Assert.Throws<OptionsException>(() => CompareMode.Parse(args));

    [Fact]
    public async Task Cli_exits_2_on_a_bad_compare_command_line()
    {
        var error = Console.Error;
        Console.SetError(TextWriter.Null);
        try
        {
            Assert.Equal(2, await LoadCli.RunAsync(["compare", "--a", "h:1"], CancellationToken.None));
        }
        finally
        {
            Console.SetError(error);
        }
    }
}
