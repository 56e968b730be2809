using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using MQTTnet;
using MQTTnet.Adapter;
using MQTTnet.Protocol;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>The MQTT device API through MQTTnet against the real host, read back over REST.</summary>
[Collection(HostCollection.Name)]
public sealed class MqttDeviceApiTests(HostFixture fixture)
{
    [Fact]
    public async Task Connect_IsRefusedWithNotAuthorized_ForAnUnknownToken()
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, await ConnectResultAsync(client, "no-such-token"));
    }

    [Fact]
    public async Task Connect_IsRefusedWithBadUserNameOrPassword_WithoutAToken()
    {
        using var client = new MqttClientFactory().CreateMqttClient();
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, await ConnectResultAsync(client, null));
    }

    /// <summary>MQTTnet 5 reports a refused CONNECT by throwing with the CONNACK code in the message, or (other versions) in the result.</summary>
    private async Task<MqttClientConnectResultCode> ConnectResultAsync(IMqttClient client, string? token)
    {
        try
        {
            return (await client.ConnectAsync(MqttDevice.Options(fixture, token))).ResultCode;
        }
        catch (MqttConnectingFailedException ex)
        {
            foreach (var code in Enum.GetValues<MqttClientConnectResultCode>())
            {
                if (code != MqttClientConnectResultCode.Success && ex.Message.Contains(code.ToString(), StringComparison.Ordinal))
                {
                    return code;
                }
            }

            throw;
        }
    }

    [Fact]
    public async Task QoS1Telemetry_IsReadableOverRest_AsSoonAsItIsAcknowledged_OnV1AndV2Topics()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-telemetry");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);

        await device.PublishAsync("v1/devices/me/telemetry", """{"temperature":25.7,"on":true}""");
        var latest = await rest.LatestTimeseriesAsync(id, "temperature,on");
        Assert.Equal("25.7", latest["temperature"].Value);
        Assert.Equal("true", latest["on"].Value);

        await device.PublishAsync("v2/t", """[{"ts":1700000000000,"values":{"temperature":26.1}},{"ts":1700000001000,"values":{"temperature":26.2}}]""");
        await device.PublishAsync("v2/a", """{"firmware":"1.2.3"}""");
        var history = await rest.Http.GetFromJsonAsync<JsonObject>(
            $"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=1700000000000&endTs=1700000002000");
        Assert.Equal(2, history!["temperature"]!.AsArray().Count);
        Assert.Equal("\"1.2.3\"", (await rest.AttributesAsync(id, "CLIENT_SCOPE"))["firmware"]);
    }

    [Fact]
    public async Task AttributeRequest_AnswersClientAndSharedKeys_OnTheResponseTopic()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-attr-request");
        await rest.SaveSharedAsync(id, """{"shared1":"s","shared3":3}""");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/attributes/response/+");
        await device.PublishAsync("v1/devices/me/attributes", """{"attribute1":"value1","attribute3":true}""");

        // The seed's request, verbatim.
        await device.PublishAsync("v1/devices/me/attributes/request/1", """{"clientKeys":"attribute1,attribute2", "sharedKeys":"shared1,shared2"}""");

        var reply = await device.ReceiveJsonAsync("v1/devices/me/attributes/response/1");
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"client":{"attribute1":"value1"},"shared":{"shared1":"s"}}"""), reply), reply.ToJsonString());

        // As the reference's JsonConverter: a scope with nothing found is left out, and nothing found at all is {}.
        await device.PublishAsync("v1/devices/me/attributes/request/2", """{"clientKeys":"attribute2","sharedKeys":"shared1"}""");
        Assert.Equal("""{"shared":{"shared1":"s"}}""", (await device.ReceiveJsonAsync("v1/devices/me/attributes/response/2")).ToJsonString());
        await device.PublishAsync("v1/devices/me/attributes/request/3", """{"clientKeys":"nothing","sharedKeys":"none"}""");
        Assert.Equal("{}", (await device.ReceiveJsonAsync("v1/devices/me/attributes/response/3")).ToJsonString());
    }

    [Fact]
    public async Task V2AttributeRequest_WithoutKeyLists_AnswersEveryAttribute_OnTheShortTopic()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-v2-request");
        await rest.SaveSharedAsync(id, """{"mode":"eco"}""");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v2/a/res/+");
        await device.PublishAsync("v2/a", """{"serial":"X1"}""");

        await device.PublishAsync("v2/a/req/5", "{}");

        var reply = await device.ReceiveJsonAsync("v2/a/res/5");
        Assert.Equal("X1", reply["client"]!["serial"]!.GetValue<string>());
        Assert.Equal("eco", reply["shared"]!["mode"]!.GetValue<string>());
    }

    [Fact]
    public async Task Claim_IsRecordedAsServerAttributes()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-claim");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);

        await device.PublishAsync("v1/devices/me/claim", """{"secretKey":"value", "durationMs":60000}""");

        var server = await rest.AttributesAsync(id, "SERVER_SCOPE");
        Assert.Equal("true", server["claimingAllowed"]);
        Assert.Contains("\"secretKey\":\"value\"", server["claimingData"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task SharedAttributeSavedOverRest_IsPushedToTheSubscribedDevice()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-attr-push");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/attributes");

        await rest.SaveSharedAsync(id, """{"targetTemperature":22.5}""");

        var push = await device.ReceiveJsonAsync("v1/devices/me/attributes");
        Assert.Equal(22.5, push["targetTemperature"]!.GetValue<double>());
    }

    [Fact]
    public async Task ServerSideRpc_ReachesTheDevice_AndTheOutcomeCarriesItsReply()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-rpc");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/rpc/request/+");

        var call = fixture.Host.Engine.Rpc.SendAsync(id, "setGpio", """{"pin":4,"value":1}""", oneWay: false, timeoutMs: 10_000, CancellationToken.None);
        var (topic, payload) = await device.ReceiveAsync(t => t.StartsWith("v1/devices/me/rpc/request/", StringComparison.Ordinal));
        var request = JsonNode.Parse(payload)!;
        Assert.Equal("setGpio", request["method"]!.GetValue<string>());
        Assert.Equal(4, request["params"]!["pin"]!.GetValue<int>());
        var requestId = topic["v1/devices/me/rpc/request/".Length..];
        await device.PublishAsync("v1/devices/me/rpc/response/" + requestId, """{"pin":4,"value":1}""");

        var outcome = await call;
        Assert.Equal(RpcStatus.Success, outcome.Status);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"pin":4,"value":1}"""), JsonNode.Parse(outcome.ResponseJson!)));
    }

    [Fact]
    public async Task ServerSideRpc_SentBeforeTheDeviceSubscribes_IsDeliveredOnSubscribe()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-rpc-late");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);

        var call = fixture.Host.Engine.Rpc.SendAsync(id, "reboot", "{}", oneWay: true, timeoutMs: 10_000, CancellationToken.None);
        await device.SubscribeAsync("v2/r/req/+");
        var (topic, _) = await device.ReceiveAsync(t => t.StartsWith("v2/r/req/", StringComparison.Ordinal));

        Assert.Equal(RpcStatus.Success, (await call).Status);
        Assert.Matches("^v2/r/req/[0-9]+$", topic);
    }

    [Fact]
    public async Task LateRpcReply_IsAcknowledged_AndTheSessionStays()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-rpc-late-reply");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/rpc/request/+");

        var timedOut = await fixture.Host.Engine.Rpc.SendAsync(id, "slow", "{}", oneWay: false, timeoutMs: 200, CancellationToken.None);
        Assert.Equal(RpcStatus.Timeout, timedOut.Status);
        var (topic, _) = await device.ReceiveAsync(t => t.StartsWith("v1/devices/me/rpc/request/", StringComparison.Ordinal));
        await device.PublishAsync("v1/devices/me/rpc/response/" + topic["v1/devices/me/rpc/request/".Length..], """{"late":true}""");

        await device.PublishAsync("v1/devices/me/telemetry", """{"stillHere":1}""");
        Assert.True(device.Client.IsConnected);
    }

    [Fact]
    public async Task ClientSideRpc_GetCurrentTime_AnswersOnTheResponseTopic()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("mqttnet-client-rpc");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/rpc/response/+");
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        await device.PublishAsync("v1/devices/me/rpc/request/1", """{"method":"getCurrentTime","params":{}}""");

        var reply = await device.ReceiveJsonAsync("v1/devices/me/rpc/response/1");
        long now = reply["currentTime"]!.GetValue<long>();
        Assert.InRange(now, before - 1000, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 1000);

        await device.PublishAsync("v1/devices/me/rpc/request/2", """{"method":"getSessionLimits","params":{}}""");
        var limits = await device.ReceiveJsonAsync("v1/devices/me/rpc/response/2");
        Assert.Equal(65536, limits["maxPayloadSize"]!.GetValue<int>());
    }

    [Fact]
    public async Task UnknownTopic_IsAcknowledged_AndTheSessionStays()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-unknown");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);

        await device.PublishAsync("some/other/topic", """{"a":1}""");
        await device.PublishAsync("v1/devices/me/telemetry", """{"after":1}""");

        Assert.True(device.Client.IsConnected);
        Assert.Equal("1", (await rest.LatestTimeseriesAsync(id, "after"))["after"].Value);
    }

    [Fact]
    public async Task InvalidJsonOnQoS1_ClosesTheConnection_WithoutPubAck()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("mqttnet-bad-json");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        device.Client.DisconnectedAsync += _ =>
        {
            disconnected.TrySetResult();
            return Task.CompletedTask;
        };

        var publish = device.Client.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic("v1/devices/me/telemetry").WithPayload(Encoding.UTF8.GetBytes("{\"a\":")).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());

        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Assert.ThrowsAnyAsync<Exception>(() => publish);
    }

    [Fact]
    public async Task InvalidClientRpcJson_OnQoS1_ClosesTheConnection_OnQoS0_IsAnsweredWithTheError()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("mqttnet-bad-client-rpc");
        await using (var lenient = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/rpc/response/+"))
        {
            await lenient.PublishAsync("v1/devices/me/rpc/request/6", "not json", MqttQualityOfServiceLevel.AtMostOnce);
            var error = await lenient.ReceiveJsonAsync("v1/devices/me/rpc/response/6");
            Assert.NotNull(error["error"]);
            Assert.True(lenient.Client.IsConnected);
        }

        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/rpc/response/+");
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        device.Client.DisconnectedAsync += _ =>
        {
            disconnected.TrySetResult();
            return Task.CompletedTask;
        };

        var publish = device.Client.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic("v1/devices/me/rpc/request/7").WithPayload(Encoding.UTF8.GetBytes("not json")).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());

        await disconnected.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Assert.ThrowsAnyAsync<Exception>(() => publish);
    }

    [Fact]
    public async Task Numbers_AreTypedAndRenderedAsTheReferenceDoes()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-numbers");
        await using var device = await MqttDevice.ConnectAsync(fixture, token, "v1/devices/me/attributes");

        // The seed's "doubleKey":42.0 reads back as 42.0; an integer beyond a long is kept exactly; 1e3 is a long.
        await device.PublishAsync("v1/devices/me/telemetry", """{"doubleKey":42.0,"big":12345678901234567890,"e":1e3,"tiny":1e-7}""");
        var latest = await rest.LatestTimeseriesAsync(id, "doubleKey,big,e,tiny");
        Assert.Equal("42.0", latest["doubleKey"].Value);
        Assert.Equal("12345678901234567890", latest["big"].Value);
        Assert.Equal("1000", latest["e"].Value);
        Assert.Equal("1.0E-7", latest["tiny"].Value);
        var strict = await rest.Http.GetStringAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=doubleKey,big,e&useStrictDataTypes=true");
        Assert.Contains("\"value\":42.0", strict, StringComparison.Ordinal);
        Assert.Contains("\"value\":\"12345678901234567890\"", strict, StringComparison.Ordinal);
        Assert.Contains("\"value\":1000}", strict, StringComparison.Ordinal);

        // A shared double is pushed to the device as the reference writes it.
        await rest.SaveSharedAsync(id, """{"setpoint":22.0}""");
        var (_, payload) = await device.ReceiveAsync(t => t == "v1/devices/me/attributes");
        Assert.Equal("""{"setpoint":22.0}""", Encoding.UTF8.GetString(payload));
    }

    [Fact]
    public async Task SecondConnectWithTheSameToken_ClosesTheOlderSession()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("mqttnet-twice");
        await using var first = await MqttDevice.ConnectAsync(fixture, token);
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        first.Client.DisconnectedAsync += _ =>
        {
            closed.TrySetResult();
            return Task.CompletedTask;
        };

        await using var second = await MqttDevice.ConnectAsync(fixture, token);

        await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(second.Client.IsConnected);
    }

    [Fact]
    public async Task ChangingTheAccessToken_ClosesTheSessionTheOldOneOpened_SavingItUnchangedDoesNot()
    {
        using var rest = await TenantRest.LoginAsync(fixture);
        var (id, token, _) = await rest.CreateDeviceAsync("mqttnet-new-token");
        await using var device = await MqttDevice.ConnectAsync(fixture, token);
        var closed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        device.Client.DisconnectedAsync += _ =>
        {
            closed.TrySetResult();
            return Task.CompletedTask;
        };

        // The same token saved again: the session stays (a PUBACK after the save's 200 proves it).
        (await rest.Http.PostAsJsonAsync("/api/device/credentials", new { deviceId = new { entityType = "DEVICE", id }, credentialsType = "ACCESS_TOKEN", credentialsId = token })).EnsureSuccessStatusCode();
        await device.PublishAsync("v1/devices/me/telemetry", """{"kept":1}""");
        Assert.False(closed.Task.IsCompleted);

        var newToken = token + "-new";
        (await rest.Http.PostAsJsonAsync("/api/device/credentials", new { deviceId = new { entityType = "DEVICE", id }, credentialsType = "ACCESS_TOKEN", credentialsId = newToken })).EnsureSuccessStatusCode();

        await closed.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await using var renewed = await MqttDevice.ConnectAsync(fixture, newToken);
        await renewed.PublishAsync("v1/devices/me/telemetry", """{"renewed":1}""");
        Assert.Equal("1", (await rest.LatestTimeseriesAsync(id, "renewed"))["renewed"].Value);
    }
}
