using System.Net;

namespace Perf.Api.Hosting;

/// <summary>
/// The host's settings, read from configuration (appsettings.json, then environment variables with
/// the names below, then command-line arguments). Port 0 binds a free port.
/// </summary>
public sealed class HostSettings
{
    public IPAddress BindAddress { get; init; } = IPAddress.Any;
    public int HttpPort { get; init; } = 8080;
    public int MqttPort { get; init; } = 1883;
    public int CoapPort { get; init; } = 5683;
    public int TcpIntegrationPort { get; init; } = 10560;
    public int EdgesRpcPort { get; init; } = 7070;
    public bool MqttEnabled { get; init; } = true;

    /// <summary>MQTT_TRANSPORT: <c>lean</c> (the door's own socket transport, no pipes per connection) or <c>kestrel</c> (Kestrel's socket transport).</summary>
    public bool MqttLeanTransport { get; init; } = true;
    public bool CoapEnabled { get; init; } = true;
    public bool TcpIntegrationEnabled { get; init; } = true;
    public bool EdgesEnabled { get; init; } = true;
    public string DataDir { get; init; } = "./data";

    /// <summary>DATA_DIR_LOW_SPACE_MB (1024): below this many free megabytes on DATA_DIR's file system the host logs a warning (0 turns it off).</summary>
    public long DataDirLowSpaceBytes { get; init; } = 1024L * 1024 * 1024;

    /// <summary>DATA_DIR_CHECK_SECONDS (30, at least 1): how often the free space of DATA_DIR's file system is checked.</summary>
    public TimeSpan DataDirCheckInterval { get; init; } = TimeSpan.FromSeconds(30);

    public TimeSpan ShutdownGrace { get; init; } = TimeSpan.FromSeconds(4);

    /// <summary>Issue 12 profiling: <c>/health/allocations</c> (allocation samples by type) and <c>/health/heap</c> (live heap after a full GC). Off by default.</summary>
    public bool Diagnostics { get; init; }

    /// <summary>MQTT over TLS, off unless <c>MQTT_SSL_ENABLED=true</c>; serves the same API as the plain MQTT port.</summary>
    public TlsSettings MqttTls { get; init; } = new() { Port = 8883 };

    /// <summary>HTTPS for the REST and HTTP device APIs, off unless <c>SSL_ENABLED=true</c>; plain HTTP stays on its port.</summary>
    public TlsSettings HttpTls { get; init; } = new() { Port = 8443 };

    public static HostSettings From(IConfiguration configuration)
    {
        var settings = Read(configuration);
        settings.CheckPortsAreDistinct();
        return settings;
    }

    /// <summary>
    /// The doors that listen on TCP, enabled ones only, with the setting that chooses each one's port: for the start-up
    /// checks and for naming the door whose bind failed.
    /// </summary>
    internal IEnumerable<(string Door, string Setting, IPAddress Address, int Port)> TcpDoors()
    {
        yield return ("http", "HTTP_BIND_PORT", BindAddress, HttpPort);
        if (MqttEnabled)
        {
            yield return ("mqtt", "MQTT_BIND_PORT", BindAddress, MqttPort);
        }

        if (TcpIntegrationEnabled)
        {
            yield return ("tcp-integration", "TCP_INTEGRATION_PORT", BindAddress, TcpIntegrationPort);
        }

        if (EdgesEnabled)
        {
            yield return ("edges", "EDGES_RPC_PORT", BindAddress, EdgesRpcPort);
        }

        if (MqttTls.Enabled)
        {
            yield return ("mqtt-tls", "MQTT_SSL_BIND_PORT", MqttTls.BindAddress, MqttTls.Port);
        }

        if (HttpTls.Enabled)
        {
            yield return ("https", "HTTPS_BIND_PORT", HttpTls.BindAddress, HttpTls.Port);
        }
    }

    /// <summary>
    /// <paramref name="bindFailure"/> (Kestrel's "Failed to bind to address http://127.0.0.1:1883: address already in
    /// use.", or the CoAP door's "udp://...") with the door and its setting in front: Kestrel calls every address
    /// http://, the MQTT one too. Unchanged when no enabled door has the port it names.
    /// </summary>
    internal string NameTheDoor(string bindFailure)
    {
        var doors = bindFailure.Contains("udp://", StringComparison.Ordinal)
            ? CoapEnabled ? [("coap", "COAP_BIND_PORT", BindAddress, CoapPort)] : []
            : TcpDoors();
        foreach (var (door, setting, _, port) in doors)
        {
            if (port != 0 && bindFailure.Contains(FormattableString.Invariant($":{port}:"), StringComparison.Ordinal))
            {
                return FormattableString.Invariant($"Door {door} ({setting}={port}) could not listen: {bindFailure}");
            }
        }

        return bindFailure;
    }

