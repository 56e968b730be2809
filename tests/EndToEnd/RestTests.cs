using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

[Collection(HostCollection.Name)]
public sealed class RestTests(HostFixture fixture)
{
    private static string Unique(string prefix) => prefix + "-" + Guid.NewGuid().ToString("N")[..8];

    [Fact]
    public async Task Login_ReturnsTokens_AndBadPasswordAnswers401WithJsonError()
    {
        using var http = fixture.CreateHttpClient();
        var bad = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "wrong" });
        Assert.Equal(HttpStatusCode.Unauthorized, bad.StatusCode);
        var error = await bad.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(401, error!["status"]!.GetValue<int>());
        Assert.Equal(10, error["errorCode"]!.GetValue<int>());

        using var rest = await Rest.LoginAsync(fixture);
        var parts = rest.Token.Split('.');
        Assert.Equal(3, parts.Length);
        var claims = JsonNode.Parse(Convert.FromBase64String(Pad(parts[1].Replace('-', '+').Replace('_', '/'))))!;
        Assert.Equal("tenant@example.com", claims["sub"]!.GetValue<string>());
        Assert.Equal("TENANT_ADMIN", claims["scopes"]![0]!.GetValue<string>());
        Assert.NotNull(claims["tenantId"]);
        Assert.NotNull(claims["exp"]);
    }

    /// <summary>
    /// The errors ASP.NET Core answers by itself (no endpoint for the path or an id that is not a UUID, a method the path
    /// does not take, a query value that does not parse) carry the REST API's JSON error body like every other; they had
    /// an empty one. The device HTTP API keeps its bare binding status.
    /// </summary>
    [Theory]
    [InlineData("GET", "/api/device/not-a-uuid", 404, 32, "No API endpoint serves GET /api/device/not-a-uuid")]
    [InlineData("GET", "/api/no/such/thing", 404, 32, "No API endpoint serves GET /api/no/such/thing")]
    [InlineData("PUT", "/api/auth/login", 405, 31, "Request method 'PUT' is not supported")]
    [InlineData("GET", "/api/tenant/devices?pageSize=ten&page=0", 400, 31, "\"ten\"")]
    public async Task ErrorsTheFrameworkAnswers_CarryTheJsonErrorBody(string method, string path, int status, int errorCode, string message)
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var request = new HttpRequestMessage(new HttpMethod(method), path);
        var response = await rest.Http.SendAsync(request);
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var error = (await response.Content.ReadFromJsonAsync<JsonObject>())!;
        Assert.Equal(status, error["status"]!.GetValue<int>());
        Assert.Equal(errorCode, error["errorCode"]!.GetValue<int>());
        Assert.Contains(message, error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.True(error["timestamp"]!.GetValue<long>() > 0);

        // Still a working connection and a working API after it.
        Assert.Equal(HttpStatusCode.OK, (await rest.Http.GetAsync("/api/tenant/devices?pageSize=1&page=0")).StatusCode);
    }

    [Fact]
    public async Task DeviceApi_BindingFailure_KeepsItsBareStatus()
    {
        using var http = fixture.CreateHttpClient();
        var response = await http.GetAsync("/api/v1/any-token/rpc?timeout=soon");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Empty(await response.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task RefreshToken_IssuesAWorkingAccessToken_AndIsNotAcceptedAsAnAccessToken()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var http = fixture.CreateHttpClient();
        var refreshed = await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = rest.RefreshToken });
        Assert.Equal(HttpStatusCode.OK, refreshed.StatusCode);
        var token = (await refreshed.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();

        using var withAuthorization = new HttpRequestMessage(HttpMethod.Get, "/api/auth/user");
        withAuthorization.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        Assert.Equal(HttpStatusCode.OK, (await http.SendAsync(withAuthorization)).StatusCode);

        using var withRefresh = new HttpRequestMessage(HttpMethod.Get, "/api/auth/user");
        withRefresh.Headers.Add("X-Authorization", "Bearer " + rest.RefreshToken);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(withRefresh)).StatusCode);
    }

    [Fact]
    public async Task MissingOrForgedToken_Answers401()
    {
        using var http = fixture.CreateHttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/tenant/devices?pageSize=10&page=0")).StatusCode);
        using var rest = await Rest.LoginAsync(fixture);
        var forged = rest.Token[..^4] + "AAAA";
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/tenant/devices?pageSize=10&page=0");
        request.Headers.Add("X-Authorization", "Bearer " + forged);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.SendAsync(request)).StatusCode);
    }

    [Fact]
    public async Task Device_CreateReadListByNameCredentialsUpdateDelete()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var name = Unique("dev");
        var token = Unique("tok");
        var (id, readToken) = await rest.CreateDeviceAsync(name, token);
        Assert.Equal(token, readToken);

        var device = await rest.GetAsync($"/api/device/{id}");
        Assert.Equal(name, device["name"]!.GetValue<string>());
        Assert.Equal("DEVICE", device["id"]!["entityType"]!.GetValue<string>());

        var byName = await rest.GetAsync($"/api/tenant/devices?deviceName={name}");
        Assert.Equal(id, byName["id"]!["id"]!.GetValue<string>());

        var page = await rest.GetAsync($"/api/tenant/devices?pageSize=100&page=0&textSearch={name}");
        Assert.Equal(1, page["totalElements"]!.GetValue<long>());
        Assert.False(page["hasNext"]!.GetValue<bool>());

        // Duplicate name in the tenant: 400 with a message.
        var duplicate = await rest.Http.PostAsJsonAsync("/api/device", new { name });
        Assert.Equal(HttpStatusCode.BadRequest, duplicate.StatusCode);

        // Update keeps the id and changes the label.
        var updated = await rest.PostAsync("/api/device", new { id = new { entityType = "DEVICE", id }, name, type = "sensor", label = "roof" });
        Assert.Equal("roof", updated["label"]!.GetValue<string>());

        // Credentials update.
        var newToken = Unique("tok");
        var credentials = await rest.PostAsync("/api/device/credentials", new { deviceId = new { entityType = "DEVICE", id }, credentialsType = "ACCESS_TOKEN", credentialsId = newToken });
        Assert.Equal(newToken, credentials["credentialsId"]!.GetValue<string>());

        // As the reference's validation: no type, or a token without its id, is 400 and changes nothing.
        var noType = await rest.Http.PostAsJsonAsync("/api/device/credentials", new { deviceId = new { entityType = "DEVICE", id }, credentialsId = "x" });
        Assert.Equal(HttpStatusCode.BadRequest, noType.StatusCode);
        var noId = await rest.Http.PostAsJsonAsync("/api/device/credentials", new { deviceId = new { entityType = "DEVICE", id }, credentialsType = "ACCESS_TOKEN" });
        Assert.Equal(HttpStatusCode.BadRequest, noId.StatusCode);
        Assert.Equal(newToken, (await rest.GetAsync($"/api/device/{id}/credentials"))["credentialsId"]!.GetValue<string>());

        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/device/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/device/{id}")).StatusCode);
    }

    [Fact]
    public async Task ReferenceValidations_EmptySaves_DuplicateCustomer_Unassigned_LongName_NegativePage_TypeFilter()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("checks"));

        async Task<string> BadRequestMessage(HttpResponseMessage response)
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            return (await response.Content.ReadFromJsonAsync<JsonObject>())!["message"]!.GetValue<string>();
        }

        Assert.Equal("No attributes data found in request body!",
            await BadRequestMessage(await rest.Http.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", new StringContent("{}", Encoding.UTF8, "application/json"))));
        Assert.Equal("No timeseries data found in request body!",
            await BadRequestMessage(await rest.Http.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY", new StringContent("{}", Encoding.UTF8, "application/json"))));

        var title = Unique("cust");
        await rest.PostAsync("/api/customer", new { title });
        Assert.Equal("Customer with such title already exists!", await BadRequestMessage(await rest.Http.PostAsJsonAsync("/api/customer", new { title })));

        Assert.Equal("Device isn't assigned to any customer!", await BadRequestMessage(await rest.Http.DeleteAsync($"/api/customer/device/{id}")));
        Assert.Contains("255", await BadRequestMessage(await rest.Http.PostAsJsonAsync("/api/device", new { name = new string('n', 256) })), StringComparison.Ordinal);
        Assert.Contains("'page'", await BadRequestMessage(await rest.Http.GetAsync("/api/tenant/devices?pageSize=10&page=-1")), StringComparison.Ordinal);

        var type = Unique("kind");
        await rest.PostAsync("/api/device", new { name = Unique("typed"), type });
        var page = await rest.GetAsync($"/api/tenant/devices?pageSize=100&page=0&type={type}");
        Assert.Equal(type, Assert.Single(page["data"]!.AsArray())!["type"]!.GetValue<string>());
    }

    [Fact]
    public async Task BadJson_Answers400NamingTheProblem_AndUnknownDeviceAnswers404()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var content = new StringContent("{\"name\":", Encoding.UTF8, "application/json");
        var response = await rest.Http.PostAsync("/api/device", content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Contains("JSON", error!["message"]!.GetValue<string>(), StringComparison.Ordinal);

        var missing = await rest.Http.GetAsync($"/api/device/{Guid.NewGuid()}");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal(32, (await missing.Content.ReadFromJsonAsync<JsonObject>())!["errorCode"]!.GetValue<int>());
    }

    [Fact]
    public async Task CustomerUser_SeesOnlyItsCustomersDevices_AndCannotUseTenantEndpoints()
    {
        using var tenant = await Rest.LoginAsync(fixture);
        var customerA = (await tenant.PostAsync("/api/customer", new { title = Unique("A") }))["id"]!["id"]!.GetValue<string>();
        var customerB = (await tenant.PostAsync("/api/customer", new { title = Unique("B") }))["id"]!["id"]!.GetValue<string>();
        var (mine, _) = await tenant.CreateDeviceAsync(Unique("mine"));
        var (theirs, _) = await tenant.CreateDeviceAsync(Unique("theirs"));
        await tenant.PostAsync($"/api/customer/{customerA}/device/{mine}", new { });
        await tenant.PostAsync($"/api/customer/{customerB}/device/{theirs}", new { });

        var email = Unique("user") + "@example.com";
        await tenant.PostAsync("/api/user?sendActivationMail=false", new
        {
            email,
            authority = "CUSTOMER_USER",
            customerId = new { entityType = "CUSTOMER", id = customerA },
            password = "secret-pass",
        });
        using var customer = await Rest.LoginAsync(fixture, email, "secret-pass");

        Assert.Equal(HttpStatusCode.OK, (await customer.Http.GetAsync($"/api/device/{mine}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.GetAsync($"/api/device/{theirs}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.GetAsync($"/api/plugins/telemetry/DEVICE/{theirs}/values/timeseries")).StatusCode);
        var save = await customer.Http.PostAsJsonAsync($"/api/plugins/telemetry/DEVICE/{theirs}/SHARED_SCOPE", new { x = 1 });
        Assert.Equal(HttpStatusCode.NotFound, save.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await customer.Http.GetAsync("/api/tenant/devices?pageSize=10&page=0")).StatusCode);

        var list = await customer.GetAsync($"/api/customer/{customerA}/devices?pageSize=10&page=0");
        var ids = list["data"]!.AsArray().Select(d => d!["id"]!["id"]!.GetValue<string>()).ToArray();
        Assert.Equal([mine], ids);
        Assert.Equal(HttpStatusCode.NotFound, (await customer.Http.GetAsync($"/api/customer/{customerB}/devices?pageSize=10&page=0")).StatusCode);
    }

    [Fact]
    public async Task SysAdmin_ManagesTenants_AndTenantAdminCannot()
    {
        using var sys = await Rest.LoginAsync(fixture, "sysadmin@example.com", "sysadmin");
        var tenantId = (await sys.PostAsync("/api/tenant", new { title = Unique("tenant") }))["id"]!["id"]!.GetValue<string>();
        var admin = Unique("admin") + "@example.com";
        await sys.PostAsync("/api/user?sendActivationMail=false", new { email = admin, authority = "TENANT_ADMIN", tenantId = new { entityType = "TENANT", id = tenantId }, password = "pw-123456" });
        using var newAdmin = await Rest.LoginAsync(fixture, admin, "pw-123456");
        var page = await newAdmin.GetAsync("/api/tenant/devices?pageSize=10&page=0");
        Assert.Equal(0, page["totalElements"]!.GetValue<long>());

        using var tenant = await Rest.LoginAsync(fixture);
        var forbidden = await tenant.Http.PostAsJsonAsync("/api/tenant", new { title = "nope" });
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Equal(20, (await forbidden.Content.ReadFromJsonAsync<JsonObject>())!["errorCode"]!.GetValue<int>());
    }

    [Fact]
    public async Task Attributes_SaveReadDelete_ByScope()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("attr"));
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", new { serial = "SN-1", floor = 3 });
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { targetTemperature = 21.5, enabled = true });

        var server = (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE")).AsArray();
        Assert.Equal(2, server.Count);
        Assert.Contains(server, a => a!["key"]!.GetValue<string>() == "floor" && a["value"]!.GetValue<long>() == 3);
        var shared = (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes?keys=targetTemperature")).AsArray();
        Assert.Equal(21.5, Assert.Single(shared)!["value"]!.GetValue<double>());

        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/plugins/telemetry/DEVICE/{id}/SERVER_SCOPE?keys=serial")).StatusCode);
        server = (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SERVER_SCOPE")).AsArray();
        Assert.Equal("floor", Assert.Single(server)!["key"]!.GetValue<string>());

        var badScope = await rest.Http.PostAsJsonAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/NOPE_SCOPE", new { a = 1 });
        Assert.Equal(HttpStatusCode.BadRequest, badScope.StatusCode);

        // Keys of one scope, and of all.
        Assert.Equal("""["enabled","targetTemperature"]""", (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/keys/attributes/SHARED_SCOPE")).ToJsonString());
        Assert.Equal("""["enabled","floor","targetTemperature"]""", (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/keys/attributes")).ToJsonString());
        Assert.Equal(HttpStatusCode.BadRequest, (await rest.Http.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/keys/attributes/NOPE_SCOPE")).StatusCode);
    }

    [Fact]
    public async Task Telemetry_SaveLatestHistoryAggregationAndDelete()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("ts"));
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY", new object[]
        {
            new { ts = 1000, values = new { temperature = 20, label = "a" } },
            new { ts = 2000, values = new { temperature = 30 } },
            new { ts = 3000, values = new { temperature = 25.7 } },
        });

        var latest = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature");
        Assert.Equal("25.7", latest["temperature"]![0]!["value"]!.GetValue<string>());
        var strict = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&useStrictDataTypes=true");
        Assert.Equal(25.7, strict["temperature"]![0]!["value"]!.GetValue<double>());

        var history = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=0&endTs=5000&limit=2&orderBy=ASC");
        var points = history["temperature"]!.AsArray();
        Assert.Equal(2, points.Count);
        Assert.Equal(1000, points[0]!["ts"]!.GetValue<long>());

        var max = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=0&endTs=5000&interval=5000&agg=MAX&useStrictDataTypes=true");
        Assert.Equal(30, max["temperature"]![0]!["value"]!.GetValue<double>());

        // As the reference: aggregated buckets oldest first and all of them (limit and orderBy are for raw points), an
        // interval of 0 is no aggregation, a string's MIN is the least string, a negative interval is 400.
        var buckets = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=0&endTs=4000&interval=1000&agg=AVG&limit=1");
        Assert.Equal([1500L, 2500, 3500], buckets["temperature"]!.AsArray().Select(p => p!["ts"]!.GetValue<long>()));
        var raw = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=0&endTs=5000&agg=AVG");
        Assert.Equal([3000L, 2000, 1000], raw["temperature"]!.AsArray().Select(p => p!["ts"]!.GetValue<long>()));
        var label = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=label&startTs=0&endTs=5000&interval=5000&agg=MIN");
        Assert.Equal("a", label["label"]![0]!["value"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.BadRequest, (await rest.Http.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=0&endTs=5000&interval=-5&agg=MAX")).StatusCode);

        var keys = (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/keys/timeseries")).AsArray().Select(k => k!.GetValue<string>()).ToArray();
        Assert.Contains("label", keys);

        Assert.Equal(HttpStatusCode.OK, (await rest.Http.DeleteAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/delete?keys=temperature&deleteAllDataForKeys=true")).StatusCode);
        // A key with no latest value answers a null value stamped now (the reference's wrapNullTsKvEntry).
        var afterDelete = await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature,label");
        Assert.Null(afterDelete["temperature"]![0]!["value"]);
        Assert.True(afterDelete["temperature"]![0]!["ts"]!.GetValue<long>() > 1_700_000_000_000);
        Assert.Equal("a", afterDelete["label"]![0]!["value"]!.GetValue<string>());

        var badAgg = await rest.Http.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature&startTs=0&endTs=5000&agg=MEDIAN");
        Assert.Equal(HttpStatusCode.BadRequest, badAgg.StatusCode);

        // The SDKs' saveEntityTelemetryWithTTL saves as without the ttl (the reference's SQL storage); a ttl that is not
        // an integer is 400.
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY/3600", new { ts = 4000, values = new { temperature = 19 } });
        Assert.Equal("19", (await rest.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/timeseries?keys=temperature"))["temperature"]![0]!["value"]!.GetValue<string>());
        var badTtl = await rest.Http.PostAsJsonAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY/soon", new { temperature = 1 });
        Assert.Equal(HttpStatusCode.BadRequest, badTtl.StatusCode);
        Assert.Contains("ttl", (await badTtl.Content.ReadFromJsonAsync<JsonObject>())!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebSocket_ReceivesSharedAttributeAndTelemetryUpdatesAfterCommit()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("ws"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws"), CancellationToken.None);
        await SendAsync(socket, new JsonObject
        {
            ["authCmd"] = new JsonObject { ["cmdId"] = 0, ["token"] = rest.Token },
            ["cmds"] = new JsonArray(
                new JsonObject { ["type"] = "ATTRIBUTES", ["entityType"] = "DEVICE", ["entityId"] = id, ["scope"] = "SHARED_SCOPE", ["cmdId"] = 7 },
                new JsonObject { ["type"] = "TIMESERIES", ["entityType"] = "DEVICE", ["entityId"] = id, ["scope"] = "LATEST_TELEMETRY", ["cmdId"] = 8 }),
        });

        // Initial (empty) snapshots for both subscriptions.
        var first = await ReceiveAsync(socket);
        var second = await ReceiveAsync(socket);
        Assert.Equal(new[] { 7, 8 }, new[] { first["subscriptionId"]!.GetValue<int>(), second["subscriptionId"]!.GetValue<int>() }.Order());

        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/SHARED_SCOPE", new { mode = "eco" });
        var update = await ReceiveAsync(socket);
        Assert.Equal(7, update["subscriptionId"]!.GetValue<int>());
        Assert.Equal("eco", update["data"]!["mode"]![0]![1]!.GetValue<string>());

        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY", new { temperature = 42 });
        var telemetry = await ReceiveAsync(socket);
        Assert.Equal(8, telemetry["subscriptionId"]!.GetValue<int>());
        Assert.Equal("42", telemetry["data"]!["temperature"]![0]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task WebSocket_TimeseriesWithATimeWindow_SendsTheWindowsHistoryFirst_ThenUpdates()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("ws-window"));
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY",
            new JsonArray(new JsonObject { ["ts"] = 1000, ["values"] = new JsonObject { ["temp"] = 20, ["hum"] = 1 } },
                new JsonObject { ["ts"] = 2000, ["values"] = new JsonObject { ["temp"] = 21 } },
                new JsonObject { ["ts"] = 3000, ["values"] = new JsonObject { ["temp"] = 25 } },
                new JsonObject { ["ts"] = 9000, ["values"] = new JsonObject { ["temp"] = 30 } }));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws"), CancellationToken.None);

        // A dashboard's time window: [startTs, startTs + timeWindow], as the reference's handleWsTimeseriesSubscriptionByKeys.
        await SendAsync(socket, new JsonObject
        {
            ["authCmd"] = new JsonObject { ["cmdId"] = 0, ["token"] = rest.Token },
            ["cmds"] = new JsonArray(new JsonObject
            {
                ["type"] = "TIMESERIES", ["entityType"] = "DEVICE", ["entityId"] = id, ["keys"] = "temp,hum", ["cmdId"] = 4,
                ["startTs"] = 1500, ["timeWindow"] = 2000, ["interval"] = 0, ["limit"] = 0, ["agg"] = "NONE",
            }),
        });
        var history = await ReceiveAsync(socket);
        Assert.Equal(4, history["subscriptionId"]!.GetValue<int>());
        Assert.Equal("""[[3000,"25"],[2000,"21"]]""", history["data"]!["temp"]!.ToJsonString());
        Assert.Equal("[]", history["data"]!["hum"]!.ToJsonString());

        // Aggregated over the window, on a second subscription.
        await SendAsync(socket, new JsonObject
        {
            ["cmds"] = new JsonArray(new JsonObject
            {
                ["type"] = "TIMESERIES", ["entityType"] = "DEVICE", ["entityId"] = id, ["keys"] = "temp", ["cmdId"] = 5,
                ["startTs"] = 0, ["timeWindow"] = 4000, ["interval"] = 4000, ["agg"] = "AVG",
            }),
        });
        var avg = await ReceiveAsync(socket);
        Assert.Equal(5, avg["subscriptionId"]!.GetValue<int>());
        Assert.Equal("""[[2000,"22.0"]]""", avg["data"]!["temp"]!.ToJsonString());

        // Then updates, as for a latest-values subscription.
        await SendAsync(socket, new JsonObject
        {
            ["cmds"] = new JsonArray(
                new JsonObject { ["type"] = "TIMESERIES", ["entityId"] = id, ["cmdId"] = 5, ["unsubscribe"] = true },
                new JsonObject { ["type"] = "NOPE", ["cmdId"] = 50 }),
        });
        Assert.Equal(50, (await ReceiveAsync(socket))["subscriptionId"]!.GetValue<int>()); // the unsubscribe is done
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY", new { temp = 42 });
        var update = await ReceiveAsync(socket);
        Assert.Equal(4, update["subscriptionId"]!.GetValue<int>());
        Assert.Equal("42", update["data"]!["temp"]![0]![1]!.GetValue<string>());

        // A window that is not a number is the reference's bad request (2). An unsubscribe without an entity id, in
        // the same message, ends every subscription of the session (the reference's cancelAllSessionSubscriptions).
        await SendAsync(socket, new JsonObject
        {
            ["cmds"] = new JsonArray(
                new JsonObject { ["type"] = "TIMESERIES", ["cmdId"] = 0, ["unsubscribe"] = true },
                new JsonObject { ["type"] = "TIMESERIES", ["entityType"] = "DEVICE", ["entityId"] = id, ["keys"] = "temp", ["cmdId"] = 6, ["timeWindow"] = "soon" }),
        });
        var bad = await ReceiveAsync(socket);
        Assert.Equal(6, bad["subscriptionId"]!.GetValue<int>());
        Assert.Equal(2, bad["errorCode"]!.GetValue<int>());

        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY", new { temp = 43 });
        await SendAsync(socket, new JsonObject { ["cmds"] = new JsonArray(new JsonObject { ["type"] = "NOPE", ["cmdId"] = 7 }) });
        Assert.Equal(7, (await ReceiveAsync(socket))["subscriptionId"]!.GetValue<int>());
    }

    [Fact]
    public async Task OpenApiDescription_IsServed()
    {
        using var http = fixture.CreateHttpClient();
        var response = await http.GetAsync("/openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var doc = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.NotNull(doc!["paths"]!["/api/device"]);
    }

    [Fact]
    public async Task Deletes_RemoveUsersCustomersAndTenants_AndADeletedUserCannotLogIn()
    {
        using var sys = await Rest.LoginAsync(fixture, "sysadmin@example.com", "sysadmin");
        var tenantId = (await sys.PostAsync("/api/tenant", new { title = Unique("doomed") }))["id"]!["id"]!.GetValue<string>();
        var admin = Unique("doomed-admin") + "@example.com";
        await sys.PostAsync("/api/user?sendActivationMail=false", new { email = admin, authority = "TENANT_ADMIN", tenantId = new { entityType = "TENANT", id = tenantId }, password = "pw-123456" });
        string deviceId;
        using (var doomed = await Rest.LoginAsync(fixture, admin, "pw-123456"))
        {
            (deviceId, _) = await doomed.CreateDeviceAsync(Unique("doomed-dev"));
            var customerId = (await doomed.PostAsync("/api/customer", new { title = Unique("c") }))["id"]!["id"]!.GetValue<string>();
            var userEmail = Unique("cu") + "@example.com";
            var userId = (await doomed.PostAsync("/api/user", new { email = userEmail, authority = "CUSTOMER_USER", customerId = new { id = customerId }, password = "pw-123456" }))["id"]!["id"]!.GetValue<string>();
            Assert.Equal(HttpStatusCode.OK, (await doomed.Http.DeleteAsync($"/api/user/{userId}")).StatusCode);
            using var http = fixture.CreateHttpClient();
            var login = await http.PostAsJsonAsync("/api/auth/login", new { username = userEmail, password = "pw-123456" });
            Assert.Equal(HttpStatusCode.Unauthorized, login.StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await doomed.Http.DeleteAsync($"/api/customer/{customerId}")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await doomed.Http.GetAsync($"/api/customer/{customerId}")).StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await sys.Http.DeleteAsync($"/api/tenant/{tenantId}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await sys.Http.GetAsync($"/api/tenant/{tenantId}")).StatusCode);
        Assert.Null(fixture.Host.Engine.Registry.GetDevice(Guid.Parse(deviceId)));
        using var again = fixture.CreateHttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await again.PostAsJsonAsync("/api/auth/login", new { username = admin, password = "pw-123456" })).StatusCode);
    }

    [Fact]
    public async Task SavingWithAnExistingId_UpdatesTheTenantCustomerAndUser_AndKeepsTheirContactFields()
    {
        // The reference's save is "create or update": an SDK's get, modify, save loop must not make duplicates.
        using var rest = await Rest.LoginAsync(fixture);
        var customer = await rest.PostAsync("/api/customer", new { title = Unique("c"), email = "ops@example.com", additionalInfo = new { description = "d" } });
        Assert.Equal("ops@example.com", customer["email"]!.GetValue<string>());
        Assert.Null(customer["phone"]);
        var id = customer["id"]!["id"]!.GetValue<string>();
        customer["title"] = Unique("renamed");
        customer["phone"] = "+380";
        var renamed = await rest.PostAsync("/api/customer", customer);
        Assert.Equal(id, renamed["id"]!["id"]!.GetValue<string>());
        var read = await rest.GetAsync($"/api/customer/{id}");
        Assert.Equal((customer["title"]!.GetValue<string>(), "+380", "d"),
            (read["title"]!.GetValue<string>(), read["phone"]!.GetValue<string>(), read["additionalInfo"]!["description"]!.GetValue<string>()));
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.PostAsJsonAsync("/api/customer", new { id = new { entityType = "CUSTOMER", id = Guid.NewGuid() }, title = "x" })).StatusCode);

        var email = Unique("u") + "@example.com";
        var user = await rest.PostAsync("/api/user", new { email, authority = "CUSTOMER_USER", customerId = new { id }, password = "pw-123456" });
        var userId = user["id"]!["id"]!.GetValue<string>();
        var newEmail = Unique("v") + "@example.com";
        user["email"] = newEmail;
        user["firstName"] = "Ann";
        user["phone"] = "+1";
        var updated = await rest.PostAsync("/api/user", user);
        Assert.Equal((userId, newEmail, "Ann", "+1"), (updated["id"]!["id"]!.GetValue<string>(), updated["email"]!.GetValue<string>(),
            updated["firstName"]!.GetValue<string>(), updated["phone"]!.GetValue<string>()));
        using (var moved = await Rest.LoginAsync(fixture, newEmail, "pw-123456"))
        {
            Assert.Equal(userId, (await moved.GetAsync("/api/auth/user"))["id"]!["id"]!.GetValue<string>());
        }

        using var sys = await Rest.LoginAsync(fixture, "sysadmin@example.com", "sysadmin");
        var tenant = await sys.PostAsync("/api/tenant", new { title = Unique("t") });
        tenant["title"] = "renamed tenant";
        tenant["city"] = "Kyiv";
        var savedTenant = await sys.PostAsync("/api/tenant", tenant);
        Assert.Equal(tenant["id"]!["id"]!.GetValue<string>(), savedTenant["id"]!["id"]!.GetValue<string>());
        Assert.Equal(("renamed tenant", "Kyiv"), (savedTenant["title"]!.GetValue<string>(), savedTenant["city"]!.GetValue<string>()));
        Assert.Single((await sys.GetAsync("/api/tenants?pageSize=1000"))["data"]!.AsArray(), t => t!["title"]!.GetValue<string>() == "renamed tenant");
    }

    [Fact]
    public async Task OversizedBody_Answers413WithJsonError()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("big"));
        var huge = "{\"k\":\"" + new string('x', 2 << 20) + "\"}";
        using var content = new StringContent(huge, Encoding.UTF8, "application/json");
        var response = await rest.Http.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY", content);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal(413, (await response.Content.ReadFromJsonAsync<JsonObject>())!["status"]!.GetValue<int>());
    }

    [Fact]
    public async Task ExpiredAccessToken_Answers401WithErrorCode11()
    {
        // A token signed with the server's own key (kept in DATA_DIR) whose lifetime is already over.
        var key = Perf.Api.Rest.JwtService.LoadOrCreateKey(null, fixture.DataDir);
        var past = new PastClock(DateTimeOffset.UtcNow.AddDays(-1));
        var jwt = new Perf.Api.Rest.JwtService(key, TimeSpan.FromSeconds(9000), TimeSpan.FromDays(7), past);
        var user = fixture.Host.Engine.Registry.FindUserByEmail("tenant@example.com")!;
        var (expired, _) = jwt.Issue(user);
        using var http = fixture.CreateHttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/auth/user");
        request.Headers.Add("X-Authorization", "Bearer " + expired);
        var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(11, (await response.Content.ReadFromJsonAsync<JsonObject>())!["errorCode"]!.GetValue<int>());
    }

    [Fact]
    public async Task LegacyWebSocket_TsSubCmd_ReceivesTelemetryPostedByTheDevice()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, token) = await rest.CreateDeviceAsync(Unique("legacy"));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws/plugins/telemetry?token={rest.Token}"), CancellationToken.None);
        await SendAsync(socket, new JsonObject
        {
            ["tsSubCmds"] = new JsonArray(new JsonObject { ["entityType"] = "DEVICE", ["entityId"] = id, ["scope"] = "LATEST_TELEMETRY", ["cmdId"] = 3 }),
            ["historyCmds"] = new JsonArray(),
            ["attrSubCmds"] = new JsonArray(),
        });
        Assert.Equal(3, (await ReceiveAsync(socket))["subscriptionId"]!.GetValue<int>());

        using var device = fixture.CreateHttpClient();
        using var body = new StringContent("{\"humidity\":55}", Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.OK, (await device.PostAsync($"/api/v1/{token}/telemetry", body)).StatusCode);
        var update = await ReceiveAsync(socket);
        Assert.Equal("55", update["data"]!["humidity"]![0]![1]!.GetValue<string>());
    }

    [Fact]
    public async Task LegacyWebSocket_HistoryCmd_AnswersOnceWithThePoints_NewestFirst_AndErrorsWithTheReferencesCodes()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (id, _) = await rest.CreateDeviceAsync(Unique("legacy-history"));
        await rest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY",
            new JsonArray(new JsonObject { ["ts"] = 1000, ["values"] = new JsonObject { ["temp"] = 20.5 } },
                new JsonObject { ["ts"] = 2000, ["values"] = new JsonObject { ["temp"] = 21 } },
                new JsonObject { ["ts"] = 3000, ["values"] = new JsonObject { ["temp"] = 22 } }));
        using var socket = new ClientWebSocket();
        await socket.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws/plugins/telemetry?token={rest.Token}"), CancellationToken.None);

        await SendAsync(socket, new JsonObject
        {
            ["historyCmds"] = new JsonArray(new JsonObject { ["entityType"] = "DEVICE", ["entityId"] = id, ["keys"] = "temp", ["startTs"] = 0, ["endTs"] = 2500, ["cmdId"] = 8 }),
        });
        var history = await ReceiveAsync(socket);
        Assert.Equal(8, history["subscriptionId"]!.GetValue<int>());
        Assert.Equal(0, history["errorCode"]!.GetValue<int>());
        Assert.Equal("""[[2000,"21"],[1000,"20.5"]]""", history["data"]!["temp"]!.ToJsonString());

        await SendAsync(socket, new JsonObject
        {
            ["historyCmds"] = new JsonArray(new JsonObject { ["entityType"] = "DEVICE", ["entityId"] = id, ["keys"] = "temp", ["startTs"] = 0, ["endTs"] = 4000, ["interval"] = 4000, ["agg"] = "MAX", ["cmdId"] = 9 }),
        });
        Assert.Equal("""[[2000,"22.0"]]""", (await ReceiveAsync(socket))["data"]!["temp"]!.ToJsonString()); // a bucket mixing doubles and longs is a double

        await SendAsync(socket, new JsonObject { ["historyCmds"] = new JsonArray(new JsonObject { ["entityId"] = id, ["cmdId"] = 10 }) });
        var noKeys = await ReceiveAsync(socket);
        Assert.Equal(2, noKeys["errorCode"]!.GetValue<int>());
        Assert.Equal("Keys are empty!", noKeys["errorMsg"]!.GetValue<string>());

        await SendAsync(socket, new JsonObject { ["historyCmds"] = new JsonArray(new JsonObject { ["entityId"] = Guid.NewGuid().ToString(), ["keys"] = "temp", ["cmdId"] = 11 }) });
        Assert.Equal(3, (await ReceiveAsync(socket))["errorCode"]!.GetValue<int>());
    }

    [Fact]
    public async Task LegacyWebSocket_WithABadToken_IsRefused()
    {
        using var socket = new ClientWebSocket();
        await Assert.ThrowsAnyAsync<WebSocketException>(() =>
            socket.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws/plugins/telemetry?token=forged"), CancellationToken.None));
    }

    private sealed class PastClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    private static async Task SendAsync(ClientWebSocket socket, JsonObject message) =>
        await socket.SendAsync(Encoding.UTF8.GetBytes(message.ToJsonString()), WebSocketMessageType.Text, true, CancellationToken.None);

    private static async Task<JsonObject> ReceiveAsync(ClientWebSocket socket)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var buffer = new byte[65536];
        var length = 0;
        ValueWebSocketReceiveResult result;
        do
        {
            result = await socket.ReceiveAsync(buffer.AsMemory(length), cts.Token);
            length += result.Count;
        }
        while (!result.EndOfMessage);
        return (JsonObject)JsonNode.Parse(buffer.AsSpan(0, length))!;
    }

    private static string Pad(string base64) => base64.PadRight(base64.Length + ((4 - (base64.Length % 4)) % 4), '=');
}
