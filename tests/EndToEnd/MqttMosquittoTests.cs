using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>The seed article's own mosquitto_pub / mosquitto_sub commands and JSON files against the real host.</summary>
[Collection(HostCollection.Name)]
public sealed class MqttMosquittoTests(HostFixture fixture)
{
    // mosquitto-telemetry.sh, verbatim.
    private const string TelemetryScript = """
        # Publish data as an object without timestamp (server-side timestamp will be used)
        mosquitto_pub -d -h "127.0.0.1" -t "v1/devices/me/telemetry" -u "$ACCESS_TOKEN" -f "telemetry-data-as-object.json"
        # Publish data as an array of objects without timestamp (server-side timestamp will be used)
        mosquitto_pub -d -h "127.0.0.1" -t "v1/devices/me/telemetry" -u "$ACCESS_TOKEN" -f "telemetry-data-as-array.json"
        # Publish data as an object with timestamp (server-side timestamp will be used)
        mosquitto_pub -d -h "127.0.0.1" -t "v1/devices/me/telemetry" -u "$ACCESS_TOKEN" -f "telemetry-data-with-ts.json"
        """;

    // mosquitto-attributes-publish.sh, verbatim.
    private const string AttributesScript = """
        # Publish client-side attributes update
        mosquitto_pub -d -h "127.0.0.1" -t "v1/devices/me/attributes" -u "$ACCESS_TOKEN" -f "new-attributes-values.json"
        """;

    // mosquitto-attributes-subscribe.sh, verbatim.
    private const string SubscribeScript = """
        # Subscribes to attribute updates
        mosquitto_sub -d -h "127.0.0.1" -t "v1/devices/me/attributes" -u "$ACCESS_TOKEN"
        """;

