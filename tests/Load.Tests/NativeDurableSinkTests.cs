using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace Perf.Load.Tests;

/// <summary>
/// load/native/durable-sink.c, the one-thread durable floor: a PUBACK only once its PUBLISH is in the file, every
/// answer in order, a malformed packet closes only its own connection, and on SIGTERM it reports and deletes the file.
/// </summary>
public sealed partial class NativeDurableSinkTests : IDisposable
{
    private readonly string _file = Path.Combine(Path.GetTempPath(), $"durable-sink-{Guid.NewGuid():N}.bin");

    public void Dispose() => File.Delete(_file);

    [Fact]
    public async Task PubAcksFollowTheWrite_InOrder_BadInputClosesOnlyItsConnection_AndSigtermReportsAndDeletesTheFile()
    {
        var binary = await NativeTool.BuildAsync("durable-sink");
        try
        {
            var port = FreePort();
            var start = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var argument in new[] { port.ToString(CultureInfo.InvariantCulture), _file, "60" })
            {
                start.ArgumentList.Add(argument);
            }

            using var process = Process.Start(start)!;
            try
            {
                Assert.Equal($"listening on 127.0.0.1:{port}", await process.StandardOutput.ReadLineAsync());
                var sent = await SinkClient.ExerciseAsync(new IPEndPoint(IPAddress.Loopback, port), () => _file);

                Assert.Equal(0, Kill(process.Id, 15)); // SIGTERM
                using var exit = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await process.WaitForExitAsync(exit.Token);
                var output = await process.StandardOutput.ReadToEndAsync();
                Assert.True(process.ExitCode == 0, output + await process.StandardError.ReadToEndAsync());
                var report = Report().Match(output);
                Assert.True(report.Success, output);
                Assert.Equal("502", report.Groups["publishes"].Value);
                var bytes = long.Parse(report.Groups["bytes"].Value, CultureInfo.InvariantCulture);
                Assert.Equal(sent, bytes);
                Assert.False(File.Exists(_file));
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }
            }
        }
        finally
        {
            File.Delete(binary);
        }
    }

    [Fact]
    public async Task BadArguments_AreAUsageError_AndAnExistingFileIsNotTouched()
    {
        var (exit, _, error) = await NativeTool.BuildAndRunAsync("durable-sink", "0", _file, "1");
        Assert.Equal(2, exit);
        Assert.Contains("usage:", error, StringComparison.Ordinal);

        await File.WriteAllTextAsync(_file, "kept");
        (exit, _, _) = await NativeTool.BuildAndRunAsync("durable-sink", FreePort().ToString(CultureInfo.InvariantCulture), _file, "1");
        Assert.Equal(1, exit);
        Assert.Equal("kept", await File.ReadAllTextAsync(_file));
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }


    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [GeneratedRegex(@"^rounds \d+ writes \d+ bytes (?<bytes>\d+) publishes (?<publishes>\d+): write ms p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ p99\.9 [\d.]+ max [\d.]+$", RegexOptions.Multiline)]
    private static partial Regex Report();
}
