using System.Globalization;
using Perf.Core;

namespace Perf.Api.Hosting;

/// <summary>Maps configuration onto <see cref="CoreOptions"/> (storage and device-API limits).</summary>
internal static class CoreSettings
{
    public static CoreOptions From(IConfiguration configuration, string dataDir)
    {
        var options = new CoreOptions { DataDir = dataDir };
        if (int.TryParse(configuration["COMMIT_INTERVAL_MS"], CultureInfo.InvariantCulture, out var commit))
        {
            options.CommitIntervalMs = commit;
        }

        if (bool.TryParse(configuration["FSYNC_ON_COMMIT"], out var fsync))
        {
            options.FsyncOnCommit = fsync;
        }

        if (long.TryParse(configuration["CHECKPOINT_LOG_BYTES"], CultureInfo.InvariantCulture, out var checkpointBytes) && checkpointBytes > 0)
        {
            options.CheckpointLogBytes = checkpointBytes;
        }

        if (int.TryParse(configuration["TELEMETRY_RETENTION_DAYS"], CultureInfo.InvariantCulture, out var retention))
        {
            options.TelemetryRetentionDays = retention;
        }

        if (int.TryParse(configuration["MAX_PAYLOAD_SIZE"], CultureInfo.InvariantCulture, out var payload))
        {
            options.MaxPayloadSize = payload;
        }

        // Persistent RPC, under the reference's variable names where it has them.
        if (int.TryParse(configuration["ACTORS_RPC_MAX_RETRIES"], CultureInfo.InvariantCulture, out var retries))
        {
            options.RpcMaxRetries = retries;
        }

        if (bool.TryParse(configuration["ACTORS_RPC_SEQUENTIAL"], out var sequential))
        {
            options.RpcSequentialDelivery = sequential;
        }

        if (long.TryParse(configuration["SQL_RPC_TTL_CHECKING_INTERVAL"], CultureInfo.InvariantCulture, out var ttlCheck))
        {
            options.RpcTtlCheckIntervalMs = ttlCheck;
        }

        if (long.TryParse(configuration["RPC_TTL_MS"], CultureInfo.InvariantCulture, out var ttl))
        {
            options.PersistentRpcTtlMs = ttl;
        }

        // getSessionLimits advertises what the MQTT door enforces.
        if (configuration["Mqtt:DeviceMessagesRateLimit"] is { Length: > 0 } deviceLimit)
        {
            options.DeviceRateLimits = deviceLimit;
        }

        if (int.TryParse(configuration["Mqtt:MaxInflight"], CultureInfo.InvariantCulture, out var inflight))
        {
            options.MaxInflightMessages = inflight;
        }

        return options;
    }
}
