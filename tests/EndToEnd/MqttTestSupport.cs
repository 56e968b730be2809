using System.Buffers;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using MQTTnet;
using MQTTnet.Protocol;

namespace Perf.EndToEnd;

/// <summary>REST calls the MQTT end-to-end tests need, logged in as the default tenant administrator.</summary>
internal sealed class TenantRest : IDisposable
{
    private TenantRest(HttpClient http) => Http = http;

    public HttpClient Http { get; }

    public static Task<TenantRest> LoginAsync(HostFixture fixture) => LoginAsync(fixture.HttpBase);

    public static Task<TenantRest> LoginAsync(Uri baseAddress) =>
        LoginAsync(new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) });

    /// <summary>Logs in through <paramref name="http"/> (e.g. an HTTPS client trusting a test CA), which the result owns.</summary>
    public static async Task<TenantRest> LoginAsync(HttpClient http)
    {
        var login = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        login.EnsureSuccessStatusCode();
        var token = (await login.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return new TenantRest(http);
    }

    /// <summary>Creates a device with a unique name and returns its id and access token.</summary>
    public async Task<(Guid Id, string Token, string Name)> CreateDeviceAsync(string prefix, bool gateway = false)
    {
        var name = prefix + "-" + Guid.NewGuid().ToString("N")[..8];
        object body = gateway ? new { name, type = "default", additionalInfo = new { gateway = true } } : new { name, type = "default" };
        var created = await Http.PostAsJsonAsync("/api/device", body);
        Assert.Equal(System.Net.HttpStatusCode.OK, created.StatusCode);
        var id = Guid.Parse((await created.Content.ReadFromJsonAsync<JsonObject>())!["id"]!["id"]!.GetValue<string>());
        var credentials = await Http.GetFromJsonAsync<JsonObject>($"/api/device/{id}/credentials");
        return (id, credentials!["credentialsId"]!.GetValue<string>(), name);
    }

    public async Task<Guid> DeviceIdByNameAsync(string name)
    {
        var device = await Http.GetFromJsonAsync<JsonObject>($"/api/tenant/devices?deviceName={Uri.EscapeDataString(name)}");
        return Guid.Parse(device!["id"]!["id"]!.GetValue<string>());
    }

    /// <summary>Latest time series: key -> (ts, value as the reference's string), for the keys that have one.</summary>
    public async Task<Dictionary<string, (long Ts, string Value)>> LatestTimeseriesAsync(Guid deviceId, string keys)
    {
        var json = await Http.GetFromJsonAsync<JsonObject>($"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys={keys}");
        var result = new Dictionary<string, (long, string)>();
        foreach (var (key, points) in json!)
        {
            // A key with no latest value comes back with a null value (the reference's wrapNullTsKvEntry): left out here.
            if (points is JsonArray { Count: > 0 } a && a[0]!["value"] is not null)
            {
                result[key] = (a[0]!["ts"]!.GetValue<long>(), a[0]!["value"] is JsonValue v && v.TryGetValue<string>(out var s) ? s : a[0]!["value"]!.ToJsonString());
            }
        }

        return result;
    }

    /// <summary>Attributes of a scope (CLIENT_SCOPE, SHARED_SCOPE, SERVER_SCOPE): key -> JSON of the value.</summary>
    public async Task<Dictionary<string, string>> AttributesAsync(Guid deviceId, string scope)
    {
        var json = await Http.GetFromJsonAsync<JsonArray>($"/api/plugins/telemetry/DEVICE/{deviceId}/values/attributes/{scope}");
        return json!.ToDictionary(e => e!["key"]!.GetValue<string>(), e => e!["value"]!.ToJsonString());
    }

    public async Task SaveSharedAsync(Guid deviceId, string json)
    {
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        var response = await Http.PostAsync($"/api/plugins/telemetry/DEVICE/{deviceId}/SHARED_SCOPE", content);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
    }

    public void Dispose() => Http.Dispose();
}

/// <summary>An MQTTnet client that collects every received message.</summary>
internal sealed class MqttDevice : IAsyncDisposable
{
    private readonly Channel<(string Topic, byte[] Payload)> _received = Channel.CreateUnbounded<(string, byte[])>();

    private MqttDevice(IMqttClient client)
    {
        Client = client;
        client.ApplicationMessageReceivedAsync += e =>
        {
            QoSByTopic[e.ApplicationMessage.Topic] = e.ApplicationMessage.QualityOfServiceLevel;
            _received.Writer.TryWrite((e.ApplicationMessage.Topic, e.ApplicationMessage.Payload.ToArray()));
            return Task.CompletedTask;
        };
    }

    public IMqttClient Client { get; }

    /// <summary>The QoS of the last message received on each topic.</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, MqttQualityOfServiceLevel> QoSByTopic { get; } = new();

    public static MqttClientOptions Options(HostFixture fixture, string? token) => Options(fixture.Endpoints.Mqtt!.Port, token);

    public static MqttClientOptions Options(int port, string? token) =>
        new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", port)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V311)
            .WithCredentials(token, (string?)null)
            .WithClientId("e2e-" + Guid.NewGuid().ToString("N")[..8])
            .WithTimeout(TimeSpan.FromSeconds(10))
            .Build();

    public static Task<MqttDevice> ConnectAsync(HostFixture fixture, string token, params string[] subscriptions) =>
        ConnectAsync(fixture.Endpoints.Mqtt!.Port, token, subscriptions);

