using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using MQTTnet;

namespace Perf.EndToEnd;

/// <summary>A flood above the MQTT door's connection limit (50), on a host of its own.</summary>
public sealed class ConnectionLimitTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _host = new(Settings());
    private LogCapture _logs = null!;

    private static Dictionary<string, string?> Settings()
    {
        var settings = new Dictionary<string, string?>
        {
            ["MQTT_MAX_CONNECTIONS"] = "50",
            ["TCP_INTEGRATION_MAX_CONNECTIONS"] = "50",
            ["Mqtt:ConnectTimeout"] = "00:01:00", // the accepted part of the flood stays open while we look
            ["LIMITS_LOG_SUMMARY_SECONDS"] = "2",
        };
        LogCapture.Configure(settings);
        return settings;
    }

    public async Task InitializeAsync()
    {
        await _host.InitializeAsync();
        _logs = LogCapture.Attach(_host.Fixture);
    }

    public Task DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task MqttFloodOf80_Over50Limit_ExcessRefusedCountedAndLoggedOnce_GoodClientServedAfterTheFlood()
    {
        var fixture = _host.Fixture;
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("after-flood");
        double refusedBefore = await RefusedAsync(rest.Http, "mqtt", "limit");

        var opened = await Task.WhenAll(Enumerable.Range(0, 80).Select(_ => RawMqtt.OpenOrRefusedAsync(fixture.Endpoints.Mqtt!.Port)));
        var flood = opened.OfType<Socket>().ToList();
        try
        {
            // The refused ones are closed at accept (a reset may even beat the client's connect); the 50
            // admitted ones wait for a CONNECT (60 s here).
            var closed = await Task.WhenAll(flood.Select(s => RawMqtt.ClosedWithinAsync(s, TimeSpan.FromSeconds(5))));
            Assert.Equal(30, closed.Count(c => c) + (opened.Length - flood.Count));
            await Eventually.TrueAsync(async () => await RefusedAsync(rest.Http, "mqtt", "limit") - refusedBefore == 30);

            // While the door is full, a good client is refused too: that is what the limit means.
            using var full = new MqttClientFactory().CreateMqttClient();
            await Assert.ThrowsAnyAsync<Exception>(() => full.ConnectAsync(MqttDevice.Options(fixture, token)));
        }
        finally
        {
            foreach (var socket in flood)
            {
                socket.Dispose();
            }
        }

        // The flood ends: the good client is served again as soon as the door has room.
        await Eventually.TrueAsync(async () =>
        {
            try
            {
                await using var device = await MqttDevice.ConnectAsync(fixture, token);
                await device.PublishAsync("v1/devices/me/telemetry", """{"afterFlood":1}""");
                return true;
            }
            catch (Exception)
            {
                return false;
            }
        }, 20_000);

        // Log flood check: one Debug line per refused connection, Warnings only per burst.
        Assert.True(_logs.Count(LogLevel.Debug, "mqtt: connection from 127.0.0.1 refused: connection limit 50 reached") >= 30);
        Assert.InRange(_logs.Count(LogLevel.Warning, "connections refused: at the connection limit of 50"), 1, 3);
    }

    private static async Task<double> RefusedAsync(HttpClient http, string door, string reason)
    {
        var text = await http.GetStringAsync("/metrics");
        var prefix = "perf_guard_connections_refused{";
        return text.Split('\n')
            .Where(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains($"door=\"{door}\"") && l.Contains($"reason=\"{reason}\""))
            .Select(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture))
            .Sum();
    }
}

