using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>A device on the MQTT door (MQTTnet 5) subscribed to server-side RPC requests.</summary>
internal sealed class MqttRpcDevice : IAsyncDisposable
{
    private readonly IMqttClient _client;
    private readonly Channel<(int Id, JsonObject Body)> _requests = Channel.CreateUnbounded<(int, JsonObject)>();

    private MqttRpcDevice(IMqttClient client)
    {
        _client = client;
        _client.ApplicationMessageReceivedAsync += e =>
        {
            var topic = e.ApplicationMessage.Topic;
            const string Prefix = "v1/devices/me/rpc/request/";
            if (topic.StartsWith(Prefix, StringComparison.Ordinal))
            {
                LastPayload = e.ApplicationMessage.ConvertPayloadToString();
                var body = JsonNode.Parse(LastPayload)!.AsObject();
                _requests.Writer.TryWrite((int.Parse(topic[Prefix.Length..], System.Globalization.CultureInfo.InvariantCulture), body));
            }

            return Task.CompletedTask;
        };
    }

    public static async Task<MqttRpcDevice> ConnectAsync(HostFixture fixture, string token)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", fixture.Endpoints.Mqtt!.Port)
            .WithCredentials(token, string.Empty)
            .WithProtocolVersion(MqttProtocolVersion.V311)
            .WithClientId("dev-" + Guid.NewGuid().ToString("N")[..8])
            .Build();
        var device = new MqttRpcDevice(client);
        await client.ConnectAsync(options);
        await client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter("v1/devices/me/rpc/request/+", MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());
        return device;
    }

    /// <summary>The text of the last request received, as it came off the wire.</summary>
    public string? LastPayload { get; private set; }

    public async Task<(int Id, JsonObject Body)> NextRequestAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        return await _requests.Reader.ReadAsync(timeout.Token);
    }

    public Task ReplyAsync(int id, string json) =>
        _client.PublishAsync(new MqttApplicationMessageBuilder()
            .WithTopic($"v1/devices/me/rpc/response/{id}")
            .WithPayload(json)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce)
            .Build());

    public async ValueTask DisposeAsync()
    {
        if (_client.IsConnected)
        {
            await _client.DisconnectAsync();
        }

        _client.Dispose();
    }
}

[Collection(HostCollection.Name)]
public sealed class RpcTests(HostFixture fixture)
{
    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    /// <summary>Awaits the persistent RPC reaching a status through the core's change event (no polling).</summary>
    private Task<PersistentRpc> StatusAsync(string rpcId, PersistentRpcStatus status) =>
        PersistentRpcWaiter.StatusAsync(fixture, rpcId, status, 15);

