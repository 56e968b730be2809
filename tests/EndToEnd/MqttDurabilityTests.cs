using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>The MQTT door's half of the durability contract, with the host as its own process.</summary>
public sealed class MqttDurabilityTests
{
    [Fact]
    public async Task EveryPubAckedUplink_SurvivesKillDashNine()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-mqtt-kill-" + Guid.NewGuid().ToString("N"));
        const int count = 50;
        const long firstTs = 1_700_000_000_000;
        Guid deviceId;
        try
        {
            using (var server = HostProcess.Start(HostFixture.FreePortSettings(dataDir)))
            {
                var ports = await server.WaitForDoorsAsync(5, TimeSpan.FromSeconds(20));
                using var rest = await TenantRest.LoginAsync(new Uri($"http://127.0.0.1:{ports["http"]}"));
                (deviceId, var token, _) = await rest.CreateDeviceAsync("durable");
                await using var device = await MqttDevice.ConnectAsync(ports["mqtt"], token);
                for (int i = 0; i < count; i++)
                {
                    // Returns after the PUBACK: from here on the record must survive.
                    await device.PublishAsync("v1/devices/me/telemetry", $$$"""{"ts":{{{firstTs + i}}},"values":{"seq":{{{i}}}}}""");
                }

                await device.PublishAsync("v1/devices/me/attributes", """{"lastSeq":49}""");
                server.KillHard();
            }

            using var restarted = HostProcess.Start(HostFixture.FreePortSettings(dataDir));
            var again = await restarted.WaitForDoorsAsync(5, TimeSpan.FromSeconds(20));
            using var rest2 = await TenantRest.LoginAsync(new Uri($"http://127.0.0.1:{again["http"]}"));
            var history = await rest2.Http.GetFromJsonAsync<JsonObject>(
                $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=seq&startTs={firstTs}&endTs={firstTs + count}&limit=1000");
            Assert.Equal(count, history!["seq"]!.AsArray().Count);
            Assert.Equal("49", (await rest2.AttributesAsync(deviceId, "CLIENT_SCOPE"))["lastSeq"]);
            restarted.Kill();
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }
}
