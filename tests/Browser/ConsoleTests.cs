using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.Playwright;
using MQTTnet;
using MQTTnet.Protocol;

namespace Perf.Browser;

/// <summary>The web console in headless chromium against the real host, with MQTTnet playing the device.</summary>
[Collection(BrowserCollection.Name)]
public sealed class ConsoleTests(BrowserFixture fixture) : IAsyncLifetime
{
    private static readonly string RepoDocs = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../../docs"));
    private IBrowserContext _context = null!;
    private IPage _page = null!;

    public async Task InitializeAsync()
    {
        _context = await fixture.Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = fixture.HttpBase.ToString(),
            ViewportSize = new ViewportSize { Width = 1280, Height = 900 },
        });
        _context.SetDefaultTimeout(15_000);
        _page = await _context.NewPageAsync();
    }

    public async Task DisposeAsync() => await _context.CloseAsync();

    [Fact]
    public async Task LogIn_ShowsTheDeviceList_AndSearchFindsADevice()
    {
        var (_, _, name) = await CreateDeviceAsync("search");
        await LogInAsync();
        await Assertions.Expect(_page.Locator("[data-testid=device-row]").First).ToBeVisibleAsync();
        await _page.FillAsync("#device-search", name);
        await Assertions.Expect(_page.Locator("[data-testid=device-row]")).ToHaveCountAsync(1);
        await Assertions.Expect(_page.GetByTestId($"device-link-{name}")).ToBeVisibleAsync();
        await ScreenshotAsync("device-list");
    }

    [Fact]
    public async Task DevicePage_ShowsTelemetryPublishedOverMqtt_Live()
    {
        var (id, token, name) = await CreateDeviceAsync("live");
        await LogInAsync();
        await OpenDeviceAsync(id, name);
        await Assertions.Expect(_page.Locator("#ws-status")).ToHaveTextAsync("open");

        using var device = await ConnectDeviceAsync(token);
        foreach (var value in new[] { 20.5, 21.0, 22.25, 21.75, 23.5 })
        {
            await device.Client.PublishStringAsync("v1/devices/me/telemetry", $"{{\"temperature\":{value.ToString(System.Globalization.CultureInfo.InvariantCulture)}}}", MqttQualityOfServiceLevel.AtLeastOnce);
            await Assertions.Expect(_page.GetByTestId("latest-temperature")).ToHaveTextAsync(value.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        await Assertions.Expect(_page.Locator("#chart")).ToHaveAttributeAsync("data-points", "5");
        await Assertions.Expect(_page.Locator("#chart")).ToHaveAttributeAsync("data-last", "23.5");
        var shot = await ScreenshotAsync("device-live-telemetry");

        // The README's screenshot of the device page is refreshed by this test when run from the repository.
        if (Directory.Exists(RepoDocs))
        {
            File.Copy(shot, Path.Combine(RepoDocs, "console-device.png"), overwrite: true);
        }
    }

    [Fact]
    public async Task RpcPanel_SendsTwoWayRpc_AndShowsTheDeviceReply()
    {
        var (id, token, name) = await CreateDeviceAsync("rpc");
        using var device = await ConnectDeviceAsync(token, "v1/devices/me/rpc/request/+");
        device.Client.ApplicationMessageReceivedAsync += async e =>
        {
            const string Prefix = "v1/devices/me/rpc/request/";
            if (e.ApplicationMessage.Topic.StartsWith(Prefix, StringComparison.Ordinal))
            {
                var request = JsonNode.Parse(e.ApplicationMessage.ConvertPayloadToString())!;
                var reply = new JsonObject { ["echo"] = request["method"]!.GetValue<string>(), ["state"] = "heating" };
                await device.Client.PublishStringAsync("v1/devices/me/rpc/response/" + e.ApplicationMessage.Topic[Prefix.Length..],
                    reply.ToJsonString(), MqttQualityOfServiceLevel.AtLeastOnce);
            }
        };

        await LogInAsync();
        await OpenDeviceAsync(id, name);
        await _page.FillAsync("#rpc-method", "getState");
        await _page.FillAsync("#rpc-params", "{\"zone\":1}");
        await _page.SelectOptionAsync("#rpc-mode", "twoway");
        await _page.ClickAsync("#rpc-send");
        await Assertions.Expect(_page.Locator("#rpc-result")).ToContainTextAsync("\"state\": \"heating\"");
        await Assertions.Expect(_page.Locator("#rpc-result")).ToContainTextAsync("\"echo\": \"getState\"");
        await ScreenshotAsync("device-rpc-reply");
    }

    [Fact]
    public async Task SharedAttributeEditedInThePage_ReachesTheMqttSubscriber()
    {
        var (id, token, name) = await CreateDeviceAsync("attr");
        using var device = await ConnectDeviceAsync(token, "v1/devices/me/attributes");
        await LogInAsync();
        await OpenDeviceAsync(id, name);
        await _page.FillAsync("#shared-key", "targetTemperature");
        await _page.FillAsync("#shared-value", "22.5");
        await _page.ClickAsync("#shared-save");
        await Assertions.Expect(_page.Locator("#shared-status")).ToHaveTextAsync("saved targetTemperature");
        await Assertions.Expect(_page.GetByTestId("attr-SHARED_SCOPE-targetTemperature")).ToHaveTextAsync("22.5");

        var (topic, payload) = await device.ReceiveAsync(TimeSpan.FromSeconds(10));
        Assert.Equal("v1/devices/me/attributes", topic);
        Assert.Equal(22.5, JsonNode.Parse(payload)!["targetTemperature"]!.GetValue<double>());
        await ScreenshotAsync("device-shared-attribute");
    }

    [Fact]
    public async Task ServerPage_ShowsLiveMqttConnections()
    {
        var (_, token, _) = await CreateDeviceAsync("server");
        using var device = await ConnectDeviceAsync(token);
        await LogInAsync();
        await _page.ClickAsync("[data-testid=nav-server]");
        await Assertions.Expect(_page.GetByTestId("door-mqtt-connections")).Not.ToHaveTextAsync("0");
        await Assertions.Expect(_page.GetByTestId("door-mqtt-sessions")).Not.ToHaveTextAsync("0");
        await ScreenshotAsync("server");
    }

    [Fact]
    public async Task IntegrationsAndEdgesPages_Render_AndTheTestDecoderRuns()
    {
        await LogInAsync();
        await _page.ClickAsync("[data-testid=nav-integrations]");
        await _page.ClickAsync("#decoder-run");
        await Assertions.Expect(_page.Locator("#decoder-output")).ToContainTextAsync("sensor-1");
        await Assertions.Expect(_page.Locator("[role=alert]")).ToHaveCountAsync(0);
        await ScreenshotAsync("integrations");
        await _page.ClickAsync("[data-testid=nav-edges]");
        await Assertions.Expect(_page.Locator("h1")).ToHaveTextAsync("Edges");
        await Assertions.Expect(_page.Locator("[role=alert]")).ToHaveCountAsync(0);
        await ScreenshotAsync("edges");
    }

    private async Task LogInAsync()
    {
        await _page.GotoAsync("/");
        await _page.FillAsync("#login-username", "tenant@example.com");
        await _page.FillAsync("#login-password", "tenant");
        await _page.ClickAsync("#login-submit");
        await Assertions.Expect(_page.Locator("#device-search")).ToBeVisibleAsync();
    }

    private async Task OpenDeviceAsync(string id, string name)
    {
        await _page.FillAsync("#device-search", name);
        await Assertions.Expect(_page.Locator("[data-testid=device-row]")).ToHaveCountAsync(1);
        await _page.GetByTestId($"device-link-{name}").ClickAsync();
        await Assertions.Expect(_page.Locator("#device-title")).ToContainTextAsync(name);
        Assert.EndsWith($"#/device/{id}", _page.Url, StringComparison.Ordinal);
    }

    private async Task<string> ScreenshotAsync(string name)
    {
        var path = Path.Combine(BrowserFixture.ScreenshotDir, $"{name}.png");
        await _page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
        return path;
    }

    private async Task<(string Id, string Token, string Name)> CreateDeviceAsync(string prefix)
    {
        using var http = new HttpClient { BaseAddress = fixture.HttpBase };
        using var login = await http.PostAsJsonAsync("/api/auth/login", new { username = "tenant@example.com", password = "tenant" });
        var jwt = (await login.Content.ReadFromJsonAsync<JsonObject>())!["token"]!.GetValue<string>();
        http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + jwt);
        var name = $"{prefix}-{Guid.NewGuid():N}"[..20];
        using var created = await http.PostAsJsonAsync("/api/device", new { name, type = "thermostat" });
        created.EnsureSuccessStatusCode();
        var id = (await created.Content.ReadFromJsonAsync<JsonObject>())!["id"]!["id"]!.GetValue<string>();
        var credentials = await http.GetFromJsonAsync<JsonObject>($"/api/device/{id}/credentials");
        return (id, credentials!["credentialsId"]!.GetValue<string>(), name);
    }

    private async Task<MqttTestDevice> ConnectDeviceAsync(string token, params string[] subscriptions)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var device = new MqttTestDevice(client);
        await client.ConnectAsync(new MqttClientOptionsBuilder()
            .WithTcpServer("127.0.0.1", fixture.MqttPort)
            .WithProtocolVersion(MQTTnet.Formatter.MqttProtocolVersion.V311)
            .WithCredentials(token, (string?)null)
            .WithClientId("browser-test-" + Guid.NewGuid().ToString("N")[..8])
            .Build());
        foreach (var filter in subscriptions)
        {
            await client.SubscribeAsync(filter, MqttQualityOfServiceLevel.AtLeastOnce);
        }

        return device;
    }

    private sealed class MqttTestDevice : IDisposable
    {
        private readonly Channel<(string Topic, string Payload)> _received = Channel.CreateUnbounded<(string, string)>();

        public MqttTestDevice(IMqttClient client)
        {
            Client = client;
            client.ApplicationMessageReceivedAsync += e =>
            {
                _received.Writer.TryWrite((e.ApplicationMessage.Topic, Encoding.UTF8.GetString(e.ApplicationMessage.Payload)));
                return Task.CompletedTask;
            };
        }

        public IMqttClient Client { get; }

        public async Task<(string Topic, string Payload)> ReceiveAsync(TimeSpan timeout)
        {
            using var cancel = new CancellationTokenSource(timeout);
            return await _received.Reader.ReadAsync(cancel.Token);
        }

        public void Dispose() => Client.Dispose();
    }
}
