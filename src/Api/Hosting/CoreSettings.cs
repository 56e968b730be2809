using Perf.Core;

namespace Perf.Api.Hosting;

/// <summary>
/// Maps configuration onto <see cref="CoreOptions"/> (storage and device-API limits). An absent setting keeps the
/// option's default; a value that does not parse stops the start (<see cref="ConfigValues"/>).
/// </summary>
internal static class CoreSettings
{
    public static CoreOptions From(IConfiguration configuration, string dataDir)
    {
        var options = new CoreOptions { DataDir = dataDir };
        options.CommitIntervalMs = ConfigValues.Int(configuration, "COMMIT_INTERVAL_MS", options.CommitIntervalMs);
        options.FsyncOnCommit = ConfigValues.Bool(configuration, "FSYNC_ON_COMMIT", options.FsyncOnCommit);
        long checkpointBytes = ConfigValues.Long(configuration, "CHECKPOINT_LOG_BYTES", options.CheckpointLogBytes);
        options.CheckpointLogBytes = checkpointBytes > 0
            ? checkpointBytes
            : throw new InvalidOperationException($"CHECKPOINT_LOG_BYTES '{configuration["CHECKPOINT_LOG_BYTES"]}' is not a positive number of bytes");
        options.OnLogDamage = configuration["LOG_DAMAGE"] switch
        {
            null or "" or "stop" => LogDamagePolicy.Stop,
            "keep-before" => LogDamagePolicy.KeepBefore,
            var other => throw new InvalidOperationException($"LOG_DAMAGE '{other}' is not 'stop' or 'keep-before'"),
        };
        options.TelemetryRetentionDays = ConfigValues.Int(configuration, "TELEMETRY_RETENTION_DAYS", options.TelemetryRetentionDays);
        options.MaxPayloadSize = ConfigValues.Int(configuration, "MAX_PAYLOAD_SIZE", options.MaxPayloadSize);

        // Persistent RPC, under the reference's variable names where it has them.
        options.RpcMaxRetries = ConfigValues.Int(configuration, "ACTORS_RPC_MAX_RETRIES", options.RpcMaxRetries);
        options.RpcSequentialDelivery = ConfigValues.Bool(configuration, "ACTORS_RPC_SEQUENTIAL", options.RpcSequentialDelivery);
        options.RpcTtlCheckIntervalMs = ConfigValues.Long(configuration, "SQL_RPC_TTL_CHECKING_INTERVAL", options.RpcTtlCheckIntervalMs);
        options.PersistentRpcTtlMs = ConfigValues.Long(configuration, "RPC_TTL_MS", options.PersistentRpcTtlMs);

        // getSessionLimits advertises what the MQTT door enforces.
        if (configuration["Mqtt:DeviceMessagesRateLimit"] is { Length: > 0 } deviceLimit)
        {
            options.DeviceRateLimits = deviceLimit;
        }

        if (configuration["Mqtt:GatewayMessagesRateLimit"] is { Length: > 0 } gatewayLimit)
        {
            options.GatewayRateLimits = gatewayLimit;
        }

        options.MaxInflightMessages = ConfigValues.Int(configuration, "Mqtt:MaxInflight", options.MaxInflightMessages);
        return options;
    }
}
