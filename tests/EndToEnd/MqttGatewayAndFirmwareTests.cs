using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using MQTTnet.Protocol;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>Gateway API and firmware download over MQTT against the real host.</summary>
[Collection(HostCollection.Name)]
public sealed class MqttGatewayAndFirmwareTests(HostFixture fixture)
{
    [Fact]
    public async Task Gateway_ConnectsChildren_PostsTheirData_AnswersAttributeRequests_AndRelaysRpc()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("gw", gateway: true);
        await using var gateway = await MqttDevice.ConnectAsync(fixture, token, "v1/gateway/attributes", "v1/gateway/rpc", "v1/gateway/attributes/response");
        string a = "child-a-" + Guid.NewGuid().ToString("N")[..6], b = "child-b-" + Guid.NewGuid().ToString("N")[..6];
        long ts = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        await gateway.PublishAsync("v1/gateway/connect", $$"""{"device":"{{a}}","type":"thermometer"}""");
        await gateway.PublishAsync("v1/gateway/telemetry", $$$"""{"{{{a}}}":[{"ts":{{{ts}}},"values":{"temperature":21.5}}],"{{{b}}}":[{"ts":{{{ts}}},"values":{"humidity":40}}]}""");
        await gateway.PublishAsync("v1/gateway/attributes", $$$"""{"{{{a}}}":{"model":"T1000"}}""");

        var aId = await rest.DeviceIdByNameAsync(a);
        var bId = await rest.DeviceIdByNameAsync(b);
        var child = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/device/{aId}");
        Assert.Equal("thermometer", child!["type"]!.GetValue<string>());
        Assert.Equal(("21.5"), (await rest.LatestTimeseriesAsync(aId, "temperature"))["temperature"].Value);
        Assert.Equal(ts, (await rest.LatestTimeseriesAsync(aId, "temperature"))["temperature"].Ts);
        Assert.Equal("40", (await rest.LatestTimeseriesAsync(bId, "humidity"))["humidity"].Value);
        Assert.Equal("\"T1000\"", (await rest.AttributesAsync(aId, "CLIENT_SCOPE"))["model"]);