/// <summary>Wrong-credential blocking from 127.0.0.1: a host of its own without the loopback exemption and with a 3 s block.</summary>
public sealed class CredentialBlockingTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _host = new(Settings());
    private LogCapture _logs = null!;

    private static Dictionary<string, string?> Settings()
    {
        var settings = new Dictionary<string, string?>
        {
            ["LIMITS_EXEMPT_LOOPBACK"] = "false",
            ["AUTH_BLOCK_SECONDS"] = "3",
            ["CONN_RATE_PER_IP"] = "0",
        };
        LogCapture.Configure(settings);
        return settings;
    }

    public async Task InitializeAsync()
    {
        await _host.InitializeAsync();
        _logs = LogCapture.Attach(_host.Fixture);
    }

    public Task DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task TenBadMqttConnects_BlockTheAddressOnEveryDoor_EvenWithAGoodToken_UntilTheBlockEnds()
    {
        var fixture = _host.Fixture;
        await WaitUntilUnblockedAsync(fixture);
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("blocked");
        const string wrong = "not-a-token-13";

        for (int i = 0; i < 10; i++)
        {
            Assert.Equal(5, await ConnAckAsync(fixture, wrong));
        }

        var blockedAt = DateTime.UtcNow;
        Assert.Equal(5, await ConnAckAsync(fixture, token)); // the 11th: refused without looking at the token

        // The other device doors refuse the same address too, with their documented answers.
        using var http = fixture.CreateHttpClient();
        using var body = new StringContent("""{"t":1}""", Encoding.UTF8, "application/json");
        var response = await http.PostAsync($"/api/v1/{token}/telemetry", body);
        Assert.Equal(HttpStatusCode.TooManyRequests, response.StatusCode);
        var error = await response.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(429, error!["status"]!.GetValue<int>());
        Assert.Equal(33, error["errorCode"]!.GetValue<int>());
        Assert.False(string.IsNullOrEmpty(error["message"]!.GetValue<string>()));

        using var udp = new UdpClient(AddressFamily.InterNetwork);
        var coap = await RawCoap.ExchangeAsync(udp, HostFixture.Loopback(fixture.Endpoints.Coap!), RawCoap.PostTelemetry(1, token, """{"t":1}"""), TimeSpan.FromSeconds(20));
        Assert.Equal(0x83, coap); // 4.03

        // Unblocked after the block time (3 s here): the good token connects again.
        await Eventually.TrueAsync(async () => await ConnAckAsync(fixture, token) == 0, 30_000);
        Assert.True(DateTime.UtcNow - blockedAt > TimeSpan.FromSeconds(2), "unblocked before the block time");

        Assert.Equal(1, _logs.Count(LogLevel.Warning, "127.0.0.1 blocked for 3 s after 10 wrong credentials (last on mqtt: unknown access token)"));
        // Our log lines never carry a credential. (ASP.NET Core's own request lines carry the device API's URL,
        // token included, at Information; the shipped configuration keeps Microsoft.AspNetCore at Warning.)
        Assert.DoesNotContain(_logs.Lines, l => l.Category.StartsWith("Perf", StringComparison.Ordinal)
            && (l.Text.Contains(wrong, StringComparison.Ordinal) || l.Text.Contains(token, StringComparison.Ordinal)));
    }

    [Fact]
    public async Task TenWrongPasswords_BlockLogin_With429_EvenForTheRightPassword_UntilTheBlockEnds()
    {
        var fixture = _host.Fixture;
        await WaitUntilUnblockedAsync(fixture);
        using var http = fixture.CreateHttpClient();
        for (int i = 0; i < 10; i++)
        {
            var wrong = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "wrong-password-13" });
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        }

        var blocked = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        Assert.Equal(HttpStatusCode.TooManyRequests, blocked.StatusCode);
        var error = await blocked.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(33, error!["errorCode"]!.GetValue<int>());

        await WaitUntilUnblockedAsync(fixture);
        Assert.Equal(1, _logs.Count(LogLevel.Warning, "after 10 wrong credentials (last on rest: wrong user name or password)"));
        Assert.DoesNotContain(_logs.Lines, l => l.Text.Contains("wrong-password-13", StringComparison.Ordinal));
    }

    private static async Task WaitUntilUnblockedAsync(HostFixture fixture)
    {
        using var http = fixture.CreateHttpClient();
        await Eventually.TrueAsync(async () =>
            (await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" })).IsSuccessStatusCode, 30_000);
    }

    private static async Task<byte> ConnAckAsync(HostFixture fixture, string token)
    {
        using var socket = await RawMqtt.OpenAsync(fixture.Endpoints.Mqtt!.Port);
        await socket.SendAsync(RawMqtt.Connect(token, "blocking-" + Guid.NewGuid().ToString("N")[..6]));
        return (await RawMqtt.ReadExactlyAsync(socket, 4, TimeSpan.FromSeconds(10)))[3];
    }
}

/// <summary>The per-address connection rate from 127.0.0.1 (exemption off), on a host of its own.</summary>
public sealed class ConnectionRateTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _host = new(Settings());
    private LogCapture _logs = null!;

    private static Dictionary<string, string?> Settings()
    {
        var settings = new Dictionary<string, string?>
        {
            ["LIMITS_EXEMPT_LOOPBACK"] = "false",
            ["CONN_RATE_PER_IP"] = "5:600",
        };
        LogCapture.Configure(settings);
        return settings;
    }

    public async Task InitializeAsync()
    {
        await _host.InitializeAsync();
        _logs = LogCapture.Attach(_host.Fixture);
    }

    public Task DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task AnAddressOverItsConnectionRate_IsClosedAtAccept_OnEveryDoor()
    {
        var fixture = _host.Fixture;
        var open = new List<Socket>();
        try
        {
            // 5 connections in the window (any door), then every new one is closed at once.
            for (int i = 0; i < 5; i++)
            {
                var socket = await RawMqtt.OpenAsync(i % 2 == 0 ? fixture.Endpoints.Mqtt!.Port : fixture.Endpoints.TcpIntegration!.Port);
                open.Add(socket);
            }

            Assert.All(await Task.WhenAll(open.Select(s => RawMqtt.ClosedWithinAsync(s, TimeSpan.FromSeconds(1)))), Assert.False);
            foreach (var port in new[] { fixture.Endpoints.Mqtt!.Port, fixture.Endpoints.TcpIntegration!.Port, fixture.Endpoints.Http!.Port })
            {
                using var refused = await RawMqtt.OpenOrRefusedAsync(port);
                Assert.True(refused is null || await RawMqtt.ClosedWithinAsync(refused, TimeSpan.FromSeconds(10)));
            }
        }
        finally
        {
            foreach (var socket in open)
            {
                socket.Dispose();
            }
        }

        Assert.Equal(3, _logs.Count(LogLevel.Debug, "refused: over the connection rate 5:600 per address"));
        Assert.Equal(3, _logs.Count(LogLevel.Warning, "connections refused: over the connection rate per address 5:600 (127.0.0.1)")); // one burst per door
    }
}