    [Fact]
    public async Task BodyOver64KiB_Answers413_DeclaredOrChunked()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("rpc"));
        // Valid JSON, 70 KiB: over the RPC limit (64 KiB), under the REST default (1 MiB).
        var json = Encoding.UTF8.GetBytes("{\"method\":\"m\",\"params\":\"" + new string('a', 70 * 1024) + "\",\"timeout\":5000}");
        foreach (var path in new[] { $"/api/plugins/rpc/twoway/{id}", $"/api/rpc/twoway/{id}" })
        {
            var declared = new ByteArrayContent(json);
            declared.Headers.ContentType = new("application/json");
            using var first = await rest.Http.PostAsync(path, declared);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, first.StatusCode);

            // No Content-Length: the body is cut at the RPC limit while it is read (before, the 1 MiB REST
            // default replaced it and the call waited for the offline device: 408/504 after the timeout).
            using var chunked = await rest.Http.PostAsync(path, new ChunkedJson(json));
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, chunked.StatusCode);
            Assert.Contains("65536", await chunked.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
    }

    /// <summary>A JSON body sent with Transfer-Encoding: chunked (its length is not known up front).</summary>
    private sealed class ChunkedJson : HttpContent
    {
        private readonly byte[] _bytes;

        public ChunkedJson(byte[] bytes)
        {
            _bytes = bytes;
            Headers.ContentType = new("application/json");
        }

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) => stream.WriteAsync(_bytes).AsTask();

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    [Fact]
    public async Task TwoWay_V1AndV2_ReturnTheDeviceReplyAsIs()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("rpc"));
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);

        foreach (var path in new[] { $"/api/plugins/rpc/twoway/{id}", $"/api/rpc/twoway/{id}" })
        {
            var call = rest.Http.PostAsync(path, Json("""{"method":"getTemperature","params":{"unit":"C"},"timeout":10000}"""));
            var (requestId, body) = await device.NextRequestAsync();
            Assert.Equal("getTemperature", body["method"]!.GetValue<string>());
            Assert.Equal("C", body["params"]!["unit"]!.GetValue<string>());
            await device.ReplyAsync(requestId, """{"temperature":22.5,"path":"x"}""");
            var response = await call;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("""{"temperature":22.5,"path":"x"}""", await response.Content.ReadAsStringAsync());
        }
    }

    [Fact]
    public async Task TwoWay_AReplyThatIsNotJson_Answers406_AnEmptyOne200()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("rpc-text"));
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);

        foreach (var path in new[] { $"/api/plugins/rpc/twoway/{id}", $"/api/rpc/twoway/{id}" })
        {
            var call = rest.Http.PostAsync(path, Json("""{"method":"status","params":{}}"""));
            var (requestId, _) = await device.NextRequestAsync();
            await device.ReplyAsync(requestId, "{bad");
            var response = await call;
            Assert.Equal(HttpStatusCode.NotAcceptable, response.StatusCode);
            Assert.Equal(406, (await response.Content.ReadFromJsonAsync<JsonObject>())!["status"]!.GetValue<int>());

            call = rest.Http.PostAsync(path, Json("""{"method":"status","params":{}}"""));
            (requestId, _) = await device.NextRequestAsync();
            await device.ReplyAsync(requestId, "");
            response = await call;
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(string.Empty, await response.Content.ReadAsStringAsync());
        }
    }

    [Fact]
    public async Task ATimeoutBelowTheMinimum_IsRaisedToIt_AsTheReferenceDoes()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("rpc-short"));
        var before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var rpcId = (await rest.PostAsync($"/api/rpc/twoway/{id}", new { method = "m", @params = new { }, timeout = 1000, persistent = true }))["rpcId"]!.GetValue<string>();
        var stored = await rest.GetAsync($"/api/rpc/persistent/{rpcId}");
        Assert.True(stored["expirationTime"]!.GetValue<long>() >= before + 5000, stored.ToJsonString());
    }

    [Fact]
    public async Task OneWay_V1AndV2_Answer200_WhenTheDeviceGotIt()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("rpc"));
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);

        // The seed's Python shape: requests.post(..., json={"method","params","timeout"}).
        foreach (var path in new[] { $"/api/plugins/rpc/oneway/{id}", $"/api/rpc/oneway/{id}" })
        {
            var response = await rest.Http.PostAsJsonAsync(path, new { method = "setGpio", @params = new { pin = 1, value = 1 }, timeout = 5000 });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(string.Empty, await response.Content.ReadAsStringAsync());
            var (_, body) = await device.NextRequestAsync();
            Assert.Equal("setGpio", body["method"]!.GetValue<string>());
            Assert.Equal(1, body["params"]!["pin"]!.GetValue<int>());
        }
    }

    [Fact]
    public async Task OfflineDevice_V1Answers408_V2Answers504()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("offline"));
        const string Body = """{"method":"getValue","params":{},"timeout":5000}""";
        var calls = new[]
        {
            rest.Http.PostAsync($"/api/plugins/rpc/twoway/{id}", Json(Body)),
            rest.Http.PostAsync($"/api/plugins/rpc/oneway/{id}", Json(Body)),
            rest.Http.PostAsync($"/api/rpc/twoway/{id}", Json(Body)),
            rest.Http.PostAsync($"/api/rpc/oneway/{id}", Json(Body)),
        };
        var responses = await Task.WhenAll(calls);
        Assert.Equal(
            [HttpStatusCode.RequestTimeout, HttpStatusCode.RequestTimeout, HttpStatusCode.GatewayTimeout, HttpStatusCode.GatewayTimeout],
            responses.Select(r => r.StatusCode));
        var error = await responses[0].Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(408, error!["status"]!.GetValue<int>());
    }

    [Fact]
    public async Task TooManyPending_V1Answers409_V2Answers504()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("busy"));
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);
        var cap = new CoreOptions().MaxPendingRpcPerDevice; // the host runs with the default
        var pending = Enumerable.Range(0, cap)
            .Select(_ => rest.Http.PostAsync($"/api/plugins/rpc/twoway/{id}", Json("""{"method":"slow","params":{},"timeout":5000}""")))
            .ToArray();
        for (var i = 0; i < cap; i++)
        {
            await device.NextRequestAsync(); // delivered and left unanswered
        }

        var v1 = await rest.Http.PostAsync($"/api/plugins/rpc/twoway/{id}", Json("""{"method":"m","params":{}}"""));
        Assert.Equal(HttpStatusCode.Conflict, v1.StatusCode);
        var v2 = await rest.Http.PostAsync($"/api/rpc/twoway/{id}", Json("""{"method":"m","params":{}}"""));
        Assert.Equal(HttpStatusCode.GatewayTimeout, v2.StatusCode);
        Assert.All(await Task.WhenAll(pending), r => Assert.Equal(HttpStatusCode.RequestTimeout, r.StatusCode));
    }

    [Fact]
    public async Task TwoWay_ParamsReachTheDeviceAsCompactJson_AndATimeoutMayBeAStringOfDigits()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("rpcbody"));
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);

        foreach (var request in new[]
        {
            """{ "method" : "set", "params" : { "name" : "caf\u00e9 é \"q\"", "list" : [ 1 , 2.50 , null, true ] }, "timeout" : "6000" }""",
            """{"method":"set","params":null,"timeout":6000.0,"retries":null,"expirationTime":null}""",
            """{"method":"set","params":"text","additionalInfo":{"a":1}}""",
            // Over RestBody's 16 KiB preallocation: a declared length read through the growing stream instead.
            $$$"""{"method":"set","params":{"blob":"{{{new string('x', 20_000)}}}","n":[1, 2]}}""",
        })
        {
            var call = rest.Http.PostAsync($"/api/rpc/twoway/{id}", Json(request));
            var (requestId, body) = await device.NextRequestAsync();
            Assert.Equal("set", body["method"]!.GetValue<string>());
            // Exactly the compact form System.Text.Json writes for the value (what the device got before the body was read without a DOM).
            var expected = JsonNode.Parse(request)!["params"]?.ToJsonString() ?? "null";
            Assert.Contains("\"params\":" + expected, device.LastPayload, StringComparison.Ordinal);
            await device.ReplyAsync(requestId, """{"ok":true}""");
            Assert.Equal(HttpStatusCode.OK, (await call).StatusCode);
        }
    }

    [Fact]
    public async Task InvalidRequests_Answer400_413_And404()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("bad"));
        foreach (var prefix in new[] { "/api/plugins/rpc", "/api/rpc" })
        {
            foreach (var body in new[]
            {
                """{"params":{}}""",
                """{"method":"","params":{}}""",
                """{"method":"m"}""",
                """{"method":"m","params":{},"timeout":"soon"}""",
                """{"method":"m","params":{},"timeout":[5000]}""",
                """{"method":5,"params":{}}""",
                """{"method":"m","params":{},"expirationTime":0}""",
                """{"method":"m","params":{},"retries":-1}""",
                """null""",
                """[1,2]""",
                """{"method":""",
            })
            {
                var response = await rest.Http.PostAsync($"{prefix}/twoway/{id}", Json(body));
                Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"{prefix} {body} answered {(int)response.StatusCode}");
                Assert.Equal(400, (await response.Content.ReadFromJsonAsync<JsonObject>())!["status"]!.GetValue<int>());
            }

            var huge = "{\"method\":\"m\",\"params\":{\"blob\":\"" + new string('x', 70_000) + "\"}}";
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await rest.Http.PostAsync($"{prefix}/twoway/{id}", Json(huge))).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.PostAsync($"{prefix}/twoway/{Guid.NewGuid()}", Json("""{"method":"m","params":{}}"""))).StatusCode);
        }

        Assert.Equal(HttpStatusCode.BadRequest, (await rest.Http.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=DELETED")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/rpc/persistent/{Guid.NewGuid()}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.DeleteAsync($"/api/rpc/persistent/{Guid.NewGuid()}")).StatusCode);
    }

    [Fact]
    public async Task Persistent_QueuedWhileOffline_DeliveredOnConnect_SuccessfulAfterReply()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("persistent"));
        var submitted = await rest.PostAsync($"/api/rpc/twoway/{id}", new
        {
            method = "setTemperature",
            @params = new { value = 22.5 },
            persistent = true,
            timeout = 60000,
            retries = 3,
            additionalInfo = new { key = "value" },
        });
        var rpcId = submitted["rpcId"]!.GetValue<string>();

        var queued = (await rest.GetAsync($"/api/rpc/persistent/{rpcId}")).AsObject();
        Assert.Equal("QUEUED", queued["status"]!.GetValue<string>());
        Assert.Equal("RPC", queued["id"]!["entityType"]!.GetValue<string>());
        Assert.Equal(rpcId, queued["id"]!["id"]!.GetValue<string>());
        Assert.Equal(id, queued["deviceId"]!["id"]!.GetValue<string>());
        Assert.Equal("TENANT", queued["tenantId"]!["entityType"]!.GetValue<string>());
        Assert.True(queued["expirationTime"]!.GetValue<long>() > queued["createdTime"]!.GetValue<long>());
        Assert.Equal("setTemperature", queued["request"]!["body"]!["method"]!.GetValue<string>());
        Assert.Equal("""{"value":22.5}""", queued["request"]!["body"]!["params"]!.GetValue<string>());
        Assert.False(queued["request"]!["oneway"]!.GetValue<bool>());
        Assert.Equal(3, queued["request"]!["retries"]!.GetValue<int>());
        Assert.Equal("value", queued["additionalInfo"]!["key"]!.GetValue<string>());
        Assert.Null(queued["response"]);

        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);
        var (requestId, body) = await device.NextRequestAsync();
        Assert.Equal("setTemperature", body["method"]!.GetValue<string>());
        await StatusAsync(rpcId, PersistentRpcStatus.Delivered); // the device's PUBACK
        await device.ReplyAsync(requestId, """{"result":"ok"}""");
        await StatusAsync(rpcId, PersistentRpcStatus.Successful);

        var done = (await rest.GetAsync($"/api/rpc/persistent/{rpcId}")).AsObject();
        Assert.Equal("SUCCESSFUL", done["status"]!.GetValue<string>());
        Assert.Equal("ok", done["response"]!["result"]!.GetValue<string>());
    }

    [Fact]
    public async Task Persistent_OneWay_EndsDeliveredOnPubAck()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("oneway"));
        await using var device = await MqttRpcDevice.ConnectAsync(fixture, token);
        var rpcId = (await rest.PostAsync($"/api/rpc/oneway/{id}", new { method = "reboot", @params = new { }, persistent = true }))["rpcId"]!.GetValue<string>();
        await device.NextRequestAsync();
        await StatusAsync(rpcId, PersistentRpcStatus.Delivered);
        Assert.Equal("DELIVERED", (await rest.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());
    }

    [Fact]
    public async Task Persistent_ListGetAndDelete()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("list"));
        var expiration = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds();
        var ids = new List<string>();
        foreach (var method in new[] { "a", "b", "c" })
        {
            ids.Add((await rest.PostAsync($"/api/rpc/twoway/{id}", new { method, @params = new { }, persistent = true, expirationTime = expiration }))["rpcId"]!.GetValue<string>());
        }

        var page = (await rest.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=2&page=0&rpcStatus=QUEUED&sortProperty=createdTime&sortOrder=DESC")).AsObject();
        Assert.Equal(3, page["totalElements"]!.GetValue<int>());
        Assert.Equal(2, page["totalPages"]!.GetValue<int>());
        Assert.True(page["hasNext"]!.GetValue<bool>());
        var data = page["data"]!.AsArray();
        Assert.Equal(2, data.Count);
        Assert.Equal(ids[2], data[0]!["id"]!["id"]!.GetValue<string>());
        Assert.Equal(expiration, data[0]!["expirationTime"]!.GetValue<long>());

        var searched = (await rest.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=10&page=0&textSearch=b")).AsObject();
        Assert.Equal(ids[1], Assert.Single(searched["data"]!.AsArray())!["id"]!["id"]!.GetValue<string>());

        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/rpc/persistent/{ids[0]}")).StatusCode);
        Assert.Equal("DELETED", (await rest.GetAsync($"/api/rpc/persistent/{ids[0]}"))["status"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.DeleteAsync($"/api/rpc/persistent/{ids[0]}")).StatusCode);
        var remaining = (await rest.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=10&page=0")).AsObject();
        Assert.Equal(2, remaining["totalElements"]!.GetValue<int>());
        Assert.Equal(HttpStatusCode.BadRequest, (await rest.Http.GetAsync($"/api/rpc/persistent/device/{id}?pageSize=10&page=0&rpcStatus=NOPE")).StatusCode);
    }

    [Fact]
    public async Task CustomerUser_MayRpcOnlyItsOwnDevices()
    {
        using var tenant = await Rest.LoginAsync(fixture);
        var customerId = (await tenant.PostAsync("/api/customer", new { title = Unique("C") }))["id"]!["id"]!.GetValue<string>();
        var (mine, _) = await tenant.CreateDeviceAsync(Unique("mine"));
        var (theirs, _) = await tenant.CreateDeviceAsync(Unique("theirs"));
        await tenant.PostAsync($"/api/customer/{customerId}/device/{mine}", new { });
        var email = Unique("rpc-user") + "@example.com";
        await tenant.PostAsync("/api/user?sendActivationMail=false", new
        {
            email,
            authority = "CUSTOMER_USER",
            customerId = new { entityType = "CUSTOMER", id = customerId },
            password = "secret-pass",
        });
        using var customer = await Rest.LoginAsync(fixture, email, "secret-pass");

        var body = """{"method":"m","params":{},"persistent":true}""";
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.PostAsync($"/api/rpc/oneway/{theirs}", Json(body))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.PostAsync($"/api/plugins/rpc/twoway/{theirs}", Json(body))).StatusCode);
        var own = await customer.Http.PostAsync($"/api/rpc/oneway/{mine}", Json(body));
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        var rpcId = (await own.Content.ReadFromJsonAsync<JsonObject>())!["rpcId"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await customer.Http.GetAsync($"/api/rpc/persistent/{rpcId}")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await customer.Http.DeleteAsync($"/api/rpc/persistent/{rpcId}")).StatusCode);

        var theirRpc = (await tenant.PostAsync($"/api/rpc/oneway/{theirs}", new { method = "m", @params = new { }, persistent = true }))["rpcId"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.GetAsync($"/api/rpc/persistent/{theirRpc}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.GetAsync($"/api/rpc/persistent/device/{theirs}?pageSize=10&page=0")).StatusCode);
    }

    [Fact]
    public async Task Persistent_SurvivesARestart_AndIsDeliveredWhenTheDeviceConnects()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-e2e-rpc-" + Guid.NewGuid().ToString("N"));
        try
        {
            string rpcId, token;
            var first = await StartedHostAsync(dataDir);
            try
            {
                using var rest = await Rest.LoginAsync(first);
                (var id, token) = await rest.CreateDeviceAsync(Unique("restart"));
                var expiration = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeMilliseconds();
                rpcId = (await rest.PostAsync($"/api/rpc/twoway/{id}", new { method = "afterRestart", @params = new { }, persistent = true, expirationTime = expiration }))["rpcId"]!.GetValue<string>();
            }
            finally
            {
                await first.DisposeAsync();
            }

            var second = await StartedHostAsync(dataDir);
            try
            {
                using var again = await Rest.LoginAsync(second);
                Assert.Equal("QUEUED", (await again.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());
                var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                second.Host.Engine.Rpc.PersistentRpcChanged += rpc =>
                {
                    if (rpc.Id == Guid.Parse(rpcId) && rpc.Status == PersistentRpcStatus.Successful)
                    {
                        done.TrySetResult();
                    }
                };
                await using var device = await MqttRpcDevice.ConnectAsync(second, token);
                var (requestId, body) = await device.NextRequestAsync();
                Assert.Equal("afterRestart", body["method"]!.GetValue<string>());
                await device.ReplyAsync(requestId, "{\"ok\":1}");
                await done.Task.WaitAsync(TimeSpan.FromSeconds(15));
                Assert.Equal("SUCCESSFUL", (await again.GetAsync($"/api/rpc/persistent/{rpcId}"))["status"]!.GetValue<string>());
            }
            finally
            {
                await second.DisposeAsync();
            }
        }
        finally
        {
            TestDirectories.Delete(dataDir);
        }
    }

    private static async Task<HostFixture> StartedHostAsync(string dataDir)
    {
        var host = new HostFixture(dataDir, ownsDataDir: false);
        await host.InitializeAsync();
        return host;
    }
}
