using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using MQTTnet;
using Perf.Api.Edge.Protos;
using Perf.Api.Rest;
using Perf.Core.Domain;

namespace Perf.EndToEnd;

/// <summary>
/// No token or password in any log line: a full session against the host as a child process at Debug
/// level (ASP.NET Core's request logging included), then every secret used is looked for in its output.
/// </summary>
public sealed class SecretLogTests
{
    [Fact]
    public async Task FullSessionAtDebugLevel_WritesNoTokenPasswordJwtOrEdgeSecretToAnyLogLine()
    {
        var dataDir = Path.Combine(Path.GetTempPath(), "perf-secrets-" + Guid.NewGuid().ToString("N"));
        var tag = Guid.NewGuid().ToString("N")[..10];
        var signingKey = RandomNumberGenerator.GetBytes(64);
        var secrets = new Dictionary<string, string>(); // secret -> what it is
        string Secret(string value, string what)
        {
            secrets[value] = what;
            return value;
        }

        var sysPassword = Secret("SysPw" + tag, "sysadmin password");
        var tenantPassword = Secret("TenPw" + tag, "tenant admin password");
        var settings = HostFixture.FreePortSettings(dataDir);
        settings["Logging__LogLevel__Default"] = "Debug";
        settings["Logging__LogLevel__Microsoft.AspNetCore"] = "Debug";
        // Off in appsettings.json (a per-request Activity and scope otherwise): named to get the request lines.
        settings["Logging__LogLevel__Microsoft.AspNetCore.Hosting.Diagnostics"] = "Debug";
        settings["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Debug";
        settings["Logging__LogLevel__Grpc"] = "Debug";
        settings["SYSADMIN_PASSWORD"] = sysPassword;
        settings["TENANT_ADMIN_PASSWORD"] = tenantPassword;
        settings["JWT_SIGNING_KEY"] = Secret(Convert.ToBase64String(signingKey), "JWT signing key");

        using var server = HostProcess.Start(settings);
        try
        {
            var ports = await server.WaitForDoorsAsync(5, TimeSpan.FromSeconds(60));
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{ports["http"]}"), Timeout = TimeSpan.FromSeconds(30) };

            // ---- REST: logins right and wrong, refresh, a customer user with a password.
            var (sysJwt, sysRefresh) = await LoginAsync(http, "sysadmin@example.com", sysPassword);
            var (jwt, refresh) = await LoginAsync(http, "tenant@example.com", tenantPassword);
            Secret(sysJwt, "sysadmin JWT");
            Secret(sysRefresh, "sysadmin refresh token");
            Secret(jwt, "tenant JWT");
            Secret(refresh, "tenant refresh token");
            var wrong = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = Secret("WrongPw" + tag, "wrong password") });
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
            var unknown = await http.PostAsJsonAsync("/api/auth/login", new { username = "nobody" + tag + "@example.com", password = Secret("NobodyPw" + tag, "unknown user's password") });
            Assert.Equal(HttpStatusCode.Unauthorized, unknown.StatusCode);
            var renewed = await (await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = refresh })).Content.ReadFromJsonAsync<JsonObject>();
            Secret(renewed!["token"]!.GetValue<string>(), "renewed JWT");
            Secret(renewed["refreshToken"]!.GetValue<string>(), "renewed refresh token");
            Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsJsonAsync("/api/auth/token", new { refreshToken = jwt })).StatusCode);

            var customer = await SendAsync(http, HttpMethod.Post, "/api/customer", jwt, new { title = "c-" + tag });
            var customerId = customer!["id"]!["id"]!.GetValue<string>();
            var customerPassword = Secret("CustPw" + tag, "customer user password");
            await SendAsync(http, HttpMethod.Post, "/api/user", jwt, new
            {
                email = $"cu-{tag}@example.com", authority = "CUSTOMER_USER", customerId = new { entityType = "CUSTOMER", id = customerId }, password = customerPassword,
            });
            var (customerJwt, customerRefresh) = await LoginAsync(http, $"cu-{tag}@example.com", customerPassword);
            Secret(customerJwt, "customer JWT");
            Secret(customerRefresh, "customer refresh token");

            // ---- Devices with distinctive tokens: in the query string, through the credentials endpoint, generated.
            var tokenA = Secret("LeakTokA" + tag, "device token (query string)");
            var deviceA = (await SendAsync(http, HttpMethod.Post, $"/api/device?accessToken={tokenA}", jwt, new { name = "a-" + tag, type = "default" }))!["id"]!["id"]!.GetValue<string>();
            var deviceB = (await SendAsync(http, HttpMethod.Post, "/api/device", jwt, new { name = "b-" + tag, type = "default" }))!["id"]!["id"]!.GetValue<string>();
            var tokenB = Secret("LeakTokB" + tag, "device token (credentials endpoint)");
            await SendAsync(http, HttpMethod.Post, "/api/device/credentials", jwt, new
            {
                deviceId = new { entityType = "DEVICE", id = deviceB }, credentialsType = "ACCESS_TOKEN", credentialsId = tokenB,
            });
            var deviceC = (await SendAsync(http, HttpMethod.Post, "/api/device", jwt, new { name = "c-" + tag, type = "default" }))!["id"]!["id"]!.GetValue<string>();
            var tokenC = Secret((await SendAsync(http, HttpMethod.Get, $"/api/device/{deviceC}/credentials", jwt))!["credentialsId"]!.GetValue<string>(), "generated device token");
            var badToken = Secret("BadTok" + tag, "unknown device token");

            // ---- REST with bearer tokens: good, expired (signed with the real key), forged, alg none, refresh as access.
            var me = await SendAsync(http, HttpMethod.Get, "/api/auth/user", jwt);
            var user = new User(Guid.Parse(me!["id"]!["id"]!.GetValue<string>()), Guid.Parse(me["tenantId"]!["id"]!.GetValue<string>()), Guid.Empty,
                "tenant@example.com", Authority.TenantAdmin, "unused", null, null, 0);
            var past = new JwtService(signingKey, TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(60), new FixedClock(DateTimeOffset.UtcNow.AddHours(-3)));
            var expired = Secret(past.Issue(user).Token, "expired JWT");
            var forged = Secret(new JwtService(RandomNumberGenerator.GetBytes(64), TimeSpan.FromHours(1), TimeSpan.FromHours(1)).Issue(user).Token, "forged JWT");
            var parts = jwt.Split('.');
            var none = Secret(Convert.ToBase64String("{\"alg\":\"none\"}"u8).TrimEnd('=') + "." + parts[1] + ".", "alg none JWT");
            foreach (var (token, status) in new[] { (jwt, 200), (expired, 401), (forged, 401), (none, 401), (refresh, 401) })
            {
                foreach (var header in new[] { "X-Authorization", "Authorization" })
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/device/{deviceA}");
                    request.Headers.TryAddWithoutValidation(header, "Bearer " + token);
                    using var response = await http.SendAsync(request);
                    Assert.Equal(status, (int)response.StatusCode);
                }
            }

            // ---- HTTP device API, token in the URL: 200, 401, 400, 404, 405, 408, 413.
            Assert.Equal(HttpStatusCode.OK, (await PostJsonAsync(http, $"/api/v1/{tokenA}/telemetry", "{\"t\":1}")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await PostJsonAsync(http, $"/api/v1/{badToken}/telemetry", "{\"t\":1}")).StatusCode);
            Assert.Equal(HttpStatusCode.BadRequest, (await PostJsonAsync(http, $"/api/v1/{tokenB}/telemetry", "{\"t\":")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await PostJsonAsync(http, $"/api/v1/{tokenB}/rpc/424242", "{}")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/api/v1/{tokenB}/no-such-resource")).StatusCode);
            Assert.Equal(HttpStatusCode.MethodNotAllowed, (await http.DeleteAsync($"/api/v1/{tokenB}/telemetry")).StatusCode);
            Assert.Equal(HttpStatusCode.RequestTimeout, (await http.GetAsync($"/api/v1/{tokenC}/rpc?timeout=200")).StatusCode);
            Assert.Equal(HttpStatusCode.RequestTimeout, (await http.GetAsync($"/api/v1/{tokenC}/attributes/updates?timeout=200")).StatusCode);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await PostJsonAsync(http, $"/api/v1/{tokenC}/telemetry", "{\"k\":\"" + new string('x', 70_000) + "\"}")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync($"/api/v1/{tokenA}/attributes?clientKeys=a&sharedKeys=b")).StatusCode);

            // ---- MQTT: MQTTnet good and bad token, mosquitto_pub good and bad token.
            await using (var mqtt = await MqttDevice.ConnectAsync(ports["mqtt"], tokenB))
            {
                await mqtt.PublishAsync("v1/devices/me/telemetry", "{\"m\":1}");
            }

            using (var refused = new MqttClientFactory().CreateMqttClient())
            {
                var result = await refused.ConnectAsync(MqttDevice.Options(ports["mqtt"], badToken));
                Assert.NotEqual(MqttClientConnectResultCode.Success, result.ResultCode);
            }

            var (pubOk, _) = await RunAsync("mosquitto_pub", "-h", "127.0.0.1", "-p", ports["mqtt"].ToString(System.Globalization.CultureInfo.InvariantCulture),
                "-u", tokenC, "-q", "1", "-t", "v1/devices/me/telemetry", "-m", "{\"q\":1}");
            Assert.Equal(0, pubOk);
            var (pubBad, _) = await RunAsync("mosquitto_pub", "-h", "127.0.0.1", "-p", ports["mqtt"].ToString(System.Globalization.CultureInfo.InvariantCulture),
                "-u", badToken, "-P", Secret("MqttPw" + tag, "MQTT password field"), "-q", "1", "-t", "v1/devices/me/telemetry", "-m", "{\"q\":1}");
            Assert.NotEqual(0, pubBad);

            // ---- CoAP: token in the URI, good and bad, a GET and a bad body.
            var coap = $"coap://127.0.0.1:{ports["coap"]}/api/v1/";
            var (coapOk, coapOut) = await RunAsync("coap-client-notls", "-m", "post", "-t", "json", "-e", "{\"c\":1}", coap + tokenA + "/telemetry");
            Assert.Equal(0, coapOk);
            Assert.DoesNotContain("4.", coapOut, StringComparison.Ordinal);
            var (_, coapBad) = await RunAsync("coap-client-notls", "-m", "post", "-e", "{\"c\":1}", coap + badToken + "/telemetry");
            Assert.Contains("4.01", coapBad, StringComparison.Ordinal);
            await RunAsync("coap-client-notls", "-m", "post", "-e", "{\"c\":", coap + tokenA + "/telemetry");
            await RunAsync("coap-client-notls", "-m", "get", coap + tokenB + "/attributes?clientKeys=a");

            // ---- WebSockets: ?token= good and bad, authCmd good and bad.
            var wsBase = $"ws://127.0.0.1:{ports["http"]}";
            using (var ws = new ClientWebSocket())
            {
                await ws.ConnectAsync(new Uri($"{wsBase}/api/ws/plugins/telemetry?token={jwt}"), CancellationToken.None);
                await ws.SendAsync(Encoding.UTF8.GetBytes($$"""{"tsSubCmds":[{"entityType":"DEVICE","entityId":"{{deviceA}}","scope":"LATEST_TELEMETRY","cmdId":1}]}"""), WebSocketMessageType.Text, true, CancellationToken.None);
                var buffer = new byte[8192];
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                var received = await ws.ReceiveAsync(buffer, cts.Token);
                Assert.Contains("subscriptionId", Encoding.UTF8.GetString(buffer, 0, received.Count), StringComparison.Ordinal);
                await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
            }

            using (var ws = new ClientWebSocket())
            {
                await Assert.ThrowsAnyAsync<WebSocketException>(() => ws.ConnectAsync(new Uri($"{wsBase}/api/ws/plugins/telemetry?token={forged}"), CancellationToken.None));
            }

            foreach (var token in new[] { customerJwt, expired })
            {
                using var ws = new ClientWebSocket();
                await ws.ConnectAsync(new Uri($"{wsBase}/api/ws"), CancellationToken.None);
                await ws.SendAsync(Encoding.UTF8.GetBytes($$"""{"authCmd":{"cmdId":0,"token":"{{token}}"},"cmds":[]}"""), WebSocketMessageType.Text, true, CancellationToken.None);
                var buffer = new byte[8192];
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                try
                {
                    await ws.ReceiveAsync(buffer, cts.Token);
                }
                catch (OperationCanceledException)
                {
                    // A valid authCmd with no commands answers nothing.
                }
            }

            // ---- Edge: routing key and secret, right and wrong.
            var routingKey = "rk" + tag;
            var edgeSecret = Secret("EdgeSecret" + tag, "edge secret");
            await SendAsync(http, HttpMethod.Post, "/api/edge", jwt, new { name = "edge-" + tag, type = "default", routingKey, secret = edgeSecret });
            await using (var edge = new EdgeTestClient(ports["edges"]))
            {
                Assert.Equal(ConnectResponseCode.Accepted, (await edge.ConnectAsync(routingKey, edgeSecret)).ResponseCode);
            }

            await using (var edge = new EdgeTestClient(ports["edges"]))
            {
                Assert.Equal(ConnectResponseCode.BadCredentials, (await edge.ConnectAsync(routingKey, Secret("WrongEdgeSecret" + tag, "wrong edge secret"))).ResponseCode);
            }

            // Stop gracefully so every buffered log line is written.
            server.Terminate();
            Assert.Equal(0, await server.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            var lines = server.Output.Split('\n');

            // The run really logged at Debug with request paths, so a leak would have shown.
            Assert.Contains(lines, l => l.Contains("dbug:", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains("Request starting", StringComparison.Ordinal) && l.Contains("/api/v1/", StringComparison.Ordinal));

            var leaks = (from line in lines
                         from secret in secrets
                         where line.Contains(secret.Key, StringComparison.Ordinal)
                         select $"{secret.Value}: {line}").ToList();
            Assert.True(leaks.Count == 0, $"{leaks.Count} log lines carry a secret:\n" + string.Join('\n', leaks.Take(60)));
            Assert.Contains(lines, l => l.Contains("Request starting", StringComparison.Ordinal) && l.Contains("/api/v1/***/telemetry", StringComparison.Ordinal));
            Assert.Contains(lines, l => l.Contains("Created tenant administrator tenant@example.com, password from TENANT_ADMIN_PASSWORD", StringComparison.Ordinal));
        }
        finally
        {
            server.Kill();
            TestDirectories.Delete(dataDir);
        }
    }

    private static async Task<(string Token, string Refresh)> LoginAsync(HttpClient http, string username, string password)
    {
        var response = await http.PostAsJsonAsync("/api/auth/login", new { username, password });
        var body = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.True(response.IsSuccessStatusCode, $"login {username}: {(int)response.StatusCode} {body}");
        return (body!["token"]!.GetValue<string>(), body["refreshToken"]!.GetValue<string>());
    }

    private static async Task<JsonNode?> SendAsync(HttpClient http, HttpMethod method, string path, string jwt, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.TryAddWithoutValidation("X-Authorization", "Bearer " + jwt);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }

        using var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {path}: {(int)response.StatusCode} {text}");
        return text.Length == 0 ? null : JsonNode.Parse(text);
    }

    private static Task<HttpResponseMessage> PostJsonAsync(HttpClient http, string path, string json) =>
        http.PostAsync(path, new StringContent(json, Encoding.UTF8, "application/json"));

    private static async Task<(int ExitCode, string Output)> RunAsync(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var output = process.StandardOutput.ReadToEndAsync(cts.Token);
        var error = process.StandardError.ReadToEndAsync(cts.Token);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await output + await error);
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
