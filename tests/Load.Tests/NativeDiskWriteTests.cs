using System.Globalization;
using System.Text.RegularExpressions;

namespace Perf.Load.Tests;

/// <summary>load/native/disk-write.c: times each write in either mode, writes the whole file, deletes it, and refuses bad arguments.</summary>
public sealed partial class NativeDiskWriteTests
{
    [Theory]
    [InlineData(null, "append")]
    [InlineData("append", "append")]
    [InlineData("direct", "direct")]
    public async Task Writes_Count_Blocks_ReportsOrderedPercentiles_AndDeletesTheFile(string? mode, string reported)
    {
        var file = Path.Combine(Path.GetTempPath(), $"disk-write-{Guid.NewGuid():N}");
        string[] arguments = mode is null ? [file, "50", "8192"] : [file, "50", "8192", mode];
        var (exit, output, error) = await NativeTool.BuildAndRunAsync("disk-write", arguments);
        Assert.True(exit == 0, output + error);
        var match = Line().Match(output);
        Assert.True(match.Success, output);
        Assert.Equal("8192", match.Groups["block"].Value);
        Assert.Equal("50", match.Groups["count"].Value);
        Assert.Equal(reported, match.Groups["mode"].Value);
        var figures = new[] { "p50", "p90", "p99", "p999", "max" }.Select(g => double.Parse(match.Groups[g].Value, CultureInfo.InvariantCulture)).ToArray();
        Assert.True(figures[0] > 0, output);
        Assert.Equal(figures.Order(), figures); // percentiles of one sorted sample
        Assert.False(File.Exists(file));
    }

    [Theory]
    [InlineData("10", "0")]
    [InlineData("0", "4096")]
    public async Task BadArguments_AreAUsageError(string count, string block)
    {
        var (exit, _, error) = await NativeTool.BuildAndRunAsync("disk-write", Path.Combine(Path.GetTempPath(), $"disk-write-{Guid.NewGuid():N}"), count, block);
        Assert.Equal(2, exit);
        Assert.Contains("COUNT must be positive", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("4096", "sideways", "MODE must be append or direct")]
    [InlineData("1000", "direct", "BLOCK must be a multiple of 4096 for direct")]
    public async Task BadMode_OrUnalignedDirectBlock_IsAUsageError_AndCreatesNoFile(string block, string mode, string message)
    {
        var file = Path.Combine(Path.GetTempPath(), $"disk-write-{Guid.NewGuid():N}");
        var (exit, _, error) = await NativeTool.BuildAndRunAsync("disk-write", file, "10", block, mode);
        Assert.Equal(2, exit);
        Assert.Contains(message, error, StringComparison.Ordinal);
        Assert.False(File.Exists(file));
    }

    [GeneratedRegex(@"^block (?<block>\d+) count (?<count>\d+) mode (?<mode>append|direct): write ms p50 (?<p50>[\d.]+) p90 (?<p90>[\d.]+) p99 (?<p99>[\d.]+) p99\.9 (?<p999>[\d.]+) max (?<max>[\d.]+)$", RegexOptions.Multiline)]
    private static partial Regex Line();
}
