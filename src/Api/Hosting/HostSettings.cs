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

    public static HostSettings From(IConfiguration configuration) => new()
    {
        BindAddress = ParseAddress(configuration["BIND_ADDRESS"]),
        HttpPort = Port(configuration, "HTTP_BIND_PORT", 8080),
        MqttPort = Port(configuration, "MQTT_BIND_PORT", 1883),
        CoapPort = Port(configuration, "COAP_BIND_PORT", 5683),
        TcpIntegrationPort = Port(configuration, "TCP_INTEGRATION_PORT", 10560),
        EdgesRpcPort = Port(configuration, "EDGES_RPC_PORT", 7070),
        MqttEnabled = Flag(configuration, "MQTT_ENABLED"),
        MqttLeanTransport = ParseTransport(configuration["MQTT_TRANSPORT"]),
        CoapEnabled = Flag(configuration, "COAP_ENABLED"),
        TcpIntegrationEnabled = Flag(configuration, "TCP_INTEGRATION_ENABLED"),
        EdgesEnabled = Flag(configuration, "EDGES_ENABLED"),
        DataDir = string.IsNullOrWhiteSpace(configuration["DATA_DIR"]) ? "./data" : configuration["DATA_DIR"]!,
        DataDirLowSpaceBytes = NonNegative(configuration, "DATA_DIR_LOW_SPACE_MB", 1024) * 1024 * 1024,
        DataDirCheckInterval = TimeSpan.FromSeconds(Math.Max(1, NonNegative(configuration, "DATA_DIR_CHECK_SECONDS", 30))),
        Diagnostics = bool.TryParse(configuration["PERF_DIAGNOSTICS"], out var diagnostics) && diagnostics,
        ShutdownGrace = TimeSpan.FromSeconds(double.TryParse(configuration["SHUTDOWN_GRACE_SECONDS"], System.Globalization.CultureInfo.InvariantCulture, out var s) ? s : 4),
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

    internal static int Port(IConfiguration configuration, string name, int fallback)
    {
        var value = configuration[name];
        if (string.IsNullOrWhiteSpace(value))
        {
            return fallback;
        }

        return int.TryParse(value, out var port) && port is >= 0 and <= 65535
            ? port
            : throw new InvalidOperationException($"{name} '{value}' is not a port number (0-65535)");
    }

    private static long NonNegative(IConfiguration configuration, string name, long fallback)
    {
        var value = configuration[name];
        if (string.IsNullOrWhiteSpace(value))
        {
            return fallback;
        }

        return long.TryParse(value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number) && number <= int.MaxValue
            ? number
            : throw new InvalidOperationException($"{name} '{value}' is not a whole number from 0 to {int.MaxValue}");
    }

    private static bool Flag(IConfiguration configuration, string name)
    {
        var value = configuration[name];
        return string.IsNullOrWhiteSpace(value) || !bool.TryParse(value, out var enabled) || enabled;
    }
}
