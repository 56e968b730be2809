using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>soak</c>: a long churn run. Each client loops: MQTT connect, a few QoS 1 publishes (each waits for
/// its PUBACK), disconnect; every fourth cycle also posts over the HTTP device API and, with
/// <c>--coap-port</c>, over CoAP. Every <c>--sample</c> the server's memory is read (RSS from /proc with
/// <c>--server-pid</c>; managed heap and GC counts from <c>/health/runtime</c>) and at the end the trend is
/// reported (<see cref="SoakTrend"/>); exit 1 when it grows faster than <c>--max-growth-mb-per-min</c> or
/// the error rate is above <c>--max-error-rate</c> (default 0.1 %).
/// </summary>
public static class SoakScenario
{
    public const string Help = """
          soak           --duration 10m --clients 40 --messages 5 --api http://127.0.0.1:8080 [--server-pid PID]
                         [--coap-port 5683 (0: no CoAP)] [--sample 10s] [--max-growth-mb-per-min 2] [--max-error-rate 0.001]
                         [--provision N (default clients) --token-prefix soak-token-] [--samples-csv memory.csv]
                         [--growing-history: server-stamped points, so stored history grows (default: each client
                          rewrites one point, so stored data stays constant and any growth is the server's own)]
                         churn (connect, QoS 1 publishes, disconnect, repeat; HTTP and CoAP posts mixed in); memory
                         sampled every --sample; trend = least-squares slope over the second half of the run and
                         first-vs-last-third means; exit 1 if RSS (or, without --server-pid, the managed heap) grows
                         faster than the limit, or on errors above --max-error-rate
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 1883);
        var clients = o.Int("clients", 40, 1, 100_000);
        var messages = o.Int("messages", 5, 1, 1000);
        var coapPort = o.Int("coap-port", 0, 0, 65535);
        var sampleEvery = o.Duration("sample", TimeSpan.FromSeconds(10));
        var maxGrowth = o.Double("max-growth-mb-per-min", 2, 0);
        int? serverPid = o.Has("server-pid") ? o.Int("server-pid", 0, 1) : null;
        var csv = o.StringOrNull("samples-csv");
        var growingHistory = o.Flag("growing-history");
        var api = new Uri(o.String("api", "http://127.0.0.1:8080"));
        var user = o.String("user", "tenant@example.com");
        var password = o.String("password", "tenant");
        var prefix = o.String("token-prefix", "soak-token-");
        var provision = o.Int("provision", clients, 1, 1_000_000);
        o.ThrowIfUnused();
        var maxErrorRate = common.MaxErrorRate ?? 0.001;
        if (sampleEvery <= TimeSpan.Zero)
        {
            throw new OptionsException("--sample must be positive.");
        }

        var devices = await Tokens.ProvisionAsync(api, user, password, prefix, provision, cancellation);
        var mqtt = Targets.Resolve(common.Host, common.Port);
        var coap = coapPort > 0 ? Targets.Resolve(common.Host, coapPort) : null;
        using var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(1) }) { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        var result = new RunResult { Scenario = "soak", Target = common.Target, RateName = "cycles/s", LatencyName = "cycle latency" };
        result.Parameter("clients", clients);
        result.Parameter("messages", messages);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");
        result.Parameter("coap", coap is null ? "off" : coapPort);
        result.Parameter("sample", sampleEvery.TotalSeconds + "s");
        result.Parameter("history", growingHistory ? "growing" : "fixed");

        var counters = Enumerable.Range(0, clients).Select(_ => new SoakCounters()).ToArray();
        var latency = new LatencyRecorder();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var clock = Stopwatch.StartNew();
        var samples = new List<SoakSample>();
        var sampler = Task.Run(() => SampleAsync(http, serverPid, sampleEvery, clock, counters, samples, stop.Token));
        var loops = Enumerable.Range(0, clients).Select(i => Task.Run(() => ChurnAsync(
            i, devices[i % devices.Length].Token, mqtt, coap, http, messages, growingHistory, counters[i], latency, stop.Token))).ToArray();
        try
        {
            await Task.Delay(common.Duration, cancellation);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: stopping early");
        }

        await stop.CancelAsync();
        await Task.WhenAll(loops);
        await sampler;
        var elapsed = clock.Elapsed.TotalSeconds;

        result.DurationSeconds = elapsed;
        result.Sent = counters.Sum(c => c.Cycles + c.Errors);
        result.Acked = counters.Sum(c => c.Cycles);
        result.Errors = counters.Sum(c => c.Errors);
        result.Rate = result.Acked / elapsed;
        result.Latency = latency.Merge();
        result.AddExtra("mqtt connections", counters.Sum(c => c.Connections));
        result.AddExtra("mqtt messages acked", counters.Sum(c => c.MqttAcked));
        result.AddExtra("http posts ok", counters.Sum(c => c.HttpOk));
        result.AddExtra("coap posts ok", counters.Sum(c => c.CoapOk));
        result.AddExtra("first error", counters.Select(c => c.FirstError).FirstOrDefault(e => e is not null) ?? "none");

        Console.WriteLine();
        Console.WriteLine("   memory samples (s, RSS MB, managed heap MB, gen2 GCs, cycles):");
        foreach (var s in samples)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"   {s.ElapsedSeconds,7:F0} {Mb(s.RssBytes),9} {Mb(s.HeapBytes),9} {s.Gen2Collections,7} {s.Cycles,10}"));
        }

        if (csv is not null)
        {
            await File.WriteAllLinesAsync(csv,
                ["elapsed_s,rss_mb,heap_mb,gen2,cycles", .. samples.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.ElapsedSeconds:F0},{Mb(s.RssBytes)},{Mb(s.HeapBytes)},{s.Gen2Collections},{s.Cycles}"))],
                CancellationToken.None);
        }

        var rss = SoakTrend.Of(samples.Where(s => s.RssBytes is not null).Select(s => (s.ElapsedSeconds, s.RssBytes!.Value / 1048576.0)).ToList());
        var heap = SoakTrend.Of(samples.Where(s => s.HeapBytes is not null).Select(s => (s.ElapsedSeconds, s.HeapBytes!.Value / 1048576.0)).ToList());
        AddTrend(result, "rss", rss);
        AddTrend(result, "heap", heap);
        var gated = serverPid is not null ? ("RSS", rss) : ("managed heap", heap);
        var exit = common.Finish(result);
        if (gated.Item2 is not { } trend)
        {
            Console.WriteLine($"SOAK FAILED: fewer than 4 {gated.Item1} samples; run longer than 4 x --sample");
            return 1;
        }

        if (trend.SlopeMbPerMinute > maxGrowth)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SOAK FAILED: {gated.Item1} grows {trend.SlopeMbPerMinute:F3} MB/min over the second half > --max-growth-mb-per-min {maxGrowth}"));
            return 1;
        }

        if (result.ErrorRate > maxErrorRate || result.Acked == 0)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SOAK FAILED: error rate {result.ErrorRate:P3} > {maxErrorRate:P3} (or no cycle completed)"));
            return 1;
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"soak ok: {gated.Item1} slope {trend.SlopeMbPerMinute:F3} MB/min <= {maxGrowth} MB/min"));
        return exit;
    }

    private static string Mb(long? bytes) => bytes is { } b ? (b / 1048576.0).ToString("F1", CultureInfo.InvariantCulture) : "-";

    private static void AddTrend(RunResult result, string name, SoakTrend? trend)
    {
        if (trend is not { } t)
        {
            return;
        }

        var inv = CultureInfo.InvariantCulture;
        result.AddExtra($"{name} slope MB/min (second half)", t.SlopeMbPerMinute.ToString("F3", inv));
        result.AddExtra($"{name} mean MB first third", t.FirstThirdMean.ToString("F1", inv));
        result.AddExtra($"{name} mean MB last third", t.LastThirdMean.ToString("F1", inv));
        result.AddExtra($"{name} min/max MB", $"{t.Min.ToString("F1", inv)}/{t.Max.ToString("F1", inv)}");
    }

    private static async Task SampleAsync(HttpClient http, int? pid, TimeSpan every, Stopwatch clock, SoakCounters[] counters, List<SoakSample> samples, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(every);
        do
        {
            long? heap = null;
            long? gen2 = null;
            try
            {
                using var runtime = JsonDocument.Parse(await http.GetStringAsync("health/runtime", CancellationToken.None));
                heap = runtime.RootElement.GetProperty("heapBytes").GetInt64();
                gen2 = runtime.RootElement.GetProperty("gen2Collections").GetInt64();
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException or KeyNotFoundException)
            {
                // Not this server's endpoint (or it is down): RSS alone.
            }

            var sample = new SoakSample(clock.Elapsed.TotalSeconds, ServerProcess.RssBytes(pid), heap, gen2, counters.Sum(c => Volatile.Read(ref c.Cycles)));
            lock (samples)
            {
                samples.Add(sample);
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{sample.ElapsedSeconds,6:F0} s] rss {Mb(sample.RssBytes)} MB  heap {Mb(sample.HeapBytes)} MB  gen2 {sample.Gen2Collections}  cycles {sample.Cycles:N0}  errors {counters.Sum(c => Volatile.Read(ref c.Errors))}"));
            try
            {
                if (!await timer.WaitForNextTickAsync(stop))
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
        while (true);
    }

    /// <summary>One client's loop; any failure of a cycle counts one error and the loop goes on.</summary>
    private static async Task ChurnAsync(int index, string token, EndPoint mqtt, EndPoint? coap, HttpClient http, int messages, bool growingHistory, SoakCounters counters, LatencyRecorder latency, CancellationToken stop)
    {
        // By default every message of a client rewrites one point (fixed ts), so the stored data stays the same size
        // and what grows is the server's own state; --growing-history lets the server stamp each message (history grows).
        var payload = growingHistory
            ? Encoding.ASCII.GetBytes($$"""{"soak":{{index}},"n":0}""")
            : Encoding.ASCII.GetBytes($$$"""{"ts":{{{1_000_000_000_000L + index}}},"values":{"soak":{{{index}}},"n":0}}""");
        var publish = MqttWire.Publish("v1/devices/me/telemetry", payload, 1, out var idOffset);
        var connect = MqttWire.Connect($"soak-{Environment.ProcessId}-{index}", token, null, 30);
        var coapPost = coap is null ? null : CoapWire.ConfirmablePost(token, payload);
        var buffer = new byte[4096];
        using var udp = coap is null ? null : new Socket(coap.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
        var messageId = (ushort)(index * 1000);
        for (long cycle = 0; !stop.IsCancellationRequested; cycle++)
        {
            var started = Stopwatch.GetTimestamp();
            var step = "mqtt";
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stop);
                timeout.CancelAfter(TimeSpan.FromSeconds(30));
                using (var socket = await MqttHandshake.ConnectAsync(mqtt, connect, TimeSpan.FromSeconds(10), timeout.Token))
                {
                    counters.Connections++;
                    for (var m = 1; m <= messages; m++)
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(publish.AsSpan(idOffset), (ushort)m);
                        await socket.SendAsync(publish, SocketFlags.None, timeout.Token);
                        await ReadPubAckAsync(socket, buffer, (ushort)m, timeout.Token);
                        counters.MqttAcked++;
                    }

                    await socket.SendAsync(MqttWire.Disconnect.ToArray(), SocketFlags.None, timeout.Token);
                    socket.Shutdown(SocketShutdown.Both);
                }

                if (cycle % 4 == index % 4)
                {
                    step = "http";
                    using var body = new ByteArrayContent(payload);
                    body.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                    using var response = await http.PostAsync($"api/v1/{token}/telemetry", body, timeout.Token);
                    if (!response.IsSuccessStatusCode)
                    {
                        throw new HttpRequestException($"HTTP device API answered {(int)response.StatusCode}");
                    }

                    counters.HttpOk++;
                    if (udp is not null && coapPost is not null)
                    {
                        step = "coap";
                        await CoapPostAsync(udp, coap!, coapPost, ++messageId, buffer, timeout.Token);
                        counters.CoapOk++;
                    }
                }

                counters.Cycles++;
                latency.RecordTicks(index, Stopwatch.GetTimestamp() - started);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException or HttpRequestException or InvalidDataException)
            {
                if (stop.IsCancellationRequested)
                {
                    return; // The run ended mid-cycle: not an error.
                }

                counters.Errors++;
                counters.FirstError ??= $"{step}: {e.Message}";
            }
        }
    }

    private static async Task ReadPubAckAsync(Socket socket, byte[] buffer, ushort id, CancellationToken cancellation)
    {
        var filled = 0;
        while (true)
        {
            if (MqttWire.TryReadFixedHeader(buffer.AsSpan(0, filled), out var type, out var header, out var remaining) && filled >= header + remaining)
            {
                if (type == MqttWire.PubAckType && remaining == 2 && BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(header)) == id && filled == header + remaining)
                {
                    return;
                }

                throw new InvalidDataException($"expected PUBACK {id}, got packet type {type}");
            }

            var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, cancellation);
            if (n == 0)
            {
                throw new IOException("connection closed before the PUBACK");
            }

            filled += n;
        }
    }

    /// <summary>A confirmable POST answered 2.01, piggybacked or separate (then acknowledged).</summary>
    private static async Task CoapPostAsync(Socket udp, EndPoint coap, byte[] post, ushort messageId, byte[] buffer, CancellationToken cancellation)
    {
        BinaryPrimitives.WriteUInt16BigEndian(post.AsSpan(CoapWire.MessageIdOffset), messageId);
        BinaryPrimitives.WriteUInt32BigEndian(post.AsSpan(CoapWire.TokenOffset), messageId);
        await udp.SendToAsync(post, SocketFlags.None, coap, cancellation);
        while (true)
        {
            var received = await udp.ReceiveFromAsync(buffer, SocketFlags.None, new IPEndPoint(IPAddress.Any, 0), cancellation);
            if (!CoapWire.TryParseHeader(buffer.AsSpan(0, received.ReceivedBytes), out var type, out var code, out var id, out var token)
                || token.Length != CoapWire.TokenLength || BinaryPrimitives.ReadUInt32BigEndian(token) != messageId)
            {
                continue; // An empty ACK (no token) or a stale answer.
            }

            if (type == CoapWire.TypeConfirmable)
            {
                var ack = new byte[4];
                CoapWire.EmptyAck(ack, id);
                await udp.SendToAsync(ack, SocketFlags.None, coap, cancellation);
            }

            if (code != 0x41)
            {
                throw new InvalidDataException($"CoAP answered {code >> 5}.{code & 0x1F:D2}");
            }

            return;
        }
    }
}

/// <summary>One client's counters (single writer).</summary>
public sealed class SoakCounters
{
    public long Cycles;
    public long Errors;
    public long Connections;
    public long MqttAcked;
    public long HttpOk;
    public long CoapOk;
    public string? FirstError;
}

/// <summary>One memory sample of the server.</summary>
public sealed record SoakSample(double ElapsedSeconds, long? RssBytes, long? HeapBytes, long? Gen2Collections, long Cycles);

/// <summary>
/// The memory trend of a soak run: the least-squares slope (MB per minute) over the second half of the
/// samples (the first half is warm-up: JIT, pools, caches filling), the means of the first and last thirds,
/// and the range.
/// </summary>
public readonly record struct SoakTrend(double SlopeMbPerMinute, double FirstThirdMean, double LastThirdMean, double Min, double Max, int Samples)
{
    /// <summary>Null with fewer than 4 samples (no second half to fit a line to).</summary>
    public static SoakTrend? Of(IReadOnlyList<(double Seconds, double Mb)> samples)
    {
        if (samples.Count < 4)
        {
            return null;
        }

        var secondHalf = samples.Skip(samples.Count / 2).ToList();
        var third = Math.Max(1, samples.Count / 3);
        return new SoakTrend(
            SlopePerSecond(secondHalf) * 60,
            samples.Take(third).Average(s => s.Mb),
            samples.Skip(samples.Count - third).Average(s => s.Mb),
            samples.Min(s => s.Mb),
            samples.Max(s => s.Mb),
            samples.Count);
    }

    /// <summary>Ordinary least squares slope of y over x; 0 when every x is the same.</summary>
    public static double SlopePerSecond(IReadOnlyList<(double X, double Y)> points)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (points.Count < 2)
        {
            return 0;
        }

        var meanX = points.Average(p => p.X);
        var meanY = points.Average(p => p.Y);
        double sxy = 0, sxx = 0;
        foreach (var (x, y) in points)
        {
            sxy += (x - meanX) * (y - meanY);
            sxx += (x - meanX) * (x - meanX);
        }

        return sxx == 0 ? 0 : sxy / sxx;
    }
}
