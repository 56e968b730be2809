using Perf.Api.Hosting;

namespace Perf.Api.Edge;

/// <summary>Settings of the edge door, read from configuration (environment variable names below).</summary>
public sealed class EdgeOptions
{
    /// <summary>Largest message the server accepts from an edge (and advertises in ConnectResponseMsg). Reference default 4 MiB.</summary>
    public int MaxInboundMessageSize { get; set; } = 4 << 20;

    /// <summary>Assumed limit of an edge that does not send maxInboundMessageSize (the edge's default, 4 MiB).</summary>
    public int DefaultEdgeInboundMessageSize { get; set; } = 4 << 20;

    /// <summary>Sends of one downlink before it is dropped as failed. Reference: 3.</summary>
    public int DownlinkAttempts { get; set; } = 3;

    /// <summary>Wait for a DownlinkResponseMsg before a resend. Reference: 60 s.</summary>
    public int DownlinkRetryMs { get; set; } = 60_000;

    /// <summary>Most events (entity data, device updates, RPC calls, attribute requests) in one UplinkMsg. The reference edge sends at most 50.</summary>
    public int MaxUplinkBatch { get; set; } = 50;

    /// <summary>UplinkMsgs per second one edge may send before it is answered success=false; 0 = unlimited.</summary>
    public int UplinkRateLimit { get; set; }

    /// <summary>UplinkMsgs of one edge processed concurrently (their responses still go out in order).</summary>
    public int UplinkPipelineDepth { get; set; } = 64;

    public static EdgeOptions From(IConfiguration configuration) => new()
    {
        MaxInboundMessageSize = ConfigValues.Int(configuration, "EDGES_MAX_INBOUND_MESSAGE_SIZE", 4 << 20),
        DownlinkAttempts = Math.Max(1, ConfigValues.Int(configuration, "EDGES_DOWNLINK_ATTEMPTS", 3)),
        DownlinkRetryMs = Math.Max(1, ConfigValues.Int(configuration, "EDGES_DOWNLINK_RETRY_MS", 60_000)),
        MaxUplinkBatch = Math.Max(1, ConfigValues.Int(configuration, "EDGES_MAX_UPLINK_BATCH", 50)),
        UplinkRateLimit = Math.Max(0, ConfigValues.Int(configuration, "EDGES_UPLINK_RATE_LIMIT", 0)),
    };
}
