extern alias loadtool;

using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>
/// load/'s <c>mqtt-publish</c> against the real host, run in-process through <c>LoadCli</c>:
/// the tool's counts add up, and the server holds exactly the messages the tool saw acknowledged.
/// </summary>
[Collection(HostCollection.Name)]
public sealed class LoadMqttPublishTests(HostFixture fixture)
{
    [Fact]
    public async Task A_two_second_mqtt_publish_run_stores_exactly_the_acknowledged_messages()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (deviceId, token) = await rest.CreateDeviceAsync("load-e2e-" + Guid.NewGuid().ToString("N")[..8]);
        var baseTs = DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds();
        var json = Path.Combine(Path.GetTempPath(), $"load-e2e-{Guid.NewGuid():N}.json");
        var inv = CultureInfo.InvariantCulture;
        try
        {
            var exit = await loadtool::Perf.Load.LoadCli.RunAsync(
                [
                    "mqtt-publish", "--port", fixture.Endpoints.Mqtt!.Port.ToString(inv), "--tokens", token,
                    "--connections", "1", "--qos", "1", "--window", "32", "--duration", "2s",
                    "--unique", "--base-ts", baseTs.ToString(inv), "--json", json, "--max-error-rate", "0",
                ],
                CancellationToken.None);

            using var report = JsonDocument.Parse(await File.ReadAllTextAsync(json));
            var sent = report.RootElement.GetProperty("sent").GetInt64();
            var acked = report.RootElement.GetProperty("acked").GetInt64();
            var errors = report.RootElement.GetProperty("errors").GetInt64();
            Assert.Equal(0, exit);
            Assert.True(acked > 0, "nothing was acknowledged");
            Assert.Equal(sent, acked + errors);

            // Every message has its own ts (baseTs + n) and seq (1e9 + n): count what the server kept.
            var endTs = baseTs + sent + 1;
            var count = 0L;
            var deadline = DateTime.UtcNow.AddSeconds(10);
            do
            {
                var counted = await rest.GetAsync(
                    $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=seq&startTs={baseTs}&endTs={endTs}&interval={endTs - baseTs}&agg=COUNT&limit=1");
                count = counted["seq"] is JsonArray { Count: > 0 } points ? long.Parse(points[0]!["value"]!.ToString(), inv) : 0;
                if (count >= acked)
                {
                    break;
                }

                await Task.Delay(200);
            }
            while (DateTime.UtcNow < deadline);
            Assert.Equal(acked, count);

            // The points themselves: distinct, and each seq sits at its own ts.
            var raw = await rest.GetAsync(
                $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=seq&startTs={baseTs}&endTs={endTs}&limit={acked + 100}&orderBy=ASC");
            var values = raw["seq"]!.AsArray();
            Assert.Equal(acked, values.Count);
            var seen = new HashSet<long>();
            foreach (var point in values)
            {
                var ts = point!["ts"]!.GetValue<long>();
                var seq = long.Parse(point["value"]!.ToString(), inv);
                Assert.Equal(ts - baseTs, seq - loadtool::Perf.Load.Wire.MqttWire.UniqueSeqBase);
                Assert.True(seen.Add(seq), $"seq {seq} stored twice");
            }
        }
        finally
        {
            File.Delete(json);
        }
    }
}