    public static async Task<MqttDevice> ConnectAsync(int port, string token, params string[] subscriptions)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var device = new MqttDevice(client);
        var result = await client.ConnectAsync(Options(port, token));
        Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
        foreach (var filter in subscriptions)
        {
            await device.SubscribeAsync(filter);
        }

        return device;
    }

    public async Task SubscribeAsync(string filter)
    {
        var sub = await Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter(filter, MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, sub.Items.Single().ResultCode);
    }

    public Task PublishAsync(string topic, string payload, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce) =>
        PublishAsync(topic, Encoding.UTF8.GetBytes(payload), qos);

    public async Task PublishAsync(string topic, byte[] payload, MqttQualityOfServiceLevel qos = MqttQualityOfServiceLevel.AtLeastOnce)
    {
        var result = await Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(qos).Build());
        Assert.True(result.IsSuccess, $"PUBLISH to {topic} failed: {result.ReasonCode}");
    }

    /// <summary>The next message whose topic satisfies <paramref name="match"/>; others are skipped.</summary>
    public async Task<(string Topic, byte[] Payload)> ReceiveAsync(Func<string, bool> match, int timeoutMs = 10_000)
    {
        using var cts = new CancellationTokenSource(timeoutMs);
        while (true)
        {
            var message = await _received.Reader.ReadAsync(cts.Token);
            if (match(message.Topic))
            {
                return message;
            }
        }
    }

    public async Task<JsonNode> ReceiveJsonAsync(string topic, int timeoutMs = 10_000) =>
        JsonNode.Parse((await ReceiveAsync(t => t == topic, timeoutMs)).Payload)!;

    public async ValueTask DisposeAsync()
    {
        if (Client.IsConnected)
        {
            await Client.DisconnectAsync();
        }

        Client.Dispose();
    }
}

/// <summary>
/// Runs the seed's mosquitto_pub / mosquitto_sub command lines unchanged: the broker port (and, for
/// mosquitto_sub, the message count) come from the clients' own options files under XDG_CONFIG_HOME.
/// </summary>
internal sealed class MosquittoShell : IDisposable
{
    public MosquittoShell(HostFixture fixture, string token, string? subOptions = null)
    {
        WorkDir = Path.Combine(Path.GetTempPath(), "perf-mosq-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(WorkDir);
        var config = Path.Combine(WorkDir, "xdg");
        Directory.CreateDirectory(config);
        int port = fixture.Endpoints.Mqtt!.Port;
        File.WriteAllText(Path.Combine(config, "mosquitto_pub"), $"-p {port}\n");
        File.WriteAllText(Path.Combine(config, "mosquitto_sub"), $"-p {port}\n{subOptions}\n");
        Token = token;
        foreach (var (name, text) in SeedFiles.All)
        {
            File.WriteAllText(Path.Combine(WorkDir, name), text);
        }
    }

    public string WorkDir { get; }

    public string Token { get; }

    public static bool Available => File.Exists("/usr/bin/mosquitto_pub") && File.Exists("/usr/bin/mosquitto_sub");

    public Process Start(string commandLine)
    {
        var psi = new ProcessStartInfo("/bin/bash", ["-c", commandLine])
        {
            WorkingDirectory = WorkDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["ACCESS_TOKEN"] = Token;
        psi.Environment["XDG_CONFIG_HOME"] = Path.Combine(WorkDir, "xdg");
        return Process.Start(psi)!;
    }

    public async Task<(int ExitCode, string StdOut, string StdErr)> RunAsync(string commandLine, int timeoutMs = 15_000)
    {
        using var process = Start(commandLine);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeoutMs);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{commandLine}' did not finish: {await stdout} {await stderr}");
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    public void Dispose() => TestDirectories.Delete(WorkDir);
}

/// <summary>The seed's JSON files, byte for byte as the article shows them.</summary>
internal static class SeedFiles
{
    public const string TelemetryAsObject = """
        {
           "stringKey": "value1",
           "booleanKey": true,
           "doubleKey": 42.0,
           "longKey": 73,
           "jsonKey": {
              "someNumber": 42,
              "someArray": [1,2,3],
              "someNestedObject": {"key": "value"}
           }
        }
        """;

    public const string TelemetryAsArray = """[{"key1":"value1"}, {"key2":true}]""";

    public const string TelemetryWithTs = """
        {
           "ts": 1451649600512,
           "values": {
              "stringKey": "value1",
              "booleanKey": true,
              "doubleKey": 42.0,
              "longKey": 73,
              "jsonKey": {
                 "someNumber": 42,
                 "someArray": [1, 2, 3],
                 "someNestedObject": {
                 "key": "value"
                 }
              }
           }
        }
        """;

    public const string NewAttributesValues = TelemetryAsObject;

    public static IEnumerable<(string Name, string Text)> All =>
    [
        ("telemetry-data-as-object.json", TelemetryAsObject + "\n"),
        ("telemetry-data-as-array.json", TelemetryAsArray + "\n"),
        ("telemetry-data-with-ts.json", TelemetryWithTs + "\n"),
        ("new-attributes-values.json", NewAttributesValues + "\n"),
    ];
}

internal static class Eventually
{
    /// <summary>Polls until <paramref name="condition"/> holds; fails after <paramref name="timeoutMs"/>.</summary>
    public static async Task TrueAsync(Func<Task<bool>> condition, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!await condition())
        {
            Assert.True(Environment.TickCount64 < deadline, "condition not met in time");
            await Task.Delay(20);
        }
    }

    public static Task TrueAsync(Func<bool> condition, int timeoutMs = 10_000) => TrueAsync(() => Task.FromResult(condition()), timeoutMs);
}
