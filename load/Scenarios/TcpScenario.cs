using System.Diagnostics;
using System.Net.Sockets;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>tcp</c>: newline-delimited JSON lines over N connections to the TCP integration door. There is no
/// per-line acknowledgement, so the figure is lines written per second (the kernel accepted them);
/// whatever the server sends back is read and discarded.
/// </summary>
public static class TcpScenario
{
    public const string Help = """
          tcp            --connections 100 --payload 64 (bytes per line, with '\n') --batch 32 (lines per write)
                         [--rate lines/s, 0 = max] [--port 10560]
                         [--line TEXT: send TEXT (without '\n') instead of JSON; {c} = connection index,
                          e.g. --line 'load-{c},default,temperature,25.7' for the CSV converter / seed decoder]
                         [--server-pid PID: after the run, wait until the server is idle (< 5% of a core
                          for 500 ms, at most 60 s) and report lines/s until idle = what it processed]
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 10560);
        var connections = o.Int("connections", 100, 1, 100_000);
        var lineLength = o.Int("payload", 64, 8, 1 << 20);
        var batch = o.Int("batch", 32, 1, 65_536);
        var rate = o.Double("rate", 0, 0);
        var lineTemplate = o.StringOrNull("line");
        int? serverPid = o.Has("server-pid") ? o.Int("server-pid", 0, 1) : null;
        o.ThrowIfUnused();

        var endPoint = Targets.Resolve(common.Host, common.Port);
        var jsonLine = MqttWire.JsonPayload(lineLength - 1);

        // One pre-encoded batch per connection (the --line template may name the connection).
        byte[] BatchFor(int connection)
        {
            var line = lineTemplate is null
                ? jsonLine
                : System.Text.Encoding.UTF8.GetBytes(lineTemplate.Replace("{c}", connection.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal));
            var length = line.Length + 1;
            var buffer = new byte[length * batch];
            for (var i = 0; i < batch; i++)
            {
                line.CopyTo(buffer, i * length);
                buffer[((i + 1) * length) - 1] = (byte)'\n';
            }

            return buffer;
        }

        if (lineTemplate is not null)
        {
            lineLength = BatchFor(0).Length / batch;
        }

        var result = new RunResult { Scenario = "tcp", Target = common.Target, RateName = "lines/s sent" };
        result.Parameter("connections", connections);
        result.Parameter("payload", lineLength);
        result.Parameter("batch", batch);
        if (lineTemplate is not null)
        {
            result.Parameter("line", lineTemplate);
        }

        result.Parameter("rate", rate == 0 ? "max" : rate);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");

        var sockets = new List<Socket>(connections);
        var connectFailures = 0;
        for (var i = 0; i < connections; i++)
        {
            var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(endPoint, cancellation);
                sockets.Add(socket);
            }
            catch (SocketException e)
            {
                socket.Dispose();
                if (connectFailures++ == 0)
                {
                    Console.Error.WriteLine($"connect failed: {e.Message}");
                }
            }
        }

        var workers = sockets.Select(_ => new WorkerCounters()).ToArray();
        var monitor = new ProgressMonitor(() => workers, "written", common.Duration);
        var clock = Stopwatch.StartNew();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        stop.CancelAfter(common.Duration);
        var cpuBefore = ServerProcess.CpuSeconds(serverPid);
        var drains = sockets.Select(s => Task.Run(() => DrainAsync(s))).ToArray();
        var senders = sockets.Select((s, i) => Task.Run(async () =>
        {
            var counters = workers[i];
            var buffer = BatchFor(i);
            var pacer = new Pacer(rate / sockets.Count, clock, Pacer.PhaseOf(i, sockets.Count));
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    await pacer.WaitTurnAsync(batch, stop.Token);
                    // No token on the send itself: a cancelled send aborts the socket, and the peer should see a clean close.
                    await s.SendAsync(buffer.AsMemory(), SocketFlags.None);
                    counters.Sent += batch;
                    counters.Acked += batch;
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                // Run over.
            }
            catch (SocketException)
            {
                Interlocked.Increment(ref counters.Errors);
            }
        }, CancellationToken.None)).ToArray();

        await Task.WhenAll(senders);
        var elapsed = clock.Elapsed.TotalSeconds;
        var idleAfter = serverPid is null ? (double?)null : await WaitForIdleAsync(serverPid, clock);
        var cpuAfter = ServerProcess.CpuSeconds(serverPid);
        await monitor.DisposeAsync();
        foreach (var s in sockets)
        {
            try
            {
                s.Shutdown(SocketShutdown.Both);
            }
            catch (SocketException)
            {
                // Already reset by the peer.
            }

            s.Dispose();
        }

        await Task.WhenAll(drains);
        var totals = monitor.Totals();
        result.DurationSeconds = elapsed;
        result.Sent = totals.Sent;
        result.Acked = totals.Acked;
        result.Errors = totals.Errors + connectFailures;
        result.Rate = totals.Sent / elapsed;
        result.Series = monitor.Series;
        result.AddExtra("connections open", sockets.Count);
        result.AddExtra("connect failures", connectFailures);
        if (idleAfter is { } idle && cpuBefore is { } before && cpuAfter is { } after)
        {
            var inv = System.Globalization.CultureInfo.InvariantCulture;
            result.AddExtra("server busy after the last write (s)", (idle - elapsed).ToString("F2", inv));
            result.AddExtra("lines/s until server idle", (totals.Sent / idle).ToString("F0", inv));
            result.AddExtra("server CPU seconds", (after - before).ToString("F2", inv));
            if (after > before)
            {
                result.AddExtra("lines per server CPU second", (totals.Sent / (after - before)).ToString("F0", inv));
            }
        }

        return common.Finish(result);
    }

    /// <summary>
    /// Polls the server's CPU time every 100 ms until a 500 ms window costs under 5% of a core (it has
    /// worked through what was written) or 60 s pass; returns the elapsed seconds at the start of that window.
    /// </summary>
    private static async Task<double?> WaitForIdleAsync(int? pid, Stopwatch clock)
    {
        var samples = new List<(double At, double Cpu)>();
        var deadline = clock.Elapsed.TotalSeconds + 60;
        while (clock.Elapsed.TotalSeconds < deadline)
        {
            if (ServerProcess.CpuSeconds(pid) is not { } cpu)
            {
                return null;
            }

            var now = clock.Elapsed.TotalSeconds;
            samples.Add((now, cpu));
            var windowStart = samples.FindLast(s => now - s.At >= 0.5);
            if (windowStart != default && (cpu - windowStart.Cpu) / (now - windowStart.At) < 0.05)
            {
                return windowStart.At;
            }

            await Task.Delay(100, CancellationToken.None);
        }

        return clock.Elapsed.TotalSeconds;
    }

    private static async Task DrainAsync(Socket socket)
    {
        var scratch = new byte[4096];
        try
        {
            while (await socket.ReceiveAsync(scratch, SocketFlags.None) > 0)
            {
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Closed.
        }
    }
}
