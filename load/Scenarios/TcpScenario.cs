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
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 10560);
        var connections = o.Int("connections", 100, 1, 100_000);
        var lineLength = o.Int("payload", 64, 8, 1 << 20);
        var batch = o.Int("batch", 32, 1, 65_536);
        var rate = o.Double("rate", 0, 0);
        o.ThrowIfUnused();

        var endPoint = Targets.Resolve(common.Host, common.Port);
        var line = MqttWire.JsonPayload(lineLength - 1);
        var buffer = new byte[lineLength * batch];
        for (var i = 0; i < batch; i++)
        {
            line.CopyTo(buffer, i * lineLength);
            buffer[((i + 1) * lineLength) - 1] = (byte)'\n';
        }

        var result = new RunResult { Scenario = "tcp", Target = common.Target, RateName = "lines/s sent" };
        result.Parameter("connections", connections);
        result.Parameter("payload", lineLength);
        result.Parameter("batch", batch);
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
        var drains = sockets.Select(s => Task.Run(() => DrainAsync(s))).ToArray();
        var senders = sockets.Select((s, i) => Task.Run(async () =>
        {
            var counters = workers[i];
            var pacer = new Pacer(rate / sockets.Count, clock);
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
        return common.Finish(result);
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
