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
            AuthFailuresBeforeBlock = ConfigValues.Int(configuration, "AUTH_FAILURES_BEFORE_BLOCK", 10),
            AuthBlockDuration = TimeSpan.FromSeconds(ConfigValues.NonNegativeDouble(configuration, "AUTH_BLOCK_SECONDS", 60)),
            ExemptLoopback = ConfigValues.Bool(configuration, "LIMITS_EXEMPT_LOOPBACK", true),
            MaxTrackedAddresses = ConfigValues.Int(configuration, "LIMITS_MAX_TRACKED_IPS", 65_536),
            SummaryInterval = TimeSpan.FromSeconds(ConfigValues.NonNegativeDouble(configuration, "LIMITS_LOG_SUMMARY_SECONDS", 10)),
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
            MqttMaxConnections = ConfigValues.Int(configuration, "MQTT_MAX_CONNECTIONS", 100_000),
            TcpMaxConnections = ConfigValues.Int(configuration, "TCP_INTEGRATION_MAX_CONNECTIONS", 10_000),
            HttpMaxConnections = ConfigValues.Int(configuration, "HTTP_MAX_CONNECTIONS", 10_000),
            EdgesMaxConnections = ConfigValues.Int(configuration, "EDGES_MAX_CONNECTIONS", 1_000),
            Guard = guard,
            // Named under Mqtt: for compatibility; since issue 13 they hold for the HTTP device API and CoAP too.
            TenantMessagesRateLimit = configuration["Mqtt:TenantMessagesRateLimit"],
            DeviceMessagesRateLimit = configuration["Mqtt:DeviceMessagesRateLimit"],
            GatewayMessagesRateLimit = configuration["Mqtt:GatewayMessagesRateLimit"],
        };
    }
}
