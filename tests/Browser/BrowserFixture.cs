using Microsoft.Playwright;
using Perf.Api.Hosting;

namespace Perf.Browser;

/// <summary>
/// The real host in-process (free ports, fresh data directory) and Debian's chromium driven by Playwright.
/// Browsers come from the OS (<c>apt-get install chromium</c>), never from <c>playwright install</c>.
/// </summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private readonly string _dataDir = Path.Combine(Path.GetTempPath(), "perf-browser-" + Guid.NewGuid().ToString("N"));
    private PerfHost? _host;
    private IPlaywright? _playwright;

    public PerfHost Host => _host ?? throw new InvalidOperationException("host not started");

    public IBrowser Browser { get; private set; } = null!;

    public Uri HttpBase => new($"http://127.0.0.1:{Host.Endpoints.Http!.Port}");

    public int MqttPort => Host.Endpoints.Mqtt!.Port;

    /// <summary>Where screenshots are kept as test artifacts (TestResults/screenshots under the test output).</summary>
    public static string ScreenshotDir { get; } = Path.Combine(AppContext.BaseDirectory, "TestResults", "screenshots");

    public async Task InitializeAsync()
    {
        _host = await PerfHost.CreateAsync([], new Dictionary<string, string?>
        {
            ["BIND_ADDRESS"] = "127.0.0.1",
            ["HTTP_BIND_PORT"] = "0",
            ["MQTT_BIND_PORT"] = "0",
            ["COAP_BIND_PORT"] = "0",
            ["TCP_INTEGRATION_PORT"] = "0",
            ["EDGES_RPC_PORT"] = "0",
            ["DATA_DIR"] = _dataDir,
        });
        await _host.StartAsync();

        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
        Directory.CreateDirectory(ScreenshotDir);
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.CloseAsync();
        }

        _playwright?.Dispose();
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }

        try
        {
            Directory.Delete(_dataDir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

[CollectionDefinition(Name)]
public sealed class BrowserCollection : ICollectionFixture<BrowserFixture>
{
    public const string Name = "browser";
}
