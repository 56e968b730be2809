using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Perf.Core.Tests;

namespace Perf.EndToEnd;

/// <summary>
/// REST and the HTTP device API while the disk fails a write: a change that could not be written is answered 500 with
/// the JSON error body naming the cause (the device API: the bare status), not an empty 500, the log names the request and the cause but not the device's
/// token, and once the disk works again the same calls succeed.
/// </summary>
public sealed class StorageFailureTests
{
    [Fact]
    public async Task FailedWrite_AnswersRest500WithErrorBody_DeviceApi500_ThenWorksAgain()
    {
        await using var fixture = new HostFixture();
        FailingDevice? failing = null;
        var settings = HostFixture.FreePortSettings(fixture.DataDir);
        settings["MQTT_ENABLED"] = "false";
        settings["COAP_ENABLED"] = "false";
        settings["TCP_INTEGRATION_ENABLED"] = "false";
        settings["EDGES_ENABLED"] = "false";
        await fixture.StartWithAsync(settings, core =>
        {
            core.LogReopenInterval = TimeSpan.Zero; // the log is opened again on the next write once the disk works
            core.WrapLogDevice = device => failing = new FailingDevice(device);
        });
        var capture = LogCapture.Attach(fixture);
        using var rest = await Rest.LoginAsync(fixture);
        var (_, token) = await rest.CreateDeviceAsync("storage-ok");

        failing!.Failing = true;
        var mark = capture.Mark();
        var created = await rest.Http.PostAsJsonAsync("/api/device", new { name = "storage-failed", type = "default" });
        Assert.Equal(HttpStatusCode.InternalServerError, created.StatusCode);
        var body = await created.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(500, body!["status"]!.GetValue<int>());
        Assert.Equal(2, body["errorCode"]!.GetValue<int>());
        Assert.Contains("Storage is unavailable", body["message"]!.GetValue<string>());
        Assert.DoesNotContain(fixture.DataDir, body["message"]!.GetValue<string>());
        Assert.Equal(1, capture.Count(LogLevel.Error, "REST POST /api/device failed: storage is unavailable", mark));

        var posted = await rest.Http.PostAsync($"/api/v1/{token}/telemetry", new StringContent("{\"t\":1}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.InternalServerError, posted.StatusCode);
        Assert.DoesNotContain(capture.Lines, line => line.Text.Contains(token, StringComparison.Ordinal));

        // Nothing was created by the refused call; with the disk back, the same calls succeed.
        failing.Failing = false;
        var devices = await rest.GetAsync("/api/tenant/devices?pageSize=100&page=0&textSearch=storage-failed");
        Assert.Empty(devices["data"]!.AsArray());
        var again = await rest.Http.PostAsJsonAsync("/api/device", new { name = "storage-failed", type = "default" });
        Assert.Equal(HttpStatusCode.OK, again.StatusCode);
        var postedAgain = await rest.Http.PostAsync($"/api/v1/{token}/telemetry", new StringContent("{\"t\":2}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, postedAgain.StatusCode);
    }
}
