using System.Globalization;
using Perf.Core;

namespace Perf.Api.Hosting;

/// <summary>
/// Limits against hostile and runaway clients (README "Limits and hostile connections"): connections per door,
/// the per-address connection rate and wrong-credential blocking of <see cref="ConnectionGuard"/>, and the
/// per-device / per-tenant message rates every device door charges (<see cref="DeviceRateLimits"/>).
/// </summary>
public sealed class LimitSettings
{
    public int MqttMaxConnections { get; init; } = 100_000;
    public int TcpMaxConnections { get; init; } = 10_000;
    public int HttpMaxConnections { get; init; } = 10_000;
    public int EdgesMaxConnections { get; init; } = 1_000;
    public required ConnectionGuardOptions Guard { get; init; }
    public string? TenantMessagesRateLimit { get; init; }
    public string? DeviceMessagesRateLimit { get; init; }
    public string? GatewayMessagesRateLimit { get; init; }

    public static LimitSettings From(IConfiguration configuration)
    {
        var guard = new ConnectionGuardOptions
        {
            AuthFailuresBeforeBlock = Int(configuration, "AUTH_FAILURES_BEFORE_BLOCK", 10),
            AuthBlockDuration = TimeSpan.FromSeconds(Double(configuration, "AUTH_BLOCK_SECONDS", 60)),
            ExemptLoopback = Bool(configuration, "LIMITS_EXEMPT_LOOPBACK", true),
            MaxTrackedAddresses = Int(configuration, "LIMITS_MAX_TRACKED_IPS", 65_536),
            SummaryInterval = TimeSpan.FromSeconds(Double(configuration, "LIMITS_LOG_SUMMARY_SECONDS", 10)),
        };
        if (configuration["CONN_RATE_PER_IP"] is { } rate)
        {
            // "" or "0" turns it off; anything else must parse (a typo must not silently disable the limit).
            guard.ConnectionRatePerAddress = rate.Trim() is "" or "0" ? null
                : RateLimit.TryParse(rate, out var parsed, out var error) ? parsed
                : throw new InvalidOperationException("CONN_RATE_PER_IP: " + error);
        }

        return new LimitSettings
        {
            MqttMaxConnections = Int(configuration, "MQTT_MAX_CONNECTIONS", 100_000),
            TcpMaxConnections = Int(configuration, "TCP_INTEGRATION_MAX_CONNECTIONS", 10_000),
            HttpMaxConnections = Int(configuration, "HTTP_MAX_CONNECTIONS", 10_000),
            EdgesMaxConnections = Int(configuration, "EDGES_MAX_CONNECTIONS", 1_000),
            Guard = guard,
            // Named under Mqtt: for compatibility; since issue 13 they hold for the HTTP device API and CoAP too.
            TenantMessagesRateLimit = configuration["Mqtt:TenantMessagesRateLimit"],
            DeviceMessagesRateLimit = configuration["Mqtt:DeviceMessagesRateLimit"],
            GatewayMessagesRateLimit = configuration["Mqtt:GatewayMessagesRateLimit"],
        };
    }

    private static int Int(IConfiguration configuration, string name, int fallback) =>
        configuration[name] is not { Length: > 0 } value ? fallback
        : int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) ? parsed
        : throw new InvalidOperationException($"{name} '{value}' is not an integer");

    private static double Double(IConfiguration configuration, string name, double fallback) =>
        configuration[name] is not { Length: > 0 } value ? fallback
        : double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) && parsed >= 0 ? parsed
        : throw new InvalidOperationException($"{name} '{value}' is not a non-negative number");

    private static bool Bool(IConfiguration configuration, string name, bool fallback) =>
        configuration[name] is not { Length: > 0 } value ? fallback
        : bool.TryParse(value, out var parsed) ? parsed
        : throw new InvalidOperationException($"{name} '{value}' is not true or false");
}
