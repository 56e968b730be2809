using System.Buffers.Text;
using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Perf.Api.Rest;
using Perf.Core.Domain;

namespace Perf.EndToEnd;

/// <summary>The HTTP answers to bad, forged, expired and misused JWTs: 401 with the reference's error body.</summary>
[Collection(HostCollection.Name)]
public sealed class JwtHttpTests(HostFixture fixture)
{
    private static async Task<(HttpStatusCode Status, JsonObject? Body)> GetAsync(HttpClient http, string path, string? header, string? value)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (header is not null)
        {
            request.Headers.TryAddWithoutValidation(header, value);
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text) as JsonObject);
    }

    private static void AssertError(HttpStatusCode status, JsonObject? body, int expectedStatus, int errorCode)
    {
        Assert.Equal(expectedStatus, (int)status);
        Assert.NotNull(body);
        Assert.Equal(expectedStatus, body["status"]!.GetValue<int>());
        Assert.Equal(errorCode, body["errorCode"]!.GetValue<int>());
        Assert.False(string.IsNullOrEmpty(body["message"]!.GetValue<string>()));
    }

    private (string Token, User User) ExpiredToken(User user)
    {
        var key = JwtService.LoadOrCreateKey(null, fixture.DataDir);
        var past = new JwtService(key, TimeSpan.FromSeconds(9000), TimeSpan.FromSeconds(9000), new FixedClock(DateTimeOffset.UtcNow.AddDays(-1)));
        return (past.Issue(user).Token, user);
    }

    private static async Task<User> MeAsync(Rest rest)
    {
        var me = await rest.GetAsync("/api/auth/user");
        return new User(Guid.Parse(me["id"]!["id"]!.GetValue<string>()), Guid.Parse(me["tenantId"]!["id"]!.GetValue<string>()), Guid.Empty,
            me["email"]!.GetValue<string>(), Authority.TenantAdmin, "unused", null, null, 0);
    }

    [Fact]
    public async Task ExpiredToken_Answers401WithErrorCode11_AndWrongPassword401WithErrorCode10()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var http = fixture.CreateHttpClient();
        var (expired, _) = ExpiredToken(await MeAsync(rest));
        var (status, body) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + expired);
        AssertError(status, body, 401, 11);
        (status, body) = await GetAsync(http, "/api/auth/user", "Authorization", "Bearer " + expired);
        AssertError(status, body, 401, 11);

        var login = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "not-the-password" });
        AssertError(login.StatusCode, await login.Content.ReadFromJsonAsync<JsonObject>(), 401, 10);
        var unknown = await http.PostAsJsonAsync("/api/auth/login", new { username = "nobody@example.com", password = "tenant" });
        var unknownBody = await unknown.Content.ReadFromJsonAsync<JsonObject>();
        AssertError(unknown.StatusCode, unknownBody, 401, 10);
        Assert.Equal("Invalid username or password", unknownBody!["message"]!.GetValue<string>()); // same words: no user enumeration
    }

    [Fact]
    public async Task ForgedNoneWrongAlgTamperedMalformedAndOversizeTokens_Answer401WithErrorCode10()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var http = fixture.CreateHttpClient();
        var parts = rest.Token.Split('.');
        var claims = Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[1]));
        string B64(string s) => Base64Url.EncodeToString(Encoding.UTF8.GetBytes(s));
        var key = JwtService.LoadOrCreateKey(null, fixture.DataDir);
        var hs256Input = B64("""{"alg":"HS256","typ":"JWT"}""") + "." + parts[1];
        var candidates = new Dictionary<string, string>
        {
            ["alg none"] = B64("""{"alg":"none","typ":"JWT"}""") + "." + parts[1] + ".",
            ["HS256 with our key"] = hs256Input + "." + Base64Url.EncodeToString(HMACSHA256.HashData(key, Encoding.ASCII.GetBytes(hs256Input))),
            ["other key"] = parts[0] + "." + parts[1] + "." + Base64Url.EncodeToString(HMACSHA512.HashData(RandomNumberGenerator.GetBytes(64), Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]))),
            ["tampered role"] = parts[0] + "." + B64(claims.Replace("TENANT_ADMIN", "SYS_ADMIN", StringComparison.Ordinal)) + "." + parts[2],
            ["no signature"] = parts[0] + "." + parts[1] + ".",
            ["malformed base64"] = parts[0] + ".%%%." + parts[2],
            ["not a jwt"] = "garbage",
            ["oversize"] = parts[0] + "." + new string('A', 16_000) + "." + parts[2],
            ["refresh token"] = rest.RefreshToken,
        };
        foreach (var (name, token) in candidates)
        {
            var (status, body) = await GetAsync(http, "/api/tenant/devices?pageSize=1", "X-Authorization", "Bearer " + token);
            Assert.True(status == HttpStatusCode.Unauthorized, $"{name}: {status}");
            AssertError(status, body, 401, 10);
        }

        var (s1, b1) = await GetAsync(http, "/api/tenant/devices?pageSize=1", null, null);
        AssertError(s1, b1, 401, 10);
        var (s2, b2) = await GetAsync(http, "/api/tenant/devices?pageSize=1", "X-Authorization", "Basic dGVuYW50OnRlbmFudA==");
        AssertError(s2, b2, 401, 10);
    }

    [Fact]
    public async Task AccessToken_IsRefusedAtTheRefreshEndpoint_AndRefreshWorksOnlyWithARefreshToken()
    {
        using var rest = await Rest.LoginAsync(fixture);
        using var http = fixture.CreateHttpClient();
        var refused = await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = rest.Token });
        AssertError(refused.StatusCode, await refused.Content.ReadFromJsonAsync<JsonObject>(), 401, 10);

        var renewed = await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = rest.RefreshToken });
        Assert.Equal(HttpStatusCode.OK, renewed.StatusCode);
        var tokens = await renewed.Content.ReadFromJsonAsync<JsonObject>();
        var (status, _) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + tokens!["token"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, status);
    }

    [Fact]
    public async Task Logout_EndsThatLoginsTokens_AndAPasswordChange_EndsEveryOlderToken()
    {
        using var admin = await Rest.LoginAsync(fixture);
        var email = $"rotating-{Guid.NewGuid():N}@example.com";
        await admin.PostAsync("/api/user", new { email, authority = "TENANT_ADMIN", password = "pw-first" });
        using var first = await Rest.LoginAsync(fixture, email, "pw-first");
        using var second = await Rest.LoginAsync(fixture, email, "pw-first");
        using var http = fixture.CreateHttpClient();

        // Logout (the reference's session invalidation): that login's access and refresh tokens stop; another stays.
        Assert.Equal(HttpStatusCode.OK, (await first.Http.PostAsync("/api/auth/logout", null)).StatusCode);
        var (status, body) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + first.Token);
        AssertError(status, body, 401, 10);
        var refresh = await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = first.RefreshToken });
        AssertError(refresh.StatusCode, await refresh.Content.ReadFromJsonAsync<JsonObject>(), 401, 10);
        Assert.Equal(HttpStatusCode.OK, (await second.Http.GetAsync("/api/auth/user")).StatusCode);

        // changePassword: the current one first, at least 6 characters, then a new pair; every older token stops.
        var wrong = await second.Http.PostAsJsonAsync("/api/auth/changePassword", new { currentPassword = "nope", newPassword = "pw-second" });
        Assert.Equal(HttpStatusCode.BadRequest, wrong.StatusCode);
        var tooShort = await second.Http.PostAsJsonAsync("/api/auth/changePassword", new { currentPassword = "pw-first", newPassword = "pw" });
        Assert.Equal(HttpStatusCode.BadRequest, tooShort.StatusCode);
        var changed = await second.Http.PostAsJsonAsync("/api/auth/changePassword", new { currentPassword = "pw-first", newPassword = "pw-second" });
        Assert.Equal(HttpStatusCode.OK, changed.StatusCode);
        var pair = (await changed.Content.ReadFromJsonAsync<JsonObject>())!;
        (status, _) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + pair["token"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, status);
        (status, body) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + second.Token);
        AssertError(status, body, 401, 10);
        refresh = await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = second.RefreshToken });
        AssertError(refresh.StatusCode, await refresh.Content.ReadFromJsonAsync<JsonObject>(), 401, 10);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/login", new { username = email, password = "pw-first" })).StatusCode);
        using var again = await Rest.LoginAsync(fixture, email, "pw-second");
        Assert.Contains((await admin.GetAsync($"/api/users?pageSize=1000&page=0&textSearch={email}"))["data"]!.AsArray(), u => u!["email"]!.GetValue<string>() == email);
    }

    [Fact]
    public async Task AUserCreatedWithoutAPassword_LogsInOnlyAfterActivation_ThroughItsLink()
    {
        using var admin = await Rest.LoginAsync(fixture);
        var email = $"pending-{Guid.NewGuid():N}@example.com";
        var id = (await admin.PostAsync("/api/user", new { email, authority = "TENANT_ADMIN" }))["id"]!["id"]!.GetValue<string>();
        using var http = fixture.CreateHttpClient();

        var link = await admin.Http.GetStringAsync($"/api/user/{id}/activationLink");
        Assert.Contains("/api/noauth/activate?activateToken=", link, StringComparison.Ordinal);
        var token = link[(link.IndexOf('=', StringComparison.Ordinal) + 1)..];

        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsJsonAsync("/api/noauth/activate", new { activateToken = token + "x", password = "pw-pending" })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsJsonAsync("/api/noauth/activate", new { activateToken = token, password = "pw" })).StatusCode);
        var activated = await http.PostAsJsonAsync("/api/noauth/activate", new { activateToken = token, password = "pw-pending" });
        Assert.Equal(HttpStatusCode.OK, activated.StatusCode);
        var pair = (await activated.Content.ReadFromJsonAsync<JsonObject>())!;
        var (status, _) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + pair["token"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, status);
        using var loggedIn = await Rest.LoginAsync(fixture, email, "pw-pending");

        // The link is spent: a second activation and a new link are refused.
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsJsonAsync("/api/noauth/activate", new { activateToken = token, password = "pw-again" })).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await admin.Http.GetAsync($"/api/user/{id}/activationLink")).StatusCode);
    }

    [Fact]
    public async Task TokensOfADeletedUser_StopWorkingAtOnce_ForRestWebSocketAndRefresh()
    {
        using var admin = await Rest.LoginAsync(fixture);
        var email = $"doomed-{Guid.NewGuid():N}@example.com";
        var created = await admin.PostAsync("/api/user", new { email, authority = "TENANT_ADMIN", password = "pw-doomed" });
        using var doomed = await Rest.LoginAsync(fixture, email, "pw-doomed");
        Assert.Equal(HttpStatusCode.OK, (await doomed.Http.GetAsync("/api/auth/user")).StatusCode);

        using (var delete = await admin.Http.DeleteAsync($"/api/user/{created["id"]!["id"]!.GetValue<string>()}"))
        {
            Assert.Equal(HttpStatusCode.OK, delete.StatusCode);
        }

        using var http = fixture.CreateHttpClient();
        var (status, body) = await GetAsync(http, "/api/tenant/devices?pageSize=1", "X-Authorization", "Bearer " + doomed.Token);
        AssertError(status, body, 401, 10);
        var refresh = await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = doomed.RefreshToken });
        AssertError(refresh.StatusCode, await refresh.Content.ReadFromJsonAsync<JsonObject>(), 401, 10);

        // A user created again with the same e-mail has a new id: the old tokens stay dead.
        await admin.PostAsync("/api/user", new { email, authority = "TENANT_ADMIN", password = "pw-doomed" });
        (status, _) = await GetAsync(http, "/api/auth/user", "X-Authorization", "Bearer " + doomed.Token);
        Assert.Equal(HttpStatusCode.Unauthorized, status);

        using var ws = new ClientWebSocket();
        var error = await Assert.ThrowsAnyAsync<WebSocketException>(() =>
            ws.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws/plugins/telemetry?token={doomed.Token}"), CancellationToken.None));
        Assert.Contains("401", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WebSocketAuthCmd_WithForgedOrExpiredToken_AnswersErrorCode10AndCloses()
    {
        using var rest = await Rest.LoginAsync(fixture);
        var (expired, _) = ExpiredToken(await MeAsync(rest));
        var parts = rest.Token.Split('.');
        var forged = parts[0] + "." + parts[1] + "." + Base64Url.EncodeToString(RandomNumberGenerator.GetBytes(64));
        foreach (var token in new[] { expired, forged, rest.RefreshToken })
        {
            using var ws = new ClientWebSocket();
            await ws.ConnectAsync(new Uri($"ws://127.0.0.1:{fixture.Endpoints.Http!.Port}/api/ws"), CancellationToken.None);
            await ws.SendAsync(Encoding.UTF8.GetBytes($$$"""{"authCmd":{"cmdId":0,"token":"{{{token}}}"}}"""), WebSocketMessageType.Text, true, CancellationToken.None);
            var buffer = new byte[4096];
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var received = await ws.ReceiveAsync(buffer, cts.Token);
            var answer = JsonNode.Parse(Encoding.UTF8.GetString(buffer, 0, received.Count))!;
            Assert.Equal(10, answer["errorCode"]!.GetValue<int>());
            var close = await ws.ReceiveAsync(buffer, cts.Token);
            Assert.Equal(WebSocketMessageType.Close, close.MessageType);
            Assert.Equal(WebSocketCloseStatus.PolicyViolation, ws.CloseStatus);
        }
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
