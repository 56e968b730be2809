namespace Perf.Kestrel.Mqtt;

/// <summary>Limits and behaviour of the MQTT door.</summary>
public sealed class MqttOptions
{
    /// <summary>Largest PUBLISH payload; a bigger packet closes the connection as malformed (reference default 65536).</summary>
    public int MaxPayloadSize { get; set; } = 65_536;

    /// <summary>Time allowed between accept and CONNECT.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Uplinks dispatched to the core before the connection waits for their outcomes (and writes their PUBACKs).</summary>
    public int MaxInflight { get; set; } = 100;

    /// <summary>Unacknowledged QoS 1 downlinks per session; beyond it the session is closed (reference 100).</summary>
    public int MaxPendingPerSession { get; set; } = 100;

    /// <summary>When true, a QoS 1 PUBLISH with invalid JSON is PUBACKed and the session kept; otherwise the connection is closed.</summary>
    public bool AckInvalidJsonOnQos1 { get; set; }

    /// <summary>A QoS 1 downlink not PUBACKed within this time is re-sent with DUP set.</summary>
    public TimeSpan DownlinkRetryInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Rate limits in the reference's format <c>"20:1,600:60"</c> (20 per 1 s and 600 per 60 s); enforced by the core, reported by getSessionLimits.</summary>
    public string? TenantMessagesRateLimit { get; set; }

    /// <summary>Per-device rate limit, format as <see cref="TenantMessagesRateLimit"/>.</summary>
    public string? DeviceMessagesRateLimit { get; set; }

    /// <summary>Per-gateway rate limit, format as <see cref="TenantMessagesRateLimit"/>.</summary>
    public string? GatewayMessagesRateLimit { get; set; }

    /// <summary>
    /// Bytes written to a connection and not yet taken by the socket (the client does not read) beyond which
    /// the connection is closed instead of buffering more. Default 1 MiB.
    /// </summary>
    public long MaxOutputBufferSize { get; set; } = 1L << 20;

    /// <summary>Granularity of the connect-timeout, keep-alive and retry checks.</summary>
    internal TimeSpan TimerPeriod { get; set; } = TimeSpan.FromSeconds(1);
}
