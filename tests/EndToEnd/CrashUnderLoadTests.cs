extern alias loadtool;

using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;

namespace Perf.EndToEnd;

/// <summary>
/// The durability contract under load: the host runs as a child process, is SIGKILLed while clients are
/// in full flight, restarted on the same DATA_DIR, and everything it acknowledged is compared with what
/// it holds afterwards. One class, so these heavy tests run one after another.
/// </summary>
public sealed partial class CrashUnderLoadTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Start = TimeSpan.FromSeconds(60);

    /// <summary>
    /// load/'s <c>crash</c> scenario, in-process: 20 MQTT QoS 1 publishers (window 32 each) against the
    /// host, SIGKILL after 3 s, restart; every PUBACKed message id is in the stored history, none twice.
    /// </summary>
    [Fact]
    public async Task Mqtt_Qos1_Publishers_SigkillMidRun_NoAcknowledgedMessageLost_NoneDuplicated()
    {
        var dataDir = NewDataDir("mqtt");
        var json = Path.Combine(Path.GetTempPath(), $"crash-{Guid.NewGuid():N}.json");
        var inv = CultureInfo.InvariantCulture;
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        settings["EDGES_ENABLED"] = "false";
        try
        {
            using var first = HostProcess.Start(settings);
            var ports = await first.WaitForDoorsAsync(2, Start);

            // The scenario kills the host and waits for its REST API: restart it on the same HTTP port as soon as it died.
            var restart = Task.Run(async () =>
            {
                await first.WaitForExitAsync(TimeSpan.FromMinutes(3));
                return await RestartAsync(settings, ports["http"], 2);
            });
            var exit = await loadtool::Perf.Load.LoadCli.RunAsync(
                [
                    "crash", "--port", ports["mqtt"].ToString(inv), "--api", $"http://127.0.0.1:{ports["http"]}",
                    "--server-pid", first.Pid.ToString(inv), "--connections", "20", "--window", "32",
                    "--kill-after", "3s", "--restart-timeout", "120s", "--json", json,
                ],
                CancellationToken.None);
            using var restarted = await restart;

            using var report = JsonDocument.Parse(await File.ReadAllTextAsync(json));
            var extra = report.RootElement.GetProperty("extra");
            long Figure(string name) => long.Parse(extra.GetProperty(name).GetString()!, inv);
            var (sent, acked, stored, lost, dup) = (Figure("sent"), Figure("acked"), Figure("stored"), Figure("lost"), Figure("dup"));
            output.WriteLine($"sent {sent}, acked {acked}, stored {stored}, lost {lost}, dup {dup}, stored unacked {Figure("stored unacked (in flight at the kill)")}, phantom {Figure("phantom (stored, never sent)")}");
            Assert.Equal(0, exit);
            Assert.True(acked >= 1000, $"only {acked} messages acknowledged before the kill: not a load");
            Assert.True(sent > acked, "nothing was in flight at the kill");
            Assert.Equal(0, lost);
            Assert.Equal(0, dup);
            Assert.Equal(0, Figure("phantom (stored, never sent)"));
            Assert.InRange(stored, acked, sent);

            restarted.Terminate();
            Assert.Equal(0, await restarted.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            File.Delete(json);
            TestDirectories.Delete(dataDir);
        }
    }

    private static string NewDataDir(string what) => Path.Combine(Path.GetTempPath(), $"perf-crashload-{what}-" + Guid.NewGuid().ToString("N"));

    /// <summary>Starts the host again on the same settings, its HTTP door on <paramref name="httpPort"/> (REST callers keep their address).</summary>
    private static async Task<HostProcess> RestartAsync(Dictionary<string, string?> settings, int httpPort, int doors)
    {
        var again = new Dictionary<string, string?>(settings) { ["HTTP_BIND_PORT"] = httpPort.ToString(CultureInfo.InvariantCulture) };
        var host = HostProcess.Start(again);
        try
        {
            await host.WaitForDoorsAsync(doors, Start);
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }
}