    /// <summary>
    /// MQTT basic credentials set over REST as the reference takes them (credentialsValue a JSON string), then
    /// <c>mosquitto_pub -i -u -P</c>: the right three connect and publish; a wrong password gets CONNACK 5.
    /// </summary>
    [Fact]
    public async Task MqttBasicCredentials_FromRest_ConnectMosquittoPub_AndAWrongPasswordIsRefused()
    {
        Assert.True(MosquittoShell.Available, "mosquitto-clients is not installed (apt-get install -y mosquitto-clients)");
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mosq-basic");
        var saved = await rest.Http.PostAsJsonAsync("/api/device/credentials", new
        {
            deviceId = new { entityType = "DEVICE", id },
            credentialsType = "MQTT_BASIC",
            credentialsValue = "{\"clientId\":\"basic-client\",\"userName\":\"basic-user\",\"password\":\"basic-secret\"}",
        });
        var body = (await saved.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.True(saved.IsSuccessStatusCode, body.ToJsonString());
        Assert.Equal("MQTT_BASIC", body["credentialsType"]!.GetValue<string>());
        Assert.Equal(64, body["credentialsId"]!.GetValue<string>().Length);

        using var shell = new MosquittoShell(fixture, token);
        var (exit, stdout, stderr) = await shell.RunAsync(
            "mosquitto_pub -d -h 127.0.0.1 -q 1 -i basic-client -u basic-user -P basic-secret -t v1/devices/me/telemetry -m '{\"basic\":7}'");
        Assert.True(exit == 0, $"exit {exit}: {stdout} {stderr}");
        Assert.Contains("received CONNACK (0)", stdout, StringComparison.Ordinal);
        await Eventually.TrueAsync(async () => (await rest.LatestTimeseriesAsync(id, "basic")).Count == 1);
        Assert.Equal("7", (await rest.LatestTimeseriesAsync(id, "basic"))["basic"].Value);

        var (refusedExit, refusedOut, refusedErr) = await shell.RunAsync(
            "mosquitto_pub -d -h 127.0.0.1 -q 1 -i basic-client -u basic-user -P wrong -t v1/devices/me/telemetry -m '{\"basic\":8}'");
        Assert.NotEqual(0, refusedExit);
        Assert.Contains("received CONNACK (5)", refusedOut + refusedErr, StringComparison.Ordinal);
        // The access token the device had before stopped working.
        var (_, tokenOut, tokenErr) = await shell.RunAsync("mosquitto_pub -d -h 127.0.0.1 -u \"$ACCESS_TOKEN\" -t v1/devices/me/telemetry -m '{\"basic\":9}'");
        Assert.Contains("received CONNACK (5)", tokenOut + tokenErr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SeedTelemetryScript_StoresAllThreeForms_ReadableOverRest()
    {
        Assert.True(MosquittoShell.Available, "mosquitto-clients is not installed (apt-get install -y mosquitto-clients)");
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mosq-telemetry");
        using var shell = new MosquittoShell(fixture, token);
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var (exit, stdout, stderr) = await shell.RunAsync("set -e\n" + TelemetryScript);

        Assert.True(exit == 0, $"exit {exit}: {stdout} {stderr}");
        Assert.Equal(3, CountOccurrences(stdout, "received CONNACK (0)"));
        await Eventually.TrueAsync(async () => (await rest.LatestTimeseriesAsync(id, "key1,key2,stringKey")).Count == 3);
        var latest = await rest.LatestTimeseriesAsync(id, "stringKey,booleanKey,doubleKey,longKey,jsonKey,key1,key2");
        Assert.Equal("value1", latest["stringKey"].Value);
        Assert.True(latest["stringKey"].Ts >= before, "the object form takes the server's timestamp");
        Assert.Equal("true", latest["booleanKey"].Value);
        Assert.Equal(42.0, double.Parse(latest["doubleKey"].Value, CultureInfo.InvariantCulture));
        Assert.Equal("73", latest["longKey"].Value);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"someNumber":42,"someArray":[1,2,3],"someNestedObject":{"key":"value"}}"""), JsonNode.Parse(latest["jsonKey"].Value)));
        Assert.Equal("value1", latest["key1"].Value);
        Assert.Equal("true", latest["key2"].Value);
        Assert.True(latest["key1"].Ts >= before);

        // The ts form went into history at the device's own timestamp.
        // The third publish is QoS 0 (no PUBACK to wait for): poll until its ts-form entries are stored.
        JsonObject? history = null;
        await Eventually.TrueAsync(async () =>
        {
            history = await rest.Http.GetFromJsonAsync<JsonObject>(
                $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=stringKey,longKey&startTs=1451649600000&endTs=1451649601000");
            return history?["stringKey"] is not null && history["longKey"] is not null;
        });
        Assert.Equal(1451649600512, history!["stringKey"]![0]!["ts"]!.GetValue<long>());
        Assert.Equal("value1", history["stringKey"]![0]!["value"]!.GetValue<string>());
        Assert.Equal("73", history["longKey"]![0]!["value"]!.GetValue<string>());
    }

    [Fact]
    public async Task SeedAttributesScript_StoresClientAttributes_ReadableOverRest()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mosq-attributes");
        using var shell = new MosquittoShell(fixture, token);

        var (exit, stdout, stderr) = await shell.RunAsync(AttributesScript);

        Assert.True(exit == 0, $"exit {exit}: {stdout} {stderr}");
        // QoS 0 (mosquitto_pub's default) has no acknowledgement to wait for: the commit may trail the exit by milliseconds.
        await Eventually.TrueAsync(async () => (await rest.AttributesAsync(id, "CLIENT_SCOPE")).ContainsKey("jsonKey"));
        var client = await rest.AttributesAsync(id, "CLIENT_SCOPE");
        Assert.Equal("\"value1\"", client["stringKey"]);
        Assert.Equal("true", client["booleanKey"]);
        Assert.Equal(42.0, double.Parse(client["doubleKey"], CultureInfo.InvariantCulture));
        Assert.Equal("73", client["longKey"]);
        Assert.Contains("someNestedObject", client["jsonKey"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task SeedSubscribeScript_ReceivesSharedAttributeSavedOverRest()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mosq-subscribe");
        // -C 1 (from the options file): exit after the first message, so the seed command line stays as written.
        using var shell = new MosquittoShell(fixture, token, subOptions: "-C 1");
        using var process = shell.Start(SubscribeScript);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        try
        {
            // mosquitto_sub block-buffers its -d output into a pipe, so the SUBACK is observed in the session table instead.
            await Eventually.TrueAsync(() => fixture.Host.Engine.Sessions.GetSessions(id).Any(s => s.WantsAttributeUpdates));
            await rest.SaveSharedAsync(id, """{"key1":"value1"}""");
            await process.WaitForExitAsync(cts.Token);
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
        }

        Assert.True(process.ExitCode == 0, await stderr);
        // The seed: "the client will receive the following update: {"key1":"value1"}".
        Assert.Contains("{\"key1\":\"value1\"}", await stdout, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-u \"not-a-token\"", "not authorised")]
    [InlineData("", "bad user name or password")]
    [InlineData("-u \"\"", "bad user name or password")]
    public async Task MosquittoPub_IsRefused_ForBadOrMissingToken(string userOption, string expected)
    {
        using var shell = new MosquittoShell(fixture, "unused");

        var (exit, stdout, stderr) = await shell.RunAsync($"mosquitto_pub -d -h \"127.0.0.1\" -t \"v1/devices/me/telemetry\" {userOption} -m '{{\"a\":1}}'");

        Assert.NotEqual(0, exit);
        Assert.Contains(expected, stdout + stderr, StringComparison.OrdinalIgnoreCase);
    }

    private static int CountOccurrences(string text, string value)
    {
        int count = 0;
        for (int i = text.IndexOf(value, StringComparison.Ordinal); i >= 0; i = text.IndexOf(value, i + 1, StringComparison.Ordinal))
        {
            count++;
        }

        return count;
    }
}
