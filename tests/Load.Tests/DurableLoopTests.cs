using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Perf.Load.Scenarios;

namespace Perf.Load.Tests;

/// <summary>
/// load/'s durable-loop (the one-thread durable floor in .NET): a PUBACK only once its PUBLISH is in the file, every
/// answer in order, a malformed packet closes only its connection, and Stop reports what it wrote and deletes its
/// files; with its raw write-through file and with a FasterLog.
/// </summary>
public sealed partial class DurableLoopTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("durable-loop-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task PubAcksFollowTheWrite_InOrder_BadInputClosesOnlyItsConnection_AndStopReportsAndDeletesTheFiles(bool fasterLog)
    {
        var loop = DurableEventLoop.Start(new IPEndPoint(IPAddress.Loopback, 0), _directory, fasterLog);
        long sent;
        string report;
        try
        {
            Assert.NotEqual(0, loop.EndPoint.Port);
            sent = await SinkClient.ExerciseAsync(loop.EndPoint, () => loop.DataPath);
        }
        finally
        {
            report = loop.Stop();
        }

        var match = Report().Match(report);
        Assert.True(match.Success, report);
        Assert.Equal("502", match.Groups["publishes"].Value);
        Assert.Equal(sent, long.Parse(match.Groups["bytes"].Value, CultureInfo.InvariantCulture));
        Assert.Empty(Directory.GetFileSystemEntries(_directory));
    }

    [GeneratedRegex(@"^writes \d+ bytes (?<bytes>\d+) publishes (?<publishes>\d+): write ms p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ p99\.9 [\d.]+ max [\d.]+$")]
    private static partial Regex Report();
}
