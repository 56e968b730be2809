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

    /// <summary>A start-up failure is one clear line and exit code 1, not an unhandled exception and an abort (134).</summary>
    [Fact]
    public async Task Host_WhosePortIsTaken_ExitsOne_WithTheCauseInOneLine_AndStorageClosed()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-proc-" + Guid.NewGuid().ToString("N"));
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["HTTP_BIND_PORT"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using var server = HostProcess.Start(settings);
        try
        {
            var exitCode = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(exitCode == 1, $"exit code {exitCode}:\n{server.Output}");
            Assert.Contains($"Start-up failed: Failed to bind to address http://127.0.0.1:{port}: address already in use. Exiting with code 1.", server.Output);
            Assert.DoesNotContain("Unhandled exception", server.Output);
            // The storage it had opened was checkpointed and closed as at any stop: a server on free ports opens it.
            Assert.Contains("Checkpoint into the FasterKV state store", server.Output);
            taken.Stop();
            using var again = HostProcess.Start(HostFixture.FreePortSettings(dataDir));
            await again.WaitForDoorsAsync(5, TimeSpan.FromSeconds(30));
            again.Terminate();
            Assert.Equal(0, await again.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            server.Kill();
            TestDirectories.Delete(dataDir);
        }
    }

    [Fact]
    public async Task Host_WhoseDataDirectoryIsAFile_ExitsOne_NamingIt()
    {
        var file = Path.Combine(Path.GetTempPath(), "perf-proc-file-" + Guid.NewGuid().ToString("N"));
        await File.WriteAllTextAsync(file, "not a directory");
        using var server = HostProcess.Start(HostFixture.FreePortSettings(file));
        try
        {
            var exitCode = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(exitCode == 1, $"exit code {exitCode}:\n{server.Output}");
            Assert.Contains("Start-up failed: IOException:", server.Output);
            Assert.Contains(file, server.Output);
            Assert.DoesNotContain("Unhandled exception", server.Output);
        }
        finally
        {
            server.Kill();
            File.Delete(file);
        }
    }

    /// <summary>A failure after storage opened (here the default system administrator's address): storage is still closed.</summary>
    [Fact]
    public async Task Host_WhoseDefaultAdministratorIsInvalid_ExitsOne_AfterClosingTheStorageItOpened()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-proc-" + Guid.NewGuid().ToString("N"));
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["SYSADMIN_EMAIL"] = "not an email";
        using var server = HostProcess.Start(settings);
        try
        {
            var exitCode = await server.WaitForExitAsync(TimeSpan.FromSeconds(60));
            Assert.True(exitCode == 1, $"exit code {exitCode}:\n{server.Output}");
            Assert.Contains("Start-up failed: InvalidOperationException: could not create the system administrator: a valid email is required. Exiting with code 1.", server.Output);
            Assert.Contains("Checkpoint into the FasterKV state store", server.Output);
            Assert.DoesNotContain("Unhandled exception", server.Output);
        }
        finally
        {
            server.Kill();
            TestDirectories.Delete(dataDir);
        }
    }
}
