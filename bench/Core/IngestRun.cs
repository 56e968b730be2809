using System.Buffers;
using System.Diagnostics;
using System.Text;

namespace Perf.Bench.Core;

/// <summary>
/// <c>--ingest [seconds]</c>: the in-process ingest rate with durable commit, for 1 and 100 concurrent
/// writers, each writer awaiting its acknowledgement before the next message (the device's QoS 1 with a
/// window of one). Prints acknowledged messages/s, data points/s, the ack (commit) latency distribution and
/// the process-wide allocated bytes per message (the runtime's counter over the run, divided by messages:
/// issue 12's figure; it includes the commit loop, FASTER and the in-memory history the messages add to).
/// </summary>
internal static class IngestRun
{
    private static readonly ReadOnlySequence<byte> Payload = new(Encoding.UTF8.GetBytes("""{"temperature":25,"humidity":60.5,"active":true}"""));
    private const int PointsPerMessage = 3;

    public static async Task<int> RunAsync(string[] args)
    {
        var seconds = args.Length > 1 && int.TryParse(args[1], out var s) ? s : 10;
        Console.WriteLine($"In-process durable ingest, {seconds} s per run, payload {Payload.Length} B ({PointsPerMessage} data points), fsync on commit");
        Console.WriteLine("| writers | acked msgs/s | data points/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | allocated B/msg |");
        Console.WriteLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var writers in new[] { 1, 100 })
        {
            await using var fixture = await EngineFixture.OpenAsync(writers);
            // Created before the allocation counter is read: the bench's own bookkeeping is not the server's.
            var latencies = Enumerable.Range(0, writers).Select(_ => new List<double>(1 << 16)).ToArray();
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
            var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
            var clock = Stopwatch.StartNew();
            var tasks = Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
            {
                var mine = latencies[w];
                var device = fixture.Devices[w];
                while (!stop.IsCancellationRequested)
                {
                    var start = Stopwatch.GetTimestamp();
                    var result = await fixture.Engine.DeviceApi.PostTelemetryAsync(device, Payload);
                    if (!result.IsOk)
                    {
                        throw new InvalidOperationException($"uplink failed: {result.Status} {result.Reason}");
                    }

                    mine.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                }
            })).ToArray();
            await Task.WhenAll(tasks);
            var elapsed = clock.Elapsed.TotalSeconds;
            var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
            var all = latencies.SelectMany(l => l).Order().ToArray();
            double P(double q) => all[Math.Min(all.Length - 1, (int)(q * all.Length))];
            Console.WriteLine(
                $"| {writers} | {all.Length / elapsed:N0} | {all.Length * PointsPerMessage / elapsed:N0} | {P(0.5):F2} | {P(0.9):F2} | {P(0.99):F2} | {P(0.999):F2} | {all[^1]:F2} | {(double)allocated / all.Length:F1} |");
        }

        return 0;
    }
}
