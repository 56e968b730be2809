using System.Diagnostics;
using System.Net.Http.Headers;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>http</c>: device API telemetry, <c>POST /api/v1/{token}/telemetry</c>, from <c>--connections</c>
/// workers over keep-alive connections (one request in flight per connection).
/// </summary>
public static class HttpScenario
{
    public const string Help = """
          http           --connections 50 --payload 64 [--rate req/s, 0 = max] [--port 8080]
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 8080);
        var connections = o.Int("connections", 50, 1, 10_000);
        var payloadSize = o.Int("payload", 64, 1, 50 << 20);
        var rate = o.Double("rate", 0, 0);
        var tokens = await Tokens.FromOptionsAsync(o, cancellation);
        o.ThrowIfUnused();

        var payload = MqttWire.JsonPayload(payloadSize);
        var mediaType = new MediaTypeHeaderValue("application/json");
        using var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = connections,
            PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            UseProxy = false,
            AllowAutoRedirect = false,
        };
        using var http = new HttpClient(handler) { BaseAddress = new Uri($"http://{common.Host}:{common.Port}/"), Timeout = TimeSpan.FromSeconds(30) };

        var result = new RunResult { Scenario = "http", Target = common.Target, RateName = "2xx req/s", LatencyName = "response latency" };
        result.Parameter("connections", connections);
        result.Parameter("payload", payloadSize);
        result.Parameter("rate", rate == 0 ? "max" : rate);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");
        result.Parameter("tokens", tokens.Describe());

        var workers = Enumerable.Range(0, connections).Select(_ => new WorkerCounters()).ToArray();
        var latency = new LatencyRecorder();
        var monitor = new ProgressMonitor(() => workers, "2xx", common.Duration);
        var clock = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        stop.CancelAfter(common.Duration);
        string? firstError = null;

        var tasks = Enumerable.Range(0, connections).Select(i => Task.Run(async () =>
        {
            var counters = workers[i];
            var path = $"api/v1/{Uri.EscapeDataString(tokens.For(i))}/telemetry";
            var pacer = new Pacer(rate / connections, clock, Pacer.PhaseOf(i, connections));
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await pacer.WaitTurnAsync(1, stop.Token);
                    using var content = new ByteArrayContent(payload);
                    content.Headers.ContentType = mediaType;
                    var started = Stopwatch.GetTimestamp();
                    counters.Sent++;
                    using var response = await http.PostAsync(path, content, stop.Token);
                    if (response.IsSuccessStatusCode)
                    {
                        latency.RecordTicks(i, Stopwatch.GetTimestamp() - started);
                        counters.Acked++;
                    }
                    else
                    {
                        Interlocked.Increment(ref counters.Errors);
                        Interlocked.CompareExchange(ref firstError, $"HTTP {(int)response.StatusCode}", null);
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    counters.Sent--; // cut off by the end of the run, not failed
                }
                catch (Exception e) when (e is HttpRequestException or IOException or TaskCanceledException)
                {
                    Interlocked.Increment(ref counters.Errors);
                    Interlocked.CompareExchange(ref firstError, e.Message, null);
                    await Task.Delay(10, CancellationToken.None);
                }
            }
        }, CancellationToken.None)).ToArray();

        await Task.WhenAll(tasks);
        var elapsed = clock.Elapsed.TotalSeconds;
        await monitor.DisposeAsync();
        var totals = monitor.Totals();
        if (firstError is not null)
        {
            Console.Error.WriteLine($"first error: {firstError}");
        }

        result.DurationSeconds = elapsed;
        result.Sent = totals.Sent;
        result.Acked = totals.Acked;
        result.Errors = totals.Errors;
        result.Rate = totals.Acked / elapsed;
        result.Latency = latency.Merge();
        result.Series = monitor.Series;
        return common.Finish(result);
    }
}
