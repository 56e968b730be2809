using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>crash</c>: QoS 1 publishers at full speed (one device each, every message numbered as in
/// <c>mqtt-publish --unique</c>), SIGKILL of the server process mid-run, then, once the server answers
/// again (restarted on the same DATA_DIR by whoever runs it), every device's history is read over REST
/// and compared with the exact set of messages whose PUBACK arrived before the kill.
/// </summary>
public static class CrashScenario
{
    public const string Help = """
          crash          --server-pid PID --api http://127.0.0.1:8080 --connections 20 --window 32 --kill-after 3s
                         [--restart-timeout 120s] [--base-ts ms] [--token-prefix crash-token-] [--user --password]
                         SIGKILLs PID mid-run; restart the server on the same DATA_DIR (a supervisor, or by hand):
                         the run waits for the REST API, reads every device's history and reports
                         sent / acked / stored / lost / dup; exit 1 if any acknowledged message is lost,
                         stored twice, stored without having been sent, or nothing was acknowledged
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 1883);
        var connections = o.Int("connections", 20, 1, 10_000);
        var window = o.Int("window", 32, 1, 65_535);
        var killAfter = o.Duration("kill-after", TimeSpan.FromSeconds(3));
        var restartTimeout = o.Duration("restart-timeout", TimeSpan.FromSeconds(120));
        var serverPid = o.Has("server-pid") ? o.Int("server-pid", 0, 1) : throw new OptionsException("crash needs --server-pid (the process it kills).");
        var api = new Uri(o.String("api", "http://127.0.0.1:8080"));
        var user = o.String("user", "tenant@example.com");
        var password = o.String("password", "tenant");
        var prefix = o.String("token-prefix", "crash-token-");
        var baseTs = o.Has("base-ts") ? long.Parse(o.String("base-ts", "0"), CultureInfo.InvariantCulture) : DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds();
        o.ThrowIfUnused();

        Process server;
        try
        {
            server = Process.GetProcessById(serverPid);
        }
        catch (ArgumentException)
        {
            throw new OptionsException($"--server-pid {serverPid}: no such process.");
        }

        var devices = await Tokens.ProvisionAsync(api, user, password, prefix, connections, cancellation);
        var tokens = Tokens.FromList(devices.Select(d => d.Token).ToArray());
        var payload = MqttWire.UniquePayload(out var tsOffset, out var seqOffset);
        var publish = MqttWire.Publish("v1/devices/me/telemetry", payload, 1, out var idOffset);
        var payloadStart = publish.Length - payload.Length;
        var stamp = new MqttPublishScenario.UniqueStamp(payloadStart + tsOffset, payloadStart + seqOffset, baseTs, connections);
        var result = new RunResult { Scenario = "crash", Target = common.Target, RateName = "acked msgs/s", LatencyName = "PUBACK latency" };
        result.Parameter("connections", connections);
        result.Parameter("window", window);
        result.Parameter("kill-after", killAfter.TotalSeconds + "s");
        result.Parameter("server-pid", serverPid);
        result.Parameter("base-ts", baseTs);

        var endPoint = Targets.Resolve(common.Host, common.Port);
        var (sockets, connectFailures) = await MqttPublishScenario.ConnectAllAsync(endPoint, connections, tokens, 0, 200, cancellation);
        if (sockets.Length != connections)
        {
            Console.Error.WriteLine($"only {sockets.Length} of {connections} connections opened; nothing killed");
            result.Errors = connectFailures;
            return common.Finish(result) | 1;
        }

        var latency = new LatencyRecorder();
        var publishers = sockets.Select((s, i) => new MqttPublishScenario.Publisher(s, i, publish, idOffset, true, window, false, latency, stamp, recordAcks: true)).ToArray();
        var receiveLoops = publishers.Select(p => Task.Run(p.ReceiveLoopAsync)).ToArray();
        var clock = Stopwatch.StartNew();
        foreach (var p in publishers)
        {
            p.SendAvailable();
        }

        await Task.Delay(killAfter, cancellation);
        var ackedBeforeKill = publishers.Sum(p => Volatile.Read(ref p.Counters.Acked));
        server.Kill(); // SIGKILL on Linux, with every publisher's window in flight.
        await server.WaitForExitAsync(cancellation);
        var killedAt = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"SIGKILL to pid {serverPid} at {killedAt:F2} s ({ackedBeforeKill:N0} acked until then); waiting up to {restartTimeout.TotalSeconds:F0} s for {api} to answer again"));

        // PUBACKs the server wrote before it died may still sit in our socket buffers: read them to the end.
        await Task.WhenAny(Task.WhenAll(receiveLoops), Task.Delay(TimeSpan.FromSeconds(10), cancellation));
        foreach (var p in publishers)
        {
            p.Stop();
            p.Close();
        }

        await Task.WhenAll(receiveLoops);
        var sentPer = publishers.Select(p => p.MessagesNumbered).ToArray();
        var ackedPer = publishers.Select(p => p.AckedNumbers.ToHashSet()).ToArray();
        result.DurationSeconds = killedAt;
        result.Sent = sentPer.Sum();
        result.Acked = ackedPer.Sum(a => a.Count);
        result.Rate = result.Acked / killedAt;
        result.Latency = latency.Merge();

        using var http = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        var jwt = await WaitForLoginAsync(http, user, password, restartTimeout, cancellation);
        if (jwt is null)
        {
            Console.Error.WriteLine($"the server did not answer on {api} within {restartTimeout.TotalSeconds:F0} s of the kill; nothing verified");
            return common.Finish(result) | 1;
        }

        http.DefaultRequestHeaders.Add("X-Authorization", "Bearer " + jwt);
        var tally = new CrashTally();
        for (var i = 0; i < connections; i++)
        {
            var stored = await StoredNumbersAsync(http, devices[i].Id, baseTs, sentPer[i] * connections + connections, cancellation);
            tally.Add(i, connections, sentPer[i], ackedPer[i], stored);
        }

        result.Errors = tally.Lost + tally.Duplicated + tally.Phantom;
        result.AddExtra("sent", result.Sent);
        result.AddExtra("acked", result.Acked);
        result.AddExtra("stored", tally.Stored);
        result.AddExtra("lost", tally.Lost);
        result.AddExtra("dup", tally.Duplicated);
        result.AddExtra("stored unacked (in flight at the kill)", tally.StoredUnacked);
        result.AddExtra("phantom (stored, never sent)", tally.Phantom);
        result.AddExtra("killed at s", killedAt.ToString("F2", CultureInfo.InvariantCulture));
        if (tally.FirstLost.Count > 0)
        {
            result.AddExtra("first lost", string.Join(',', tally.FirstLost));
        }

        var exit = common.Finish(result);
        if (result.Acked == 0)
        {
            Console.WriteLine("CRASH CHECK FAILED: nothing was acknowledged before the kill");
            return 1;
        }

        if (!tally.Ok)
        {
            Console.WriteLine($"CRASH CHECK FAILED: {tally.Lost} acknowledged messages lost, {tally.Duplicated} stored twice, {tally.Phantom} stored but never sent");
            return 1;
        }

        return exit;
    }

    /// <summary>Logs in until the restarted server answers; null at the deadline.</summary>
    private static async Task<string?> WaitForLoginAsync(HttpClient http, string user, string password, TimeSpan timeout, CancellationToken cancellation)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < deadline)
        {
            try
            {
                return await Tokens.LoginAsync(http, user, password, cancellation);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                await Task.Delay(250, cancellation);
            }
        }

        return null;
    }

    /// <summary>The message numbers stored for one device: ts - baseTs of every seq point (seq checked against ts).</summary>
    private static async Task<List<(long Number, long Seq)>> StoredNumbersAsync(HttpClient http, string deviceId, long baseTs, long span, CancellationToken cancellation)
    {
        var endTs = baseTs + span + 1;
        var limit = span + 100;
        using var document = JsonDocument.Parse(await http.GetStringAsync(
            $"api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys=seq&startTs={baseTs}&endTs={endTs}&limit={limit}&orderBy=ASC", cancellation));
        var stored = new List<(long, long)>();
        if (document.RootElement.TryGetProperty("seq", out var points))
        {
            foreach (var point in points.EnumerateArray())
            {
                var value = point.GetProperty("value");
                var seq = value.ValueKind == JsonValueKind.String ? long.Parse(value.GetString()!, CultureInfo.InvariantCulture) : value.GetInt64();
                stored.Add((point.GetProperty("ts").GetInt64() - baseTs, seq));
            }
        }

        return stored;
    }
}

/// <summary>
/// The crash comparison, per connection i (messages numbered k * connections + i, k below its sent count):
/// lost = acknowledged but not stored; dup = a message stored more than once (or under another
/// message's ts); phantom = stored but never sent; stored-unacked = sent and stored, its PUBACK lost
/// with the server (allowed: QoS 1 is at least once).
/// </summary>
public sealed class CrashTally
{
    public long Stored { get; private set; }
    public long Lost { get; private set; }
    public long Duplicated { get; private set; }
    public long Phantom { get; private set; }
    public long StoredUnacked { get; private set; }
    public List<long> FirstLost { get; } = [];

    public bool Ok => Lost == 0 && Duplicated == 0 && Phantom == 0;

    public void Add(int connection, int connections, long sent, IReadOnlySet<long> acked, IEnumerable<(long Number, long Seq)> stored)
    {
        var present = new HashSet<long>();
        foreach (var (number, seq) in stored)
        {
            Stored++;
            if (seq - MqttWire.UniqueSeqBase != number || !present.Add(number))
            {
                Duplicated++;
                continue;
            }

            var isOurs = number >= 0 && number % connections == connection && number / connections < sent;
            if (!isOurs)
            {
                Phantom++;
            }
            else if (!acked.Contains(number))
            {
                StoredUnacked++;
            }
        }

        foreach (var number in acked.Order())
        {
            if (!present.Contains(number))
            {
                Lost++;
                if (FirstLost.Count < 10)
                {
                    FirstLost.Add(number);
                }
            }
        }
    }
}
