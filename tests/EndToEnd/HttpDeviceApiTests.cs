using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Perf.Core;

namespace Perf.EndToEnd;

[Collection(HostCollection.Name)]
public sealed class HttpDeviceApiTests(HostFixture fixture)
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    [Fact]
    public async Task PostTelemetry_Answers200_AndTheValueIsReadBackOverRest()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-telemetry");
        var posted = await rest.Http.PostAsync($"/api/v1/{device.Token}/telemetry", Json("{\"temperature\":25.5,\"humidity\":40}"));
        Assert.Equal(HttpStatusCode.OK, posted.StatusCode);
        Assert.Equal("25.5", await rest.LatestAsync(device.Id, "temperature"));
        Assert.Equal("40", await rest.LatestAsync(device.Id, "humidity"));
    }

    [Theory]
    [InlineData("telemetry")]
    [InlineData("attributes")]
    [InlineData("claim")]
    [InlineData("rpc")]
    [InlineData("rpc/1")]
    public async Task UnknownToken_Is401(string path)
    {
        using var http = fixture.CreateHttpClient();
        var response = await http.PostAsync($"/api/v1/no-such-token/{path}", Json("{}"));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/v1/no-such-token/attributes")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/v1/no-such-token/rpc?timeout=100")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/v1/no-such-token/firmware?title=a&version=1")).StatusCode);
    }

    [Theory]
    [InlineData("telemetry")]
    [InlineData("attributes")]
    [InlineData("claim")]
    [InlineData("rpc")]
    public async Task BadJson_Is400_NotTheReferences500(string path)
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-badjson");
        var response = await rest.Http.PostAsync($"/api/v1/{device.Token}/{path}", Json("{\"temperature\":"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(400, error!["status"]!.GetValue<int>());
    }

    [Fact]
    public async Task ClaimWithADurationThatIsNoNumber_Is400NamingIt()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-claim-bad");
        var response = await rest.Http.PostAsync($"/api/v1/{device.Token}/claim", Json("{\"durationMs\":\"x\"}"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Contains("durationMs", error!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("rpc")]
    [InlineData("rpc/1")]
    public async Task RpcBodies_Beyond64KiB_Are413(string path)
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-413");
        var body = "{\"method\":\"x\",\"params\":\"" + new string('a', 64 * 1024) + "\"}";
        var response = await rest.Http.PostAsync($"/api/v1/{device.Token}/{path}", Json(body));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task TelemetryBody_BeyondTheCorePayloadLimit_Is413()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-413t");
        var body = "{\"blob\":\"" + new string('a', 200 * 1024) + "\"}";
        var response = await rest.Http.PostAsync($"/api/v1/{device.Token}/telemetry", Json(body));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }

    [Fact]
    public async Task Attributes_PostedByTheDevice_AndSharedOnesSavedOverRest_AreReturnedByGet()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-attrs");
        Assert.Equal(HttpStatusCode.OK, (await rest.Http.PostAsync($"/api/v1/{device.Token}/attributes", Json("{\"model\":\"X1\",\"serial\":7}"))).StatusCode);
        await rest.SaveSharedAsync(device.Id, "{\"interval\":30,\"mode\":\"eco\"}");

        var all = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/v1/{device.Token}/attributes");
        Assert.Equal("X1", all!["client"]!["model"]!.GetValue<string>());
        Assert.Equal(30, all["shared"]!["interval"]!.GetValue<int>());

        var some = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/v1/{device.Token}/attributes?clientKeys=serial&sharedKeys=mode");
        Assert.Equal("{\"client\":{\"serial\":7},\"shared\":{\"mode\":\"eco\"}}", some!.ToJsonString());

        // The reference's rule: naming keys of one scope only asks nothing of the other (a firmware asking for its
        // fw_* shared keys does not get every client attribute).
        var sharedOnly = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/v1/{device.Token}/attributes?sharedKeys=mode");
        Assert.Equal("{\"shared\":{\"mode\":\"eco\"}}", sharedOnly!.ToJsonString());
        var clientOnly = await rest.Http.GetFromJsonAsync<JsonObject>($"/api/v1/{device.Token}/attributes?clientKeys=model");
        Assert.Equal("{\"client\":{\"model\":\"X1\"}}", clientOnly!.ToJsonString());
    }

    [Fact]
    public async Task AttributeUpdatesLongPoll_IsAnsweredByASharedAttributeSavedOverRest()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-poll-attr");
        var poll = rest.Http.GetAsync($"/api/v1/{device.Token}/attributes/updates?timeout=20000");
        await DeviceApiWait.UntilAsync(() => fixture.Host.Engine.Sessions.GetSessions(device.Id).Any(s => s.Transport == "HTTP" && s.WantsAttributeUpdates), "the long poll to register");
        await rest.SaveSharedAsync(device.Id, "{\"targetTemperature\":21}");

        var response = await poll;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("{\"targetTemperature\":21}", await response.Content.ReadAsStringAsync());
        await DeviceApiWait.UntilAsync(() => fixture.Host.Engine.Sessions.GetSessions(device.Id).Count == 0, "the session to end with the poll");
    }

    [Fact]
    public async Task LongPolls_Answer408_AtTheirTimeout()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-poll-408");
        var attributes = rest.Http.GetAsync($"/api/v1/{device.Token}/attributes/updates?timeout=300");
        var rpc = rest.Http.GetAsync($"/api/v1/{device.Token}/rpc?timeout=300");
        Assert.Equal(HttpStatusCode.RequestTimeout, (await attributes).StatusCode);
        Assert.Equal(HttpStatusCode.RequestTimeout, (await rpc).StatusCode);
    }

    [Fact]
    public async Task RpcLongPoll_ReceivesAServerRpc_AndTheReplyCompletesTheCaller()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-rpc");
        var poll = rest.Http.GetAsync($"/api/v1/{device.Token}/rpc?timeout=20000");
        await DeviceApiWait.UntilAsync(() => fixture.Host.Engine.Sessions.GetSessions(device.Id).Any(s => s.WantsRpc), "the RPC long poll to register");
        var call = fixture.Host.Engine.Rpc.SendAsync(device.Id, "setGpio", "{\"pin\":4,\"value\":1}", oneWay: false, timeoutMs: 20000, CancellationToken.None);

        var request = await (await poll).Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal("setGpio", request!["method"]!.GetValue<string>());
        Assert.Equal(4, request["params"]!["pin"]!.GetValue<int>());
        var id = request["id"]!.GetValue<int>();

        var reply = await rest.Http.PostAsync($"/api/v1/{device.Token}/rpc/{id}", Json("{\"pin\":4,\"value\":1}"));
        Assert.Equal(HttpStatusCode.OK, reply.StatusCode);
        var outcome = await call;
        Assert.Equal(RpcStatus.Success, outcome.Status);
        Assert.Equal("{\"pin\":4,\"value\":1}", outcome.ResponseJson);
    }

    [Fact]
    public async Task RpcQueuedBeforeThePoll_IsDeliveredWhenThePollArrives()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-rpc-queued");
        var call = fixture.Host.Engine.Rpc.SendAsync(device.Id, "reboot", "{}", oneWay: true, timeoutMs: 20000, CancellationToken.None);
        var response = await rest.Http.GetAsync($"/api/v1/{device.Token}/rpc?timeout=10000");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("reboot", (await response.Content.ReadFromJsonAsync<JsonObject>())!["method"]!.GetValue<string>());
        Assert.Equal(RpcStatus.Success, (await call).Status);
    }

    [Fact]
    public async Task ClientSideRpc_ReturnsTheReplyBody()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-client-rpc");
        var response = await rest.Http.PostAsync($"/api/v1/{device.Token}/rpc", Json("{\"method\":\"getCurrentTime\",\"params\":{}}"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(body!["currentTime"]!.GetValue<long>() > 0);
    }

    [Fact]
    public async Task Claim_Answers200_AndRecordsTheClaimingServerAttributes()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-claim");
        var response = await rest.Http.PostAsync($"/api/v1/{device.Token}/claim", Json("{\"secretKey\":\"s3cret\",\"durationMs\":60000}"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var attributes = await rest.Http.GetStringAsync($"/api/plugins/telemetry/DEVICE/{device.Id}/values/attributes?keys=claimingAllowed");
        Assert.Contains("claimingAllowed", attributes);
    }

    [Fact]
    public async Task Firmware_IsServedWhole_AndByChunk()
    {
        using var rest = await DeviceApiRest.LoginAsync(fixture);
        var device = await rest.CreateDeviceAsync("http-fw");
        var package = Enumerable.Range(0, 150_000).Select(i => (byte)(i * 13)).ToArray();
        var title = "fw-" + Guid.NewGuid().ToString("N")[..6];
        var created = await fixture.Host.Engine.Registry.CreateOtaPackageAsync(device.TenantId, title, "1.0", package);
        Assert.True(created.IsOk, created.Error);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.Http.GetAsync($"/api/v1/{device.Token}/firmware?title={title}&version=1.0")).StatusCode); // not assigned yet
        (await rest.Http.PostAsync($"/api/device/{device.Id}/firmware/{created.Value!.Id}", null)).EnsureSuccessStatusCode();

        var whole = await rest.Http.GetByteArrayAsync($"/api/v1/{device.Token}/firmware?title={title}&version=1.0");
        Assert.Equal(package, whole);
        var chunk = await rest.Http.GetByteArrayAsync($"/api/v1/{device.Token}/firmware?title={title}&version=1.0&size=1000&chunk=3");
        Assert.Equal(package.AsSpan(3000, 1000).ToArray(), chunk);
        // Another title or version than the assigned package's: the reference's 400.
        var wrong = await rest.Http.GetAsync($"/api/v1/{device.Token}/firmware?title=nope&version=1.0");
        Assert.Equal(HttpStatusCode.BadRequest, wrong.StatusCode);
        Assert.Contains("Wrong title or version!", await wrong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
