using System.Diagnostics;

namespace Perf.EndToEnd;

/// <summary>Runs the host as its own process, the way an operator does.</summary>
public sealed partial class ProcessTests
{
    [Fact]
    public async Task Host_BindsAllDoors_AnswersHealth_AndExitsZeroOnSigterm()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-proc-" + Guid.NewGuid().ToString("N"));
        using var server = HostProcess.Start(HostFixture.FreePortSettings(dataDir));
        try
        {
            var ports = await server.WaitForDoorsAsync(5, TimeSpan.FromSeconds(10));
            Assert.Contains("http", ports.Keys);
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports["http"]}") };
            var health = await http.GetAsync("/health");
            Assert.Equal(System.Net.HttpStatusCode.OK, health.StatusCode);

            var stopwatch = Stopwatch.StartNew();
            server.Terminate();
            var exitCode = await server.WaitForExitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal(0, exitCode);
            Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(5), $"shutdown took {stopwatch.Elapsed}");
        }
        finally
        {
            server.Kill();
            TestDirectories.Delete(dataDir);
        }
    }
}
