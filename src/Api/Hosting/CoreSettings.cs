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

        if (int.TryParse(configuration["TELEMETRY_RETENTION_DAYS"], CultureInfo.InvariantCulture, out var retention))
        {
            options.TelemetryRetentionDays = retention;
        }

        if (int.TryParse(configuration["MAX_PAYLOAD_SIZE"], CultureInfo.InvariantCulture, out var payload))
        {
            options.MaxPayloadSize = payload;
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
