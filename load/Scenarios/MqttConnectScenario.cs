using System.Diagnostics;
using System.Net.Sockets;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>mqtt-connect</c>: opens N connections at <c>--connect-rate</c>, holds them for <c>--duration</c>,
/// reports connect rate, failures, CONNACK latency and, with <c>--server-pid</c>, the server's RSS growth
/// per connection (/proc/&lt;pid&gt;/status VmRSS after the connect phase settles, minus before).
/// </summary>
public static class MqttConnectScenario
{
    public const string Help = """
          mqtt-connect   --connections 1000 [--connect-rate 2000/s, 0 = max] [--concurrency 200]
                         [--duration 10s hold] [--server-pid PID] [--keepalive 0] [--settle 2s]
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 1883);
        var connections = o.Int("connections", 1000, 1, 1_000_000);
        var connectRate = o.Double("connect-rate", 2000, 0);
        var concurrency = o.Int("concurrency", 200, 1, 100_000);
        var keepAlive = o.Int("keepalive", 0, 0, 65_535);
        var settle = o.Duration("settle", TimeSpan.FromSeconds(2));
        int? serverPid = o.Has("server-pid") ? o.Int("server-pid", 0, 1) : null;
        var tokens = await Tokens.FromOptionsAsync(o, cancellation);
        o.ThrowIfUnused();

        var endPoint = Targets.Resolve(common.Host, common.Port);
        var result = new RunResult { Scenario = "mqtt-connect", Target = common.Target, RateName = "connects/s", LatencyName = "CONNACK latency" };
        result.Parameter("connections", connections);
        result.Parameter("connect-rate", connectRate == 0 ? "max" : connectRate);
        result.Parameter("concurrency", concurrency);
        result.Parameter("hold", common.Duration.TotalSeconds + "s");
        result.Parameter("tokens", tokens.Describe());

        var rssBefore = ServerProcess.RssBytes(serverPid);
        var counters = new WorkerCounters();
        var latency = new LatencyRecorder(1);
        var sockets = new Socket?[connections];
        var monitor = new ProgressMonitor(() => [counters], "connected", common.Duration);
        var clock = Stopwatch.StartNew();
        using var gate = new SemaphoreSlim(concurrency);
        var attempts = new List<Task>(connections);
        var pid = Environment.ProcessId;
        string? firstError = null;
        try
        {
            for (var i = 0; i < connections; i++)
            {
                if (connectRate > 0)
                {
                    var due = TimeSpan.FromSeconds(i / connectRate) - clock.Elapsed;
                    if (due > TimeSpan.FromMilliseconds(1))
                    {
                        await Task.Delay(due, cancellation);
                    }
                }

                await gate.WaitAsync(cancellation);
                var index = i;
                attempts.Add(Task.Run(async () =>
                {
                    var started = Stopwatch.GetTimestamp();
                    Interlocked.Increment(ref counters.Sent);
                    try
                    {
                        var connect = MqttWire.Connect($"load-{pid}-{index}", tokens.For(index), null, (ushort)keepAlive);
                        sockets[index] = await MqttHandshake.ConnectAsync(endPoint, connect, TimeSpan.FromSeconds(10), cancellation);
                        latency.RecordTicks(0, Stopwatch.GetTimestamp() - started);
                        Interlocked.Increment(ref counters.Acked);
                    }
                    catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
                    {
                        Interlocked.Increment(ref counters.Errors);
                        Interlocked.CompareExchange(ref firstError, e.Message, null);
                    }
                    finally
                    {
                        gate.Release();
                    }
                }, CancellationToken.None));
            }
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: stopping early");
        }

        await Task.WhenAll(attempts);
        var connectSeconds = clock.Elapsed.TotalSeconds;
        var connected = sockets.Count(s => s is not null);
        Console.Error.WriteLine($"connect phase: {connected:N0} connected, {counters.Errors:N0} failed in {connectSeconds:F2} s{(firstError is null ? "" : $"; first error: {firstError}")}");

        long? rssConnected = null;
        try
        {
            await Task.Delay(settle, cancellation);
            rssConnected = ServerProcess.RssBytes(serverPid);
            var remaining = common.Duration - settle;
            if (remaining > TimeSpan.Zero)
            {
                await Task.Delay(remaining, cancellation);
            }
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: ending hold early");
        }

        var rssEnd = ServerProcess.RssBytes(serverPid);
        // A socket the server closed during the hold reads as readable with nothing available.
        var dropped = sockets.Count(s => s is not null && s.Poll(0, SelectMode.SelectRead) && s.Available == 0);
        await monitor.DisposeAsync();
        foreach (var socket in sockets)
        {
            socket?.Dispose();
        }

        result.DurationSeconds = connectSeconds;
        result.Sent = counters.Sent;
        result.Acked = connected;
        result.Errors = counters.Errors + dropped;
        result.Rate = connected / Math.Max(1e-9, connectSeconds);
        result.Latency = latency.Merge();
        result.Series = monitor.Series;
        result.AddExtra("connected", connected);
        result.AddExtra("failed", counters.Errors);
        result.AddExtra("dropped during hold", dropped);
        if (serverPid is not null)
        {
            result.AddExtra("server pid", serverPid);
            result.AddExtra("server RSS before (KiB)", (rssBefore ?? 0) / 1024);
            result.AddExtra("server RSS after connect (KiB)", (rssConnected ?? 0) / 1024);
            result.AddExtra("server RSS end of hold (KiB)", (rssEnd ?? 0) / 1024);
            if (rssBefore is { } before && rssConnected is { } after && connected > 0)
            {
                result.AddExtra("server RSS per connection (bytes)", (after - before) / connected);
            }
        }

        return common.Finish(result);
    }
}
