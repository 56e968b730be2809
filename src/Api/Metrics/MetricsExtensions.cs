using Prometheus;

namespace Perf.Api.Metrics;

/// <summary>
/// <c>/metrics</c> in the Prometheus text format. The core and the doors record with BCL
/// <c>System.Diagnostics.Metrics</c> instruments; only this host exports them, through prometheus-net's meter adapter.
/// </summary>
public static class MetricsExtensions
{
    private static readonly string[] PublishedMeters =
    [
        "Perf.",
        "System.Runtime",
        "Microsoft.AspNetCore.Server.Kestrel",
    ];

    /// <summary>
    /// Kestrel instruments not exported: the connection and request queues are 0 except for the instant between
    /// accept and dispatch, and recording them costs two tagged measurements per connection (about 3 % of the
    /// server's CPU in a connect storm, issue 12 target 6). An instrument no listener enables is not recorded.
    /// </summary>
    private static readonly string[] UnpublishedInstruments = ["kestrel.queued_connections", "kestrel.queued_requests"];

    private static readonly double[] CommitBucketsMs = [0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 2500];
    private static readonly Lock AdapterLock = new();
    private static bool _adapterConfigured;

    public static IServiceCollection AddPerfMetrics(this IServiceCollection services)
    {
        services.AddMetrics();
        services.AddSingleton<HostMetrics>();
        ConfigureAdapter();
        return services;
    }

    public static async Task MapPerfMetricsAsync(this WebApplication app)
    {
        // Observable instruments are created when the host resolves them.
        app.Services.GetRequiredService<HostMetrics>();
        app.MapMetrics("/metrics");

        // prometheus-net starts its meter listener at the first collection; until then counters miss what the
        // doors record. Collect once now, before any door accepts a connection.
        await Prometheus.Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null);
    }

    /// <summary>The meter adapter is process-wide (one default registry); several hosts in one test process share it.</summary>
    private static void ConfigureAdapter()
    {
        lock (AdapterLock)
        {
            if (_adapterConfigured)
            {
                return;
            }

            _adapterConfigured = true;

            // The event counter adapter subscribes to its event sources (Kestrel, System.Net.Sockets, ...) at Informational
            // by default, which turns on their per-connection events: Kestrel's ConnectionStart formats the connection id
            // and both endpoints as strings, the sockets' AcceptStart the peer address, and every event is dispatched to the
            // listener only to be ignored (it reads the counters alone). Counters are written at LogAlways, which any level
            // receives, so subscribing at Critical keeps every exported counter and drops the per-connection events
            // (issue 12, connect rate: about 1 KB and several events less per connection).
            Prometheus.Metrics.ConfigureEventCounterAdapter(options =>
                options.EventSourceSettingsProvider = _ => new EventCounterAdapterEventSourceSettings { MinimumLevel = System.Diagnostics.Tracing.EventLevel.Critical });

            Prometheus.Metrics.ConfigureMeterAdapter(options =>
            {
                options.InstrumentFilterPredicate = instrument =>
                    PublishedMeters.Any(prefix => instrument.Meter.Name.StartsWith(prefix, StringComparison.Ordinal))
                    && !UnpublishedInstruments.Contains(instrument.Name);

                // Series not updated for this long are dropped (the adapter allows at most a day). Levels such as open
                // connections are observable instruments, refreshed at every scrape, so only idle counters expire.
                options.MetricsExpireAfter = TimeSpan.FromDays(1);
                options.ResolveHistogramBuckets = instrument =>
                    instrument.Meter.Name == "Perf.Core" && instrument.Name == "commit.duration" ? CommitBucketsMs : Histogram.ExponentialBuckets(0.001, 4, 10);
            });
        }
    }
}
