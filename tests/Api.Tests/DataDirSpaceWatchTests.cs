using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Perf.Api.Hosting;

namespace Perf.Api.Tests;

/// <summary>
/// The low-space warning on DATA_DIR's file system: once when the space falls below the level, again only after
/// <see cref="DataDirSpaceWatch.RepeatEvery"/> while it stays low, once when it is back; a failed read is logged and
/// survived; the settings parse and refuse bad values with the variable's name.
/// </summary>
public sealed class DataDirSpaceWatchTests
{
    private const long MB = 1024 * 1024;

    [Fact]
    public void WarnsOnceBelowTheLevel_RepeatsOnlyAfterTheRepeatTime_AndSaysOnceWhenBackAbove()
    {
        var logs = new ListLogger();
        var time = new ManualTime();
        long free = 5_000 * MB;
        var watch = new DataDirSpaceWatch("/srv/perf-data", 1024 * MB, TimeSpan.FromSeconds(30), () => free, time, logs);

        Assert.Equal(5_000 * MB, watch.Check());
        Assert.Empty(logs.Lines);
        Assert.False(watch.Low);

        free = 700 * MB;
        watch.Check();
        var warning = Assert.Single(logs.Lines);
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Equal(5, warning.EventId);
        Assert.Contains("/srv/perf-data", warning.Text, StringComparison.Ordinal);
        Assert.Contains("700 MB free", warning.Text, StringComparison.Ordinal);
        Assert.Contains("1024 MB", warning.Text, StringComparison.Ordinal);
        Assert.True(watch.Low);

        // Still low: no new line until the repeat time has passed.
        free = 600 * MB;
        time.Advance(DataDirSpaceWatch.RepeatEvery - TimeSpan.FromSeconds(1));
        watch.Check();
        Assert.Single(logs.Lines);
        time.Advance(TimeSpan.FromSeconds(1));
        watch.Check();
        Assert.Equal(2, logs.Lines.Count);
        Assert.Contains("600 MB free", logs.Lines[1].Text, StringComparison.Ordinal);

        free = 2_048 * MB;
        watch.Check();
        watch.Check();
        Assert.Equal(3, logs.Lines.Count);
        Assert.Equal((LogLevel.Information, 6), (logs.Lines[2].Level, logs.Lines[2].EventId));
        Assert.Contains("2048 MB free, back above", logs.Lines[2].Text, StringComparison.Ordinal);
        Assert.False(watch.Low);
    }

    [Fact]
    public void AFailedRead_IsLoggedWithTheDirectory_AndTheNextCheckWorks()
    {
        var logs = new ListLogger();
        var fail = true;
        var watch = new DataDirSpaceWatch("/srv/perf-data", 1024 * MB, TimeSpan.FromSeconds(30),
            () => fail ? throw new IOException("statfs failed") : 10 * MB, new ManualTime(), logs);

        Assert.Equal(-1, watch.Check());
        var line = Assert.Single(logs.Lines);
        Assert.Equal((LogLevel.Warning, 7), (line.Level, line.EventId));
        Assert.Contains("statfs failed", line.Text, StringComparison.Ordinal);

        fail = false;
        Assert.Equal(10 * MB, watch.Check());
        Assert.True(watch.Low);
    }

    [Fact]
    public void AnUnreadableDirectory_IsLogged_NotThrown()
    {
        var logs = new ListLogger();
        var watch = new DataDirSpaceWatch("/srv/perf-data", 1024 * MB, TimeSpan.FromSeconds(30),
            () => throw new UnauthorizedAccessException("permission denied"), new ManualTime(), logs);
        Assert.Equal(-1, watch.Check());
        Assert.Contains("permission denied", Assert.Single(logs.Lines).Text, StringComparison.Ordinal);
    }

    [Fact]
    public void TheHostsWatch_ReadsTheRealFileSystemOfTheDataDirectory()
    {
        var dataDir = Directory.CreateTempSubdirectory("space-watch-").FullName;
        try
        {
            var real = new DriveInfo(dataDir).AvailableFreeSpace;
            var above = new DataDirSpaceWatch(Settings(("DATA_DIR", dataDir), ("DATA_DIR_LOW_SPACE_MB", "1")), new ListLogger());
            var free = above.Check();
            Assert.InRange(free, real / 2, real * 2); // the same file system, give or take other writers
            Assert.False(above.Low);

            // A level above the size of any disk here: low at once.
            var logs = new ListLogger();
            var below = new DataDirSpaceWatch(Settings(("DATA_DIR", dataDir), ("DATA_DIR_LOW_SPACE_MB", int.MaxValue.ToString(System.Globalization.CultureInfo.InvariantCulture))), logs);
            below.Check();
            Assert.True(below.Low);
            Assert.Contains(dataDir, Assert.Single(logs.Lines).Text, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dataDir);
        }
    }

    [Fact]
    public void Settings_DefaultTo1GiBEvery30Seconds_ZeroTurnsItOff_BadValuesNameTheVariable()
    {
        var defaults = HostSettings.From(Configuration());
        Assert.Equal(1024 * MB, defaults.DataDirLowSpaceBytes);
        Assert.Equal(TimeSpan.FromSeconds(30), defaults.DataDirCheckInterval);

        var set = HostSettings.From(Configuration(("DATA_DIR_LOW_SPACE_MB", "0"), ("DATA_DIR_CHECK_SECONDS", "5")));
        Assert.Equal(0, set.DataDirLowSpaceBytes);
        Assert.Equal(TimeSpan.FromSeconds(5), set.DataDirCheckInterval);

        foreach (var (name, value) in new[] { ("DATA_DIR_LOW_SPACE_MB", "-1"), ("DATA_DIR_LOW_SPACE_MB", "lots"), ("DATA_DIR_CHECK_SECONDS", "1.5") })
        {
            var e = Assert.Throws<InvalidOperationException>(() => HostSettings.From(Configuration((name, value))));
            Assert.Contains(name, e.Message, StringComparison.Ordinal);
        }
    }

    private static HostSettings Settings(params (string Name, string Value)[] values) => HostSettings.From(Configuration(values));

    private static IConfiguration Configuration(params (string Name, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Name, v.Value))).Build();

    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = 1_000_000;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }

    private sealed class ListLogger : ILogger<DataDirSpaceWatch>
    {
        public List<(LogLevel Level, int EventId, string Text)> Lines { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add((logLevel, eventId.Id, formatter(state, exception)));
    }
}
