using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Perf.EndToEnd;

/// <summary>A REST caller: logs in and sends the reference's X-Authorization header.</summary>
public sealed class Rest : IDisposable
{
    private Rest(HttpClient http, string token, string refreshToken)
    {
        Http = http;
        Token = token;
        RefreshToken = refreshToken;
        http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + token);
    }

    public HttpClient Http { get; }
    public string Token { get; }
    public string RefreshToken { get; }

    public static async Task<Rest> LoginAsync(HostFixture fixture, string username = "tenant@example.com", string password = "tenant")
    {
        var http = fixture.CreateHttpClient();
        var response = await http.PostAsJsonAsync("/api/auth/login", new { username, password });
        response.EnsureSuccessStatusCode();
        var body = await response.Content.ReadFromJsonAsync<JsonObject>();
        return new Rest(http, body!["token"]!.GetValue<string>(), body["refreshToken"]!.GetValue<string>());
    }

    public async Task<JsonObject> PostAsync(string path, object body)
    {
        var response = await Http.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"POST {path} answered {(int)response.StatusCode}: {text}");
        return text.Length == 0 ? [] : (JsonNode.Parse(text) as JsonObject ?? []);
    }

    public async Task<JsonNode> GetAsync(string path)
    {
        var response = await Http.GetAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {path} answered {(int)response.StatusCode}: {text}");
        return JsonNode.Parse(text)!;
    }

    /// <summary>Creates a device and returns its id and access token.</summary>
    public async Task<(string Id, string Token)> CreateDeviceAsync(string name, string? accessToken = null, object? additionalInfo = null)
    {
        var path = accessToken is null ? "/api/device" : $"/api/device?accessToken={accessToken}";
        var device = await PostAsync(path, new { name, type = "default", additionalInfo });
        var id = device["id"]!["id"]!.GetValue<string>();
        var credentials = await GetAsync($"/api/device/{id}/credentials");
        return (id, credentials["credentialsId"]!.GetValue<string>());
    }

    public void Dispose() => Http.Dispose();
}