        // Shared attribute of a child: pushed on v1/gateway/attributes with the device name.
        await rest.SaveSharedAsync(aId, """{"setpoint":19}""");
        var push = await gateway.ReceiveJsonAsync("v1/gateway/attributes");
        Assert.Equal(a, push["device"]!.GetValue<string>());
        Assert.Equal(19, push["data"]!["setpoint"]!.GetValue<int>());
        // At the QoS the gateway subscribed at, as the reference publishes (and re-sent until PUBACKed).
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, gateway.QoSByTopic["v1/gateway/attributes"]);

        // Attribute request for a child.
        await gateway.PublishAsync("v1/gateway/attributes/request", $$"""{"id":7,"device":"{{a}}","client":false,"key":"setpoint"}""");
        var reply = await gateway.ReceiveJsonAsync("v1/gateway/attributes/response");
        Assert.Equal(7, reply["id"]!.GetValue<int>());
        Assert.Equal(a, reply["device"]!.GetValue<string>());
        Assert.Equal(19, reply["value"]!.GetValue<int>());
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, gateway.QoSByTopic["v1/gateway/attributes/response"]);

        await gateway.PublishAsync("v1/gateway/attributes/request", $$"""{"id":8,"device":"{{a}}","client":true,"keys":["model"]}""");
        var clientReply = await gateway.ReceiveJsonAsync("v1/gateway/attributes/response");
        Assert.Equal(8, clientReply["id"]!.GetValue<int>());
        Assert.Equal("T1000", clientReply["values"]!["model"]!.GetValue<string>());

        // Nothing found: neither "value" nor "values", as the reference.
        await gateway.PublishAsync("v1/gateway/attributes/request", $$"""{"id":9,"device":"{{a}}","client":false,"key":"missing"}""");
        Assert.Equal($$"""{"id":9,"device":"{{a}}"}""", (await gateway.ReceiveJsonAsync("v1/gateway/attributes/response")).ToJsonString());

        // Server-side RPC to a child travels on v1/gateway/rpc; the gateway's reply completes it.
        var call = fixture.Host.Engine.Rpc.SendAsync(aId, "setTemperature", """{"value":20}""", oneWay: false, timeoutMs: 10_000, CancellationToken.None);
        var rpc = await gateway.ReceiveJsonAsync("v1/gateway/rpc");
        Assert.Equal(a, rpc["device"]!.GetValue<string>());
        Assert.Equal("setTemperature", rpc["data"]!["method"]!.GetValue<string>());
        Assert.Equal(20, rpc["data"]!["params"]!["value"]!.GetValue<int>());
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, gateway.QoSByTopic["v1/gateway/rpc"]);
        int rpcId = rpc["data"]!["id"]!.GetValue<int>();
        await gateway.PublishAsync("v1/gateway/rpc", $$$"""{"device":"{{{a}}}","id":{{{rpcId}}},"data":{"success":true}}""");
        var outcome = await call;
        Assert.Equal(RpcStatus.Success, outcome.Status);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"success":true}"""), JsonNode.Parse(outcome.ResponseJson!)), outcome.ResponseJson);

        // After disconnect the child no longer has a session: RPC to it finds the device offline.
        await gateway.PublishAsync("v1/gateway/disconnect", $$"""{"device":"{{a}}"}""");
        var offline = await fixture.Host.Engine.Rpc.SendAsync(aId, "ping", "{}", oneWay: false, timeoutMs: 300, CancellationToken.None);
        Assert.Equal(RpcStatus.DeviceOffline, offline.Status);
    }

    [Fact]
    public async Task GatewayClaim_RecordsEachChildsClaim()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("gw-claim", gateway: true);
        await using var gateway = await MqttDevice.ConnectAsync(fixture, token);
        string a = "claim-a-" + Guid.NewGuid().ToString("N")[..6], b = "claim-b-" + Guid.NewGuid().ToString("N")[..6];

        await gateway.PublishAsync("v1/gateway/claim", $$$"""{"{{{a}}}":{"secretKey":"value_A","durationMs":60000},"{{{b}}}":{"secretKey":"value_B","durationMs":60000}}""");

        foreach (var (name, secret) in new[] { (a, "value_A"), (b, "value_B") })
        {
            var server = await rest.AttributesAsync(await rest.DeviceIdByNameAsync(name), "SERVER_SCOPE");
            Assert.Equal("true", server["claimingAllowed"]);
            Assert.Contains($"\"secretKey\":\"{secret}\"", server["claimingData"], StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task NonGatewayDevice_GatewayTopics_AreAcknowledgedAndIgnored()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("not-gw");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);
        string name = "ghost-" + Guid.NewGuid().ToString("N")[..6];

        await device.PublishAsync("v1/gateway/telemetry", $$$"""{"{{{name}}}":[{"ts":1,"values":{"x":1}}]}""");

        var lookup = await rest.Http.GetAsync($"/api/tenant/devices?deviceName={name}");
        Assert.Equal(System.Net.HttpStatusCode.NotFound, lookup.StatusCode);
    }

    [Fact]
    public async Task Firmware_UploadedAndAssignedOverRest_IsDownloadedInChunksOverMqtt_WithMatchingChecksum()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (deviceId, token, _) = await rest.CreateDeviceAsync("fw-device");
        var firmware = new byte[20_000 + 123];
        new Random(42).NextBytes(firmware);
        string expectedChecksum = Convert.ToHexStringLower(SHA256.HashData(firmware));
        string version = "1." + Guid.NewGuid().ToString("N")[..6];

        // Step 1: announce; step 2: upload the file (multipart, as the reference's UI does).
        var created = await rest.Http.PostAsJsonAsync("/api/otaPackage", new { title = "fw", version, type = "FIRMWARE" });
        Assert.Equal(System.Net.HttpStatusCode.OK, created.StatusCode);
        var info = (await created.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.False(info["hasData"]!.GetValue<bool>());
        var otaId = Guid.Parse(info["id"]!["id"]!.GetValue<string>());
        using (var form = new MultipartFormDataContent())
        {
            var file = new ByteArrayContent(firmware);
            file.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            form.Add(file, "file", "fw.bin");
            var upload = await rest.Http.PostAsync($"/api/otaPackage/{otaId}?checksumAlgorithm=SHA256", form);
            Assert.Equal(System.Net.HttpStatusCode.OK, upload.StatusCode);
            var uploaded = (await upload.Content.ReadFromJsonAsync<JsonObject>())!;
            Assert.True(uploaded["hasData"]!.GetValue<bool>());
            Assert.Equal(expectedChecksum, uploaded["checksum"]!.GetValue<string>());
            Assert.Equal(firmware.Length, uploaded["dataSize"]!.GetValue<long>());
        }

        var fetched = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/otaPackage/{otaId}");
        Assert.Equal(version, fetched!["version"]!.GetValue<string>());
        var page = await rest.Http.GetFromJsonAsync<JsonObject>("/api/otaPackages?pageSize=100&page=0");
        Assert.Contains(page!["data"]!.AsArray(), p => p!["id"]!["id"]!.GetValue<string>() == otaId.ToString());
        Assert.Equal(firmware, await rest.Http.GetByteArrayAsync($"/api/otaPackage/{otaId}/download"));

        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/attributes", "v2/fw/response/+/chunk/+");
        var assigned = await rest.Http.PostAsync($"/api/device/{deviceId}/firmware/{otaId}", null);
        Assert.Equal(System.Net.HttpStatusCode.OK, assigned.StatusCode);

        // The assignment arrives as the fw_* shared attributes.
        var fw = await device.ReceiveJsonAsync("v1/devices/me/attributes");
        Assert.Equal("fw", fw["fw_title"]!.GetValue<string>());
        Assert.Equal(version, fw["fw_version"]!.GetValue<string>());
        Assert.Equal("SHA256", fw["fw_checksum_algorithm"]!.GetValue<string>());
        Assert.Equal(firmware.Length, fw["fw_size"]!.GetValue<long>());
        string checksum = fw["fw_checksum"]!.GetValue<string>();

        // Chunks of 4096 until a zero-length chunk, as the seed describes.
        const int chunkSize = 4096;
        using var downloaded = new MemoryStream();
        for (int chunk = 0; ; chunk++)
        {
            Assert.True(chunk < 100, "the server never sent an empty chunk");
            await device.PublishAsync($"v2/fw/request/1/chunk/{chunk}", Encoding.UTF8.GetBytes(chunkSize.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            var (_, data) = await device.ReceiveAsync(t => t == $"v2/fw/response/1/chunk/{chunk}");
            if (data.Length == 0)
            {
                Assert.Equal((firmware.Length + chunkSize - 1) / chunkSize, chunk);
                break;
            }

            Assert.True(data.Length <= chunkSize);
            downloaded.Write(data);
        }

        Assert.Equal(checksum, Convert.ToHexStringLower(SHA256.HashData(downloaded.ToArray())));
        Assert.Equal(expectedChecksum, checksum);
    }

    [Fact]
    public async Task Firmware_AssignedThroughTheDeviceBody_SetsTheSharedAttributes()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (deviceId, _, name) = await rest.CreateDeviceAsync("fw-body");
        var created = await rest.Http.PostAsJsonAsync("/api/otaPackage", new { title = "fw-body", version = Guid.NewGuid().ToString("N")[..6], type = "FIRMWARE" });
        var otaId = Guid.Parse((await created.Content.ReadFromJsonAsync<JsonObject>())!["id"]!["id"]!.GetValue<string>());
        using (var raw = new ByteArrayContent(new byte[] { 1, 2, 3 }))
        {
            raw.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            Assert.Equal(System.Net.HttpStatusCode.OK, (await rest.Http.PostAsync($"/api/otaPackage/{otaId}", raw)).StatusCode);
        }

        var update = await rest.Http.PostAsJsonAsync("/api/device", new
        {
            id = new { entityType = "DEVICE", id = deviceId },
            name,
            type = "default",
            firmwareId = new { entityType = "OTA_PACKAGE", id = otaId },
        });

        Assert.Equal(System.Net.HttpStatusCode.OK, update.StatusCode);
        Assert.Equal(otaId.ToString(), (await update.Content.ReadFromJsonAsync<JsonObject>())!["firmwareId"]!["id"]!.GetValue<string>());
        var shared = await rest.AttributesAsync(deviceId, "SHARED_SCOPE");
        Assert.Equal("3", shared["fw_size"]);
    }
}
