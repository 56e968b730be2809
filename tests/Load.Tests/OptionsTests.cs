namespace Perf.Load.Tests;

public sealed class OptionsTests
{
    [Fact]
    public void Reads_space_and_equals_forms_and_trailing_flags()
    {
        var o = new Options(["--connections", "12", "--rate=500.5", "--unique", "--host", "10.0.0.1", "--verbose"]);
        Assert.Equal(12, o.Int("connections", 1));
        Assert.Equal(500.5, o.Double("rate", 0));
        Assert.True(o.Flag("unique"));
        Assert.Equal("10.0.0.1", o.String("host", "127.0.0.1"));
        Assert.True(o.Flag("verbose"));
        o.ThrowIfUnused();
    }

    [Fact]
    public void A_flag_followed_by_an_option_takes_no_value()
    {
        var o = new Options(["--unique", "--qos", "0"]);
        Assert.True(o.Flag("unique"));
        Assert.Equal(0, o.Int("qos", 1, 0, 1));
    }

    [Fact]
    public void Defaults_apply_when_absent()
    {
        var o = new Options([]);
        Assert.Equal(100, o.Int("connections", 100));
        Assert.Null(o.StringOrNull("json"));
        Assert.Null(o.DoubleOrNull("max-p99"));
        Assert.False(o.Flag("unique"));
        Assert.Equal(TimeSpan.FromSeconds(10), o.Duration("duration", TimeSpan.FromSeconds(10)));
    }

    [Theory]
    [InlineData("10", 10_000)]
    [InlineData("10s", 10_000)]
    [InlineData("2.5s", 2_500)]
    [InlineData("500ms", 500)]
    [InlineData("2m", 120_000)]
    [InlineData("0", 0)]
    public void Parses_durations(string text, double milliseconds) =>
        Assert.Equal(milliseconds, Options.ParseDuration("duration", text).TotalMilliseconds, 6);

    [Theory]
    [InlineData("ten")]
    [InlineData("-1s")]
    [InlineData("5h")]
    [InlineData("ms")]
    [InlineData("NaN")]
    public void Rejects_bad_durations(string text) =>
        Assert.Throws<OptionsException>(() => Options.ParseDuration("duration", text));

    [Theory]
    [InlineData("abc")]
    [InlineData("0")]
    [InlineData("100001")]
    [InlineData("1.5")]
    public void Rejects_integers_out_of_range_or_malformed(string text)
    {
        var o = new Options(["--connections", text]);
        Assert.Throws<OptionsException>(() => o.Int("connections", 1, 1, 100_000));
    }

    [Fact]
    public void Rejects_numbers_below_the_minimum_and_nan()
    {
        Assert.Throws<OptionsException>(() => new Options(["--rate", "-1"]).Double("rate", 0, 0));
        Assert.Throws<OptionsException>(() => new Options(["--rate", "NaN"]).Double("rate", 0, 0));
    }

    [Fact]
    public void Rejects_a_missing_value_a_duplicate_and_a_stray_argument()
    {
        Assert.Throws<OptionsException>(() => new Options(["--json"]).StringOrNull("json"));
        Assert.Throws<OptionsException>(() => new Options(["--qos", "1", "--qos", "0"]));
        Assert.Throws<OptionsException>(() => new Options(["stray"]));
        Assert.Throws<OptionsException>(() => new Options(["--qos", "1", "extra"]));
    }

    [Theory]
    [InlineData("true", true)]
    [InlineData("yes", true)]
    [InlineData("1", true)]
    [InlineData("false", false)]
    [InlineData("no", false)]
    [InlineData("0", false)]
    public void Flags_accept_explicit_values(string value, bool expected) =>
        Assert.Equal(expected, new Options([$"--unique={value}"]).Flag("unique"));

    [Fact]
    public void A_flag_with_a_non_boolean_value_is_rejected() =>
        Assert.Throws<OptionsException>(() => new Options(["--unique=maybe"]).Flag("unique"));

    [Fact]
    public void Unused_options_are_rejected_with_their_names()
    {
        var o = new Options(["--connections", "5", "--conections", "6", "--wndow", "3"]);
        o.Int("connections", 1);
        var e = Assert.Throws<OptionsException>(o.ThrowIfUnused);
        Assert.Contains("--conections", e.Message, StringComparison.Ordinal);
        Assert.Contains("--wndow", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("--connections,", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Common_options_read_target_outputs_and_thresholds()
    {
        var o = new Options(["--port", "1884", "--duration", "3s", "--max-error-rate", "0.01", "--min-rate", "1000", "--max-p99", "5", "--json", "x.json"]);
        var common = CommonOptions.Read(o, 1883);
        o.ThrowIfUnused();
        Assert.Equal("127.0.0.1:1884", common.Target);
        Assert.Equal(TimeSpan.FromSeconds(3), common.Duration);
        Assert.Equal(0.01, common.MaxErrorRate);
        Assert.Equal(1000, common.MinRate);
        Assert.Equal(5, common.MaxP99Ms);
        Assert.Equal("x.json", common.JsonPath);
        Assert.Null(common.HtmlPath);
    }

    [Fact]
    public void Port_outside_the_tcp_range_is_rejected() =>
        Assert.Throws<OptionsException>(() => CommonOptions.Read(new Options(["--port", "70000"]), 1883));
}
