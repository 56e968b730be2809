using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Perf.Load;

/// <summary>
/// Device access tokens for a run: <c>--tokens a,b,c</c> (cycled over connections), or
/// <c>--token-prefix P</c> (token of connection i is P + i), optionally created on the server first with
/// <c>--provision N --api URL --user U --password P</c>. Without either, tokens are <c>load-token-i</c>
/// (any MQTT broker without auth accepts them).
/// </summary>
public sealed class Tokens
{
    private readonly string[]? _list;
    private readonly string _prefix;

    private Tokens(string[]? list, string prefix, string[]? deviceIds = null)
    {
        _list = list;
        _prefix = prefix;
        DeviceIds = deviceIds;
    }

    /// <summary>With <c>--provision</c>: the device id of token i (same order), for REST calls about the device.</summary>
    public string[]? DeviceIds { get; }

    /// <summary>A fixed list (token of connection i is list[i % length]).</summary>
    public static Tokens FromList(string[] tokens) => new(tokens, "");

    public string For(int connection) => _list is { Length: > 0 } list ? list[connection % list.Length] : _prefix + connection;

    public string Describe() => _list is not null ? $"{_list.Length} given" : $"{_prefix}<i>";

    public static async Task<Tokens> FromOptionsAsync(Options options, CancellationToken cancellation)
    {
        var list = options.StringOrNull("tokens");
        var prefix = options.StringOrNull("token-prefix");
        var provision = options.Int("provision", 0, 0, 1_000_000);
        var api = options.String("api", "http://127.0.0.1:8080");
        var user = options.String("user", "tenant@example.com");
        var password = options.String("password", "tenant");
        if (list is not null && (prefix is not null || provision > 0))
        {
            throw new OptionsException("--tokens cannot be combined with --token-prefix or --provision.");
        }

        if (list is not null)
        {
            var tokens = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return tokens.Length > 0 ? new Tokens(tokens, "") : throw new OptionsException("--tokens is empty.");
        }

        prefix ??= "load-token-";
        if (provision == 0)
        {
            return new Tokens(null, prefix);
        }

        if (!Uri.TryCreate(api, UriKind.Absolute, out var apiUri))
        {
            throw new OptionsException($"--api: '{api}' is not an absolute URL.");
        }

        var provisioned = await ProvisionAsync(apiUri, user, password, prefix, provision, cancellation);
        return new Tokens(provisioned.Select(d => d.Token).ToArray(), prefix, provisioned.Select(d => d.Id).ToArray());
    }

    /// <summary>
    /// Logs in, then creates devices load-0..load-(n-1) with access token prefix+i; a device whose name
    /// exists (400/409) is reused and its actual token read from its credentials.
    /// </summary>
    public static async Task<(string Token, string Id)[]> ProvisionAsync(Uri api, string user, string password, string prefix, int count, CancellationToken cancellation)
    {
        using var http = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        var jwt = await LoginAsync(http, user, password, cancellation);
        http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + jwt);
        var tokens = new (string Token, string Id)[count];
        var created = 0;
        var reused = 0;
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = cancellation }, async (i, ct) =>
        {
            var name = $"load-{i}";
            var token = prefix + i;
            using var body = Json(w =>
            {
                w.WriteString("name", name);
                w.WriteString("type", "load");
            });
            using var response = await http.PostAsync($"api/device?accessToken={Uri.EscapeDataString(token)}", body, ct);
            if (response.IsSuccessStatusCode)
            {
                using var device = JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
                tokens[i] = (token, device.RootElement.GetProperty("id").GetProperty("id").GetString() ?? throw new HttpRequestException($"Device {name} has no id."));
                Interlocked.Increment(ref created);
            }
            else if (response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.Conflict)
            {
                tokens[i] = await ExistingTokenAsync(http, name, ct);
                Interlocked.Increment(ref reused);
            }
            else
            {
                throw new HttpRequestException($"Creating device {name}: HTTP {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
            }
        });
        Console.Error.WriteLine($"provisioned {count} devices: {created} created, {reused} reused");
        return tokens;
    }

    public static async Task<string> LoginAsync(HttpClient http, string user, string password, CancellationToken cancellation)
    {
        using var body = Json(w =>
        {
            w.WriteString("username", user);
            w.WriteString("password", password);
        });
        using var response = await http.PostAsync("api/auth/login", body, cancellation);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"Login as {user}: HTTP {(int)response.StatusCode}");
        }

        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancellation));
        return document.RootElement.GetProperty("token").GetString() ?? throw new HttpRequestException("Login response has no token.");
    }

    private static async Task<(string Token, string Id)> ExistingTokenAsync(HttpClient http, string name, CancellationToken cancellation)
    {
        using var device = JsonDocument.Parse(await http.GetStringAsync($"api/tenant/devices?deviceName={Uri.EscapeDataString(name)}", cancellation));
        var id = device.RootElement.GetProperty("id").GetProperty("id").GetString() ?? throw new HttpRequestException($"Device {name} has no id.");
        using var credentials = JsonDocument.Parse(await http.GetStringAsync($"api/device/{id}/credentials", cancellation));
        return (credentials.RootElement.GetProperty("credentialsId").GetString() ?? throw new HttpRequestException($"Device {name} has no credentialsId."), id);
    }

    public static ByteArrayContent Json(Action<Utf8JsonWriter> write)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            write(writer);
            writer.WriteEndObject();
        }

        var content = new ByteArrayContent(buffer.ToArray());
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = Encoding.UTF8.WebName };
        return content;
    }
}
