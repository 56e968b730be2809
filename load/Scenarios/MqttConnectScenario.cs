using System.Diagnostics;
using System.Globalization;
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

        // Every CONNECT is encoded before the clock starts: the generator's per-connect work is the socket.
        var pid = Environment.ProcessId;
        var packets = new byte[connections][];
        for (var i = 0; i < connections; i++)
        {
            packets[i] = MqttWire.Connect($"load-{pid}-{i}", tokens.For(i), null, (ushort)keepAlive);
        }

        var rssBefore = ServerProcess.RssBytes(serverPid);
        var serverCpuBefore = ServerProcess.CpuSeconds(serverPid);
        var clientCpuBefore = ClientCpuSeconds();
        var counters = new WorkerCounters();
        var lanes = Math.Min(concurrency, connections);
        var latency = new LatencyRecorder(Math.Min(lanes, 16));
        var sockets = new Socket?[connections];
        var monitor = new ProgressMonitor(() => [counters], "connected", common.Duration);
        var clock = Stopwatch.StartNew();
        var next = -1;
        string? firstError = null;

        // Lanes of back-to-back handshakes (--concurrency of them) instead of a task per connection; a
        // watchdog closes any handshake older than the timeout (or all of them when interrupted).
        var connectors = new MqttConnector[lanes];
        for (var l = 0; l < lanes; l++)
        {
            connectors[l] = new MqttConnector(endPoint);
        }

        var timeoutTicks = (long)(HandshakeTimeout.TotalSeconds * Stopwatch.Frequency);
        using var watchdog = new Timer(_ =>
        {
            var startedBefore = cancellation.IsCancellationRequested ? long.MaxValue : Stopwatch.GetTimestamp() - timeoutTicks;
            foreach (var connector in connectors)
            {
                connector.AbortIfStarted(startedBefore);
            }
        }, null, TimeSpan.FromMilliseconds(250), TimeSpan.FromMilliseconds(250));

        async Task LaneAsync(int lane)
        {
            var connector = connectors[lane];
            int index;
            while ((index = Interlocked.Increment(ref next)) < connections && !cancellation.IsCancellationRequested)
            {
                if (connectRate > 0)
                {
                    var due = TimeSpan.FromSeconds(index / connectRate) - clock.Elapsed;
                    if (due > TimeSpan.FromMilliseconds(1))
                    {
                        try
                        {
                            await Task.Delay(due, cancellation);
                        }
                        catch (OperationCanceledException)
                        {
                            return;
                        }
                    }
                }

                var started = Stopwatch.GetTimestamp();
                Interlocked.Increment(ref counters.Sent);
                try
                {
                    sockets[index] = await connector.ConnectAsync(packets[index]);
                    latency.RecordTicks(lane, Stopwatch.GetTimestamp() - started);
                    Interlocked.Increment(ref counters.Acked);
                }
                catch (Exception e) when (e is SocketException or IOException)
                {
                    Interlocked.Increment(ref counters.Errors);
                    Interlocked.CompareExchange(ref firstError, e.Message, null);
                }
            }
        }

        var attempts = new Task[lanes];
        for (var l = 0; l < lanes; l++)
        {
            var lane = l;
            attempts[l] = Task.Run(() => LaneAsync(lane), CancellationToken.None);
        }

        await Task.WhenAll(attempts);
        var connectSeconds = clock.Elapsed.TotalSeconds;
        var serverCpu = ServerProcess.CpuSeconds(serverPid) - serverCpuBefore;
        var clientCpu = ClientCpuSeconds() - clientCpuBefore;
        foreach (var connector in connectors)
        {
            connector.Dispose();
        }

        if (cancellation.IsCancellationRequested)
        {
            Console.Error.WriteLine("interrupted: stopping early");
        }

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
        if (connected > 0)
        {
            // CPU per connect (connect phase only) reads the same on a busy machine; the rate does not.
            result.AddExtra("client CPU s (connect phase)", clientCpu.ToString("F2", CultureInfo.InvariantCulture));
            result.AddExtra("client CPU us per connect", (clientCpu * 1e6 / connected).ToString("F1", CultureInfo.InvariantCulture));
            if (serverCpu is { } cpu)
            {
                result.AddExtra("server CPU s (connect phase)", cpu.ToString("F2", CultureInfo.InvariantCulture));
                result.AddExtra("server CPU us per connect", (cpu * 1e6 / connected).ToString("F1", CultureInfo.InvariantCulture));
            }
        }

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

    private static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    private static double ClientCpuSeconds()
    {
        using var self = Process.GetCurrentProcess();
        return self.TotalProcessorTime.TotalSeconds;
    }
}
