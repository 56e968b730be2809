using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>A device created over REST as tenant@example.com, with its access token.</summary>
internal sealed record DeviceApiDevice(Guid Id, Guid TenantId, string Token);

/// <summary>REST calls the device-API tests need: login, create a device, save shared attributes, read telemetry.</summary>
internal sealed class DeviceApiRest : IDisposable
{
    private DeviceApiRest(HttpClient http) => Http = http;

    public HttpClient Http { get; }

    public static async Task<DeviceApiRest> LoginAsync(HostFixture fixture)
    {
        var http = fixture.CreateHttpClient();
        var login = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        login.EnsureSuccessStatusCode();
        var jwt = (await login.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", jwt);
        return new DeviceApiRest(http);
    }

    public async Task<DeviceApiDevice> CreateDeviceAsync(string prefix)
    {
        var created = await Http.PostAsJsonAsync("/api/device", new { name = prefix + "-" + Guid.NewGuid().ToString("N")[..8], type = "default" });
        created.EnsureSuccessStatusCode();
        var device = (await created.Content.ReadFromJsonAsync<JsonObject>())!;
        var id = Guid.Parse(device["id"]!["id"]!.GetValue<string>());
        var tenant = Guid.Parse(device["tenantId"]!["id"]!.GetValue<string>());
        var credentials = await Http.GetFromJsonAsync<JsonObject>($"/api/device/{id}/credentials");
        return new DeviceApiDevice(id, tenant, credentials!["credentialsId"]!.GetValue<string>());
    }

    public async Task SaveSharedAsync(Guid deviceId, string json)
    {
        var saved = await Http.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", new StringContent(json, Encoding.UTF8, "application/json"));
        saved.EnsureSuccessStatusCode();
    }

    /// <summary>The latest value of <paramref name="key"/> as the REST API renders it (a string), or null.</summary>
    public async Task<string?> LatestAsync(Guid deviceId, string key)
    {
        var latest = await Http.GetFromJsonAsync<JsonObject>($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys={key}");
        return latest?[key] is JsonArray { Count: > 0 } values ? values[0]!["value"]!.ToString() : null;
    }

    public void Dispose() => Http.Dispose();
}

internal static class DeviceApiWait
{
    public static async Task UntilAsync(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.ElapsedMilliseconds < timeoutMs, "timed out waiting for " + what);
            await Task.Delay(20);
        }
    }
}