    /// <summary>Two doors on one TCP port would fail at bind with an address-in-use error that names neither setting.</summary>
    private void CheckPortsAreDistinct()
    {
        var doors = TcpDoors().Where(d => d.Port != 0).ToList();
        for (int i = 0; i < doors.Count; i++)
        {
            for (int j = i + 1; j < doors.Count; j++)
            {
                if (doors[i].Port == doors[j].Port && Overlap(doors[i].Address, doors[j].Address))
                {
                    throw new InvalidOperationException(FormattableString.Invariant(
                        $"{doors[i].Setting} and {doors[j].Setting} are both {doors[i].Port}: the {doors[i].Door} and {doors[j].Door} doors need a port each"));
                }
            }
        }

        static bool Overlap(IPAddress a, IPAddress b) =>
            a.Equals(b) || a.Equals(IPAddress.Any) || b.Equals(IPAddress.Any) || a.Equals(IPAddress.IPv6Any) || b.Equals(IPAddress.IPv6Any);
    }

    private static HostSettings Read(IConfiguration configuration) => new()
    {
        BindAddress = ParseAddress(configuration["BIND_ADDRESS"]),
        HttpPort = ConfigValues.Port(configuration, "HTTP_BIND_PORT", 8080),
        MqttPort = ConfigValues.Port(configuration, "MQTT_BIND_PORT", 1883),
        CoapPort = ConfigValues.Port(configuration, "COAP_BIND_PORT", 5683),
        TcpIntegrationPort = ConfigValues.Port(configuration, "TCP_INTEGRATION_PORT", 10560),
        EdgesRpcPort = ConfigValues.Port(configuration, "EDGES_RPC_PORT", 7070),
        MqttEnabled = ConfigValues.Bool(configuration, "MQTT_ENABLED", true),
        MqttLeanTransport = ParseTransport(configuration["MQTT_TRANSPORT"]),
        CoapEnabled = ConfigValues.Bool(configuration, "COAP_ENABLED", true),
        TcpIntegrationEnabled = ConfigValues.Bool(configuration, "TCP_INTEGRATION_ENABLED", true),
        EdgesEnabled = ConfigValues.Bool(configuration, "EDGES_ENABLED", true),
        DataDir = string.IsNullOrWhiteSpace(configuration["DATA_DIR"]) ? "./data" : configuration["DATA_DIR"]!,
        DataDirLowSpaceBytes = ConfigValues.NonNegative(configuration, "DATA_DIR_LOW_SPACE_MB", 1024) * 1024 * 1024,
        DataDirCheckInterval = TimeSpan.FromSeconds(Math.Max(1, ConfigValues.NonNegative(configuration, "DATA_DIR_CHECK_SECONDS", 30))),
        Diagnostics = ConfigValues.Bool(configuration, "PERF_DIAGNOSTICS", false),
        ShutdownGrace = TimeSpan.FromSeconds(ConfigValues.NonNegativeDouble(configuration, "SHUTDOWN_GRACE_SECONDS", 4)),
        MqttTls = TlsSettings.ForMqtt(configuration, ParseAddress(configuration["BIND_ADDRESS"])),
        HttpTls = TlsSettings.ForHttp(configuration, ParseAddress(configuration["BIND_ADDRESS"])),
    };

    internal static IPAddress ParseAddress(string? value, string name = "BIND_ADDRESS") =>
        string.IsNullOrWhiteSpace(value) ? IPAddress.Any
        : value == "localhost" ? IPAddress.Loopback
        : IPAddress.TryParse(value, out var address) ? address
        : throw new InvalidOperationException($"{name} '{value}' is not an IP address");

    private static bool ParseTransport(string? value) =>
        string.IsNullOrWhiteSpace(value) || value.Equals("lean", StringComparison.OrdinalIgnoreCase) ? true
        : value.Equals("kestrel", StringComparison.OrdinalIgnoreCase) ? false
        : throw new InvalidOperationException($"MQTT_TRANSPORT '{value}' is not 'lean' or 'kestrel'");
}