/// <summary>The per-device message rate is one budget across MQTT, the HTTP device API and CoAP (a host of its own: device limit 3 per 10 minutes).</summary>
public sealed class DeviceRateLimitAcrossDoorsTests : IAsyncLifetime
{
    private readonly HostFixtureWithSettings _host = new(new() { ["Mqtt:DeviceMessagesRateLimit"] = "3:600" });

    public Task InitializeAsync() => _host.InitializeAsync();

    public Task DisposeAsync() => _host.DisposeAsync();

    [Fact]
    public async Task HttpAndCoapUplinks_SpendTheDevicesBudget_AndAnswer429And4_29BeyondIt()
    {
        var fixture = _host.Fixture;
        using var rest = await TenantRest.LoginAsync(fixture);
        var (_, token, _) = await rest.CreateDeviceAsync("rate-across-doors");
        using var http = fixture.CreateHttpClient();
        using var udp = new UdpClient(AddressFamily.InterNetwork);
        var coap = HostFixture.Loopback(fixture.Endpoints.Coap!);

        Assert.Equal(HttpStatusCode.OK, (await PostAsync(http, token, 1)).StatusCode);
        Assert.Equal(0x41, await RawCoap.ExchangeAsync(udp, coap, RawCoap.PostTelemetry(1, token, """{"n":2}"""), TimeSpan.FromSeconds(20)));
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(http, token, 3)).StatusCode);

        var refused = await PostAsync(http, token, 4);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        var error = await refused.Content.ReadFromJsonAsync<JsonObject>();
        Assert.Equal(33, error!["errorCode"]!.GetValue<int>());
        Assert.Contains("3:600", error["message"]!.GetValue<string>());
        Assert.Equal(0x9D, await RawCoap.ExchangeAsync(udp, coap, RawCoap.PostTelemetry(2, token, """{"n":5}"""), TimeSpan.FromSeconds(20))); // 4.29

        // Another device has its own budget.
        var (_, other, _) = await rest.CreateDeviceAsync("rate-other");
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(http, other, 1)).StatusCode);
    }

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, string token, int n)
    {
        using var body = new StringContent($$"""{"n":{{n}}}""", Encoding.UTF8, "application/json");
        return await http.PostAsync($"/api/v1/{token}/telemetry", body);
    }
}
