using System.Net;
using Perf.Api.Hosting;
using Perf.Core;

namespace Perf.EndToEnd;

/// <summary>
/// Starts the real host in-process on loopback with every door on a free port and a fresh data directory.
/// </summary>
public sealed class HostFixture : IAsyncLifetime
{
    private readonly bool _ownsDataDir;
    private PerfHost? _host;

    public HostFixture()
        : this(Path.Combine(Path.GetTempPath(), "perf-e2e-" + Guid.NewGuid().ToString("N")), ownsDataDir: true)
    {
    }

    /// <summary>A host on a given data directory, kept at disposal when not owned (restart tests start a second host on it).</summary>
    internal HostFixture(string dataDir, bool ownsDataDir)
    {
        DataDir = dataDir;
        _ownsDataDir = ownsDataDir;
    }

    public string DataDir { get; }

    public PerfHost Host => _host ?? throw new InvalidOperationException("host not started");

    public BoundEndpoints Endpoints => Host.Endpoints;

    public Uri HttpBase => new($"http://127.0.0.1:{Endpoints.Http!.Port}");

    public static Dictionary<string, string?> FreePortSettings(string dataDir) => new()
    {
        ["BIND_ADDRESS"] = "127.0.0.1",
        ["HTTP_BIND_PORT"] = "0",
        ["MQTT_BIND_PORT"] = "0",
        ["COAP_BIND_PORT"] = "0",
        ["TCP_INTEGRATION_PORT"] = "0",
        ["EDGES_RPC_PORT"] = "0",
        ["DATA_DIR"] = dataDir,
    };

    public Task InitializeAsync() => StartWithAsync(FreePortSettings(DataDir));

    /// <summary>Starts the host with <paramref name="settings"/> (for tests that need settings the shared host must not have).</summary>
    public async Task StartWithAsync(Dictionary<string, string?> settings, Action<CoreOptions>? configureCore = null)
    {
        _host = await PerfHost.CreateAsync([], settings, configureCore);
        await _host.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (_host is not null)
        {
            await _host.DisposeAsync();
        }

        if (_ownsDataDir)
        {
            TestDirectories.Delete(DataDir);
        }
    }

    public HttpClient CreateHttpClient() => new() { BaseAddress = HttpBase, Timeout = TimeSpan.FromSeconds(30) };

    public static IPEndPoint Loopback(IPEndPoint endPoint) => new(IPAddress.Loopback, endPoint.Port);
}

[CollectionDefinition(Name)]
public sealed class HostCollection : ICollectionFixture<HostFixture>
{
    public const string Name = "host";
}
