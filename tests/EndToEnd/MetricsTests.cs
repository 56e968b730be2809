using System.Globalization;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Perf.Api.Hosting;

namespace Perf.EndToEnd;

/// <summary>/metrics is Prometheus text and its counters follow real MQTT and HTTP traffic.</summary>
[Collection(HostCollection.Name)]
public sealed partial class MetricsTests(HostFixture fixture)
{
    [Fact]
    public async Task Metrics_IsPrometheusText_WithProcessAndCoreFamilies()
    {
        using var http = fixture.CreateHttpClient();
        using var response = await http.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType, StringComparison.Ordinal);
        var text = await response.Content.ReadAsStringAsync();
        Assert.Contains("# TYPE perf_host_process_working_set gauge", text, StringComparison.Ordinal);
        Assert.True(Sum(text, "perf_host_process_allocated") > 0, text);
        Assert.True(Sum(text, "perf_host_process_gc_collections") >= 0);
        // The data directory's file system: free bytes as the OS reports them for it, and the log writable.
        Assert.Contains("# TYPE perf_host_data_dir_free gauge", text, StringComparison.Ordinal);
        var free = Sum(text, "perf_host_data_dir_free");
        var actual = new DriveInfo(fixture.DataDir).AvailableFreeSpace;
        Assert.True(free > 0 && Math.Abs(free - actual) < 1024.0 * 1024 * 1024, $"{free} against {actual}");
        Assert.Equal(1, Sum(text, "perf_host_storage_available"));
        // The low-space watch on the same file system checked it at start and found it above its level (1 GiB).
        var watch = fixture.Host.Services.GetServices<IHostedService>().OfType<DataDirSpaceWatch>().Single();
        Assert.True(watch.LastFree > 0 && Math.Abs(watch.LastFree - actual) < 1024.0 * 1024 * 1024, $"{watch.LastFree} against {actual}");
        Assert.False(watch.Low);

        // Kestrel's meter: open connections (this request's among them) but not its queue levels (README).
        Assert.True(Sum(text, "microsoft_aspnetcore_server_kestrel_kestrel_active_connections") >= 1, text);
        Assert.DoesNotContain("kestrel_queued_connections", text, StringComparison.Ordinal);
        Assert.DoesNotContain("kestrel_queued_requests", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_CountersMove_AfterMqttAndHttpTraffic()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (deviceId, token, _) = await rest.CreateDeviceAsync("metrics");
        using var http = fixture.CreateHttpClient();
        var before = await ScrapeAsync(http);

        await using (var device = await MqttDevice.ConnectAsync(fixture, token))
        {
            for (var i = 0; i < 5; i++)
            {
                await device.PublishAsync("v1/devices/me/telemetry", $"{{\"temperature\":{20 + i}}}");
            }

            // Invalid JSON on QoS 0 is acknowledged-by-dropping and counted as a rejected input.
            await device.PublishAsync("v1/devices/me/telemetry", "{not json", MQTTnet.Protocol.MqttQualityOfServiceLevel.AtMostOnce);
            await rest.LatestTimeseriesAsync(deviceId, "temperature");
            var during = await ScrapeAsync(http);
            Assert.True(Sum(during, "perf_core_sessions", "transport=\"mqtt\"") >= 1, during);
            Assert.True(Sum(during, "perf_mqtt_connections") >= 1, during);
        }

        using (var body = new StringContent("{\"humidity\":40}", Encoding.UTF8, "application/json"))
        {
            using var posted = await http.PostAsync($"/api/v1/{token}/telemetry", body);
            Assert.Equal(HttpStatusCode.OK, posted.StatusCode);
        }

        var after = await ScrapeAsync(http);
        Assert.True(Sum(after, "perf_mqtt_messages_in", "type=\"publish\"") - Sum(before, "perf_mqtt_messages_in", "type=\"publish\"") >= 6);
        Assert.True(Sum(after, "perf_mqtt_bytes_in") > Sum(before, "perf_mqtt_bytes_in"));
        Assert.True(Sum(after, "perf_mqtt_acks") - Sum(before, "perf_mqtt_acks") >= 5);
        Assert.True(Sum(after, "perf_http_messages_in", "type=\"telemetry\"") - Sum(before, "perf_http_messages_in", "type=\"telemetry\"") >= 1);
        Assert.True(Sum(after, "perf_core_uplinks", "status=\"ok\"") - Sum(before, "perf_core_uplinks", "status=\"ok\"") >= 6);
        Assert.True(Sum(after, "perf_core_uplinks", "status=\"bad_payload\"") - Sum(before, "perf_core_uplinks", "status=\"bad_payload\"") >= 1);
        Assert.True(Sum(after, "perf_core_commit_duration_count") > Sum(before, "perf_core_commit_duration_count"), after);
    }

    [Fact]
    public async Task Metrics_CountPersistentRpcTransitions_ByStatus()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (deviceId, _, _) = await rest.CreateDeviceAsync("metrics-rpc");
        using var http = fixture.CreateHttpClient();
        var before = Sum(await ScrapeAsync(http), "perf_core_rpc_persistent", "status=\"queued\"");
        using var request = new StringContent("{\"method\":\"ping\",\"params\":{},\"persistent\":true}", Encoding.UTF8, "application/json");
        using var response = await rest.Http.PostAsync($"/api/rpc/twoway/{deviceId}", request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var after = Sum(await ScrapeAsync(http), "perf_core_rpc_persistent", "status=\"queued\"");
        Assert.True(after - before >= 1);
    }

    [Fact]
    public async Task Metrics_CountCoapDatagramsInAndOut()
    {
        using var http = fixture.CreateHttpClient();
        var before = await ScrapeAsync(http);
        using var udp = new System.Net.Sockets.UdpClient();
        udp.Connect(HostFixture.Loopback(fixture.Endpoints.Coap!));
        // RFC 7252 §4.3 ping (empty CON) -> RST: one datagram in, one out.
        await udp.SendAsync(new byte[] { 0x40, 0x00, 0x43, 0x21 });
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await udp.ReceiveAsync(cts.Token);
        // The server counts a datagram as sent once SendTo returned, which can be after the client already has
        // it: wait for the count rather than reading it once.
        var after = before;
        await Eventually.TrueAsync(async () =>
        {
            after = await ScrapeAsync(http);
            return Sum(after, "perf_coap_messages_out") - Sum(before, "perf_coap_messages_out") >= 1;
        });
        Assert.True(Sum(after, "perf_coap_messages_in") - Sum(before, "perf_coap_messages_in") >= 1, after);
        Assert.True(Sum(after, "perf_coap_bytes_in") > Sum(before, "perf_coap_bytes_in"));
    }

    private static async Task<string> ScrapeAsync(HttpClient http) => await http.GetStringAsync("/metrics");

    /// <summary>Sum of every sample of <paramref name="family"/> whose labels contain <paramref name="label"/>.</summary>
    internal static double Sum(string text, string family, string? label = null)
    {
        double total = 0;
        foreach (Match m in Sample().Matches(text))
        {
            if (m.Groups["name"].Value == family && (label is null || m.Groups["labels"].Value.Contains(label, StringComparison.Ordinal)))
            {
                total += double.Parse(m.Groups["value"].Value, CultureInfo.InvariantCulture);
            }
        }

        return total;
    }

    [GeneratedRegex(@"^(?<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?<labels>[^}]*)\})? (?<value>\S+)", RegexOptions.Multiline)]
    private static partial Regex Sample();
}
