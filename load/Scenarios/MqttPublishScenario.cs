using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Perf.Load.Wire;

namespace Perf.Load.Scenarios;

/// <summary>
/// <c>mqtt-publish</c>: N connections publish pre-encoded telemetry at QoS 0 or 1. QoS 1 keeps
/// <c>--window</c> publishes outstanding per connection (pipelined: a read of k PUBACKs frees k packet ids
/// and sends k PUBLISHes in one write); PUBACK latency goes to HdrHistogram.
/// </summary>
public static class MqttPublishScenario
{
    public const string Help = """
          mqtt-publish   --connections 100 --qos 1 --payload 64 --window 32 [--rate msgs/s, 0 = max]
                         [--topic v1/devices/me/telemetry] [--keepalive 0] [--connect-concurrency 200]
                         [--server-pid PID: server CPU seconds and acked msgs per server CPU second]
                         [--unique: payload {"ts":T,"values":{"seq":S}} with a distinct ts and seq per message,
                          T = --base-ts (default now - 1 h) + message number, so the server keeps every message]
                         [--payload-kind text|numeric: text (default) pads {"temperature":..,"humidity":..,"pad":"xx.."};
                          numeric has only numbers {"temperature":..,"humidity":..,"pressure":..} padded with spaces]
        """;

    public static async Task<int> RunAsync(Options o, CancellationToken cancellation)
    {
        var common = CommonOptions.Read(o, 1883);
        var connections = o.Int("connections", 100, 1, 100_000);
        var qos = o.Int("qos", 1, 0, 1);
        var payloadSize = o.Int("payload", 64, 1, 1 << 20);
        var window = o.Int("window", 32, 1, 65_535);
        var rate = o.Double("rate", 0, 0);
        var topic = o.String("topic", "v1/devices/me/telemetry");
        var keepAlive = o.Int("keepalive", 0, 0, 65_535);
        var connectConcurrency = o.Int("connect-concurrency", 200, 1, 100_000);
        int? serverPid = o.Has("server-pid") ? o.Int("server-pid", 0, 1) : null;
        var unique = o.Flag("unique");
        var payloadKind = o.String("payload-kind", "text");
        if (payloadKind is not ("text" or "numeric"))
        {
            throw new OptionsException($"--payload-kind must be text or numeric, not '{payloadKind}'.");
        }
        var baseTs = o.Has("base-ts") ? long.Parse(o.String("base-ts", "0"), System.Globalization.CultureInfo.InvariantCulture) : DateTimeOffset.UtcNow.AddHours(-1).ToUnixTimeMilliseconds();
        var tokens = await Tokens.FromOptionsAsync(o, cancellation);
        o.ThrowIfUnused();

        var endPoint = Targets.Resolve(common.Host, common.Port);
        var tsOffset = 0;
        var seqOffset = 0;
        var payload = unique ? MqttWire.UniquePayload(out tsOffset, out seqOffset) : (payloadKind == "numeric" ? MqttWire.NumericJsonPayload(payloadSize) : MqttWire.JsonPayload(payloadSize));
        var publish = MqttWire.Publish(topic, payload, qos, out var idOffset);
        var payloadStart = publish.Length - payload.Length;
        var stamp = unique ? new UniqueStamp(payloadStart + tsOffset, payloadStart + seqOffset, baseTs, connections) : null;
        var latency = new LatencyRecorder();

        var result = new RunResult { Scenario = "mqtt-publish", Target = common.Target, RateName = qos == 1 ? "acked msgs/s" : "sent msgs/s", LatencyName = "PUBACK latency" };
        result.Parameter("connections", connections);
        result.Parameter("qos", qos);
        result.Parameter("payload", payloadSize);
        result.Parameter("payload-kind", unique ? "unique" : payloadKind);
        result.Parameter("window", window);
        result.Parameter("rate", rate == 0 ? "max" : rate);
        result.Parameter("duration", common.Duration.TotalSeconds + "s");
        result.Parameter("topic", topic);
        result.Parameter("tokens", tokens.Describe());
        if (unique)
        {
            result.Parameter("unique", "base-ts " + baseTs.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        var (sockets, connectFailures) = await ConnectAllAsync(endPoint, connections, tokens, keepAlive, connectConcurrency, cancellation);
        if (sockets.Length == 0)
        {
            Console.Error.WriteLine("No connection could be opened.");
            result.Errors = connectFailures;
            return common.Finish(result) | 1;
        }

        var publishers = sockets.Select((s, i) => new Publisher(s, i, publish, idOffset, qos == 1, window, rate > 0, latency, stamp)).ToArray();
        var receiveLoops = publishers.Select(p => Task.Run(p.ReceiveLoopAsync)).ToArray();
        var monitor = new ProgressMonitor(() => publishers.Select(p => p.Counters), qos == 1 ? "acked" : "sent", common.Duration);
        var cpuBefore = ServerProcess.CpuSeconds(serverPid);
        var clock = Stopwatch.StartNew();
        using var stopPacing = new CancellationTokenSource();
        Task pacing = Task.CompletedTask;
        Task[] sendLoops = [];
        if (rate > 0)
        {
            pacing = Task.Run(() => PaceAsync(publishers, rate, clock, stopPacing.Token));
        }
        else if (qos == 1)
        {
            foreach (var p in publishers)
            {
                p.SendAvailable();
            }
        }
        else
        {
            sendLoops = publishers.Select(p => Task.Run(p.SendLoopAsync)).ToArray();
        }

        try
        {
            await Task.Delay(common.Duration, cancellation);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("interrupted: stopping early");
        }

        foreach (var p in publishers)
        {
            p.Stop();
        }

        var elapsed = clock.Elapsed.TotalSeconds;
        var atStop = monitor.Totals();
        var cpuAtStop = ServerProcess.CpuSeconds(serverPid);
        await stopPacing.CancelAsync();
        await pacing;
        await Task.WhenAll(sendLoops);

        // Give outstanding PUBACKs up to 2 s; whatever is still unacknowledged then counts as failed.
        var drainUntil = Stopwatch.GetTimestamp() + (2 * Stopwatch.Frequency);
        while (qos == 1 && publishers.Any(p => p.Outstanding > 0 && !p.Dead) && Stopwatch.GetTimestamp() < drainUntil)
        {
            await Task.Delay(10, CancellationToken.None);
        }

        await monitor.DisposeAsync();
        var totals = monitor.Totals();
        foreach (var p in publishers)
        {
            p.Close();
        }

        await Task.WhenAll(receiveLoops);

        result.DurationSeconds = elapsed;
        result.Sent = totals.Sent;
        result.Acked = qos == 1 ? totals.Acked : totals.Sent;
        result.Errors = totals.Errors + connectFailures + (qos == 1 ? totals.Sent - totals.Acked : 0);
        result.Rate = (qos == 1 ? atStop.Acked : atStop.Sent) / elapsed;
        result.Latency = qos == 1 ? latency.Merge() : null;
        result.Series = monitor.Series;
        result.AddExtra("connections open", sockets.Length);
        result.AddExtra("connect failures", connectFailures);
        result.AddExtra("connections lost", publishers.Count(p => p.Dead));
        if (qos == 1)
        {
            result.AddExtra("unacknowledged after 2 s drain", totals.Sent - totals.Acked);
        }

        if (cpuBefore is { } before && cpuAtStop is { } after)
        {
            var cpu = after - before;
            result.AddExtra("server pid", serverPid!);
            result.AddExtra("server CPU seconds", cpu.ToString("F2", System.Globalization.CultureInfo.InvariantCulture));
            result.AddExtra("server CPU cores busy", (cpu / elapsed).ToString("F2", System.Globalization.CultureInfo.InvariantCulture));
            if (cpu > 0)
            {
                result.AddExtra("acked msgs per server CPU second", ((qos == 1 ? atStop.Acked : atStop.Sent) / cpu).ToString("F0", System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        return common.Finish(result);
    }

    internal static async Task<(Socket[] Sockets, int Failures)> ConnectAllAsync(
        EndPoint endPoint, int connections, Tokens tokens, int keepAlive, int concurrency, CancellationToken cancellation)
    {
        var sockets = new Socket?[connections];
        var failures = 0;
        string? firstError = null;
        var pid = Environment.ProcessId;
        await Parallel.ForAsync(0, connections, new ParallelOptions { MaxDegreeOfParallelism = concurrency, CancellationToken = cancellation }, async (i, ct) =>
        {
            try
            {
                var connect = MqttWire.Connect($"load-{pid}-{i}", tokens.For(i), null, (ushort)keepAlive);
                sockets[i] = await MqttHandshake.ConnectAsync(endPoint, connect, TimeSpan.FromSeconds(10), ct);
            }
            catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
            {
                Interlocked.Increment(ref failures);
                Interlocked.CompareExchange(ref firstError, e.Message, null);
            }
        });
        if (failures > 0)
        {
            Console.Error.WriteLine($"{failures} of {connections} connections failed; first error: {firstError}");
        }

        return (sockets.Where(s => s is not null).Select(s => s!).ToArray(), failures);
    }

    /// <summary>Fixed rate: every millisecond, grant the messages now due, spread over the connections.</summary>
    private static async Task PaceAsync(Publisher[] publishers, double rate, Stopwatch clock, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(1));
        long granted = 0;
        var next = 0;
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                var due = (long)(clock.Elapsed.TotalSeconds * rate) - granted;
                if (due <= 0)
                {
                    continue;
                }

                granted += due;
                var each = due / publishers.Length;
                var remainder = (int)(due % publishers.Length);
                for (var i = 0; i < publishers.Length; i++)
                {
                    var p = publishers[(next + i) % publishers.Length];
                    var share = each + (i < remainder ? 1 : 0);
                    if (share > 0)
                    {
                        p.Grant(share);
                        p.SendAvailable();
                    }
                }

                next = (next + remainder) % publishers.Length;
            }
        }
        catch (OperationCanceledException)
        {
            // Run over.
        }
    }

    /// <summary>Where the <c>--unique</c> digits sit in a packet; message k of connection i gets number k * connections + i.</summary>
    internal sealed record UniqueStamp(int TsOffset, int SeqOffset, long BaseTs, int Connections);

    /// <summary>
    /// One connection's publishing state. Packet ids 1..window form the window: a free id is a credit.
    /// With <c>recordAcks</c> (QoS 1 and a <see cref="UniqueStamp"/>), the number of every acknowledged
    /// message is kept, for the crash scenario's exact accounting.
    /// </summary>
    internal sealed class Publisher
    {
        private readonly Socket _socket;
        private readonly int _index;
        private readonly byte[] _batch;
        private readonly int _packetLength;
        private readonly int _idOffset;
        private readonly bool _qos1;
        private readonly int _window;
        private readonly bool _paced;
        private readonly LatencyRecorder _latency;
        private readonly UniqueStamp? _stamp;
        private long _messageNumber;
        private readonly ushort[] _freeIds;
        private readonly long[] _sentAt;
        private readonly long[] _scratch;
        private readonly ushort[] _batchIds;
        private readonly long[]? _uniqueOf;
        private readonly Lock _gate = new();
        private int _freeCount;
        private bool _sending;
        private long _allowance;
        private volatile bool _stopping;
        private volatile bool _dead;

        public Publisher(Socket socket, int index, byte[] packet, int idOffset, bool qos1, int window, bool paced, LatencyRecorder latency, UniqueStamp? stamp, bool recordAcks = false)
        {
            _stamp = stamp;
            _socket = socket;
            _index = index;
            _packetLength = packet.Length;
            _idOffset = idOffset;
            _qos1 = qos1;
            _window = window;
            _paced = paced;
            _latency = latency;
            // The whole window pre-encoded back to back: a send of k packets is one write of the first k.
            _batch = new byte[packet.Length * window];
            for (var i = 0; i < window; i++)
            {
                packet.CopyTo(_batch, i * packet.Length);
            }

            _freeIds = new ushort[window];
            for (var i = 0; i < window; i++)
            {
                _freeIds[i] = (ushort)(window - i);
            }

            _freeCount = window;
            _sentAt = new long[window + 1];
            _scratch = new long[window];
            _batchIds = new ushort[window];
            if (recordAcks && qos1 && stamp is not null)
            {
                _uniqueOf = new long[window + 1];
            }
        }

        public WorkerCounters Counters { get; } = new();

        /// <summary>Messages given a number so far (numbers k * connections + index for k below this); with recordAcks.</summary>
        public long MessagesNumbered
        {
            get
            {
                lock (_gate)
                {
                    return _messageNumber;
                }
            }
        }

        /// <summary>With recordAcks: the numbers of the acknowledged messages, in acknowledgement order.</summary>
        public List<long> AckedNumbers { get; } = [];

        public int Index => _index;

        public bool Dead => _dead;

        public long Outstanding => Volatile.Read(ref Counters.Sent) - Volatile.Read(ref Counters.Acked);

        public void Grant(long messages)
        {
            lock (_gate)
            {
                _allowance += messages;
            }
        }

        public void Stop()
        {
            lock (_gate)
            {
                _stopping = true;
            }
        }

        /// <summary>
        /// Sends as many publishes as free ids (QoS 1) and the allowance (fixed rate) permit, in one write.
        /// One sender at a time: a caller that finds a send in progress leaves its credits to that sender,
        /// which re-checks under the lock before it stops.
        /// </summary>
        public void SendAvailable()
        {
            lock (_gate)
            {
                if (_sending)
                {
                    return;
                }

                _sending = true;
            }

            while (true)
            {
                int n;
                lock (_gate)
                {
                    n = _stopping || _dead ? 0 : _qos1 ? _freeCount : _window;
                    if (_paced)
                    {
                        n = (int)Math.Min(n, _allowance);
                        _allowance -= n;
                    }

                    if (n <= 0)
                    {
                        _sending = false;
                        return;
                    }

                    if (_qos1)
                    {
                        var now = Stopwatch.GetTimestamp();
                        for (var k = 0; k < n; k++)
                        {
                            var id = _freeIds[--_freeCount];
                            _batchIds[k] = id;
                            BinaryPrimitives.WriteUInt16BigEndian(_batch.AsSpan((k * _packetLength) + _idOffset), id);
                            _sentAt[id] = now;
                        }
                    }

                    StampBatch(n);
                    Counters.Sent += n;
                }

                if (!TrySend(n * _packetLength))
                {
                    lock (_gate)
                    {
                        _sending = false;
                    }

                    return;
                }
            }
        }

        /// <summary>QoS 0 at full speed: the pre-encoded window, written again and again.</summary>
        public async Task SendLoopAsync()
        {
            var memory = _batch.AsMemory();
            try
            {
                while (!_stopping && !_dead)
                {
                    StampBatch(_window);
                    await _socket.SendAsync(memory, SocketFlags.None);
                    Counters.Sent += _window;
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                MarkDead();
            }
        }

        /// <summary>With --unique, gives the first <paramref name="n"/> packets of the batch their message numbers.</summary>
        private void StampBatch(int n)
        {
            if (_stamp is null)
            {
                return;
            }

            for (var k = 0; k < n; k++)
            {
                var unique = (_messageNumber++ * _stamp.Connections) + _index;
                if (_uniqueOf is not null)
                {
                    _uniqueOf[_batchIds[k]] = unique;
                }

                MqttWire.StampUnique(_batch.AsSpan(k * _packetLength), _stamp.TsOffset, _stamp.SeqOffset, _stamp.BaseTs, unique);
            }
        }

        public async Task ReceiveLoopAsync()
        {
            var buffer = new byte[64 * 1024];
            var filled = 0;
            try
            {
                while (true)
                {
                    var n = await _socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
                    if (n == 0)
                    {
                        break;
                    }

                    filled += n;
                    var offset = ProcessAcks(buffer, filled, out var acked);
                    Counters.Acked += acked;
                    if (acked > 0)
                    {
                        _latency.RecordTicks(_index, _scratch.AsSpan(0, acked));
                    }

                    filled -= offset;
                    if (filled > 0)
                    {
                        Buffer.BlockCopy(buffer, offset, buffer, 0, filled);
                    }

                    if (!_paced && _qos1)
                    {
                        SendAvailable();
                    }
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidDataException)
            {
                // Counted below unless we are the ones closing.
            }

            if (!_stopping)
            {
                MarkDead();
            }
        }

        private int ProcessAcks(byte[] buffer, int filled, out int acked)
        {
            acked = 0;
            var offset = 0;
            var now = Stopwatch.GetTimestamp();
            lock (_gate)
            {
                while (MqttWire.TryReadFixedHeader(buffer.AsSpan(offset, filled - offset), out var type, out var header, out var remaining)
                       && filled - offset >= header + remaining)
                {
                    if (type == MqttWire.PubAckType && remaining == 2)
                    {
                        var id = BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(offset + header));
                        if (id >= 1 && id <= _window && _sentAt[id] != 0)
                        {
                            _scratch[acked++] = now - _sentAt[id];
                            _sentAt[id] = 0;
                            if (_uniqueOf is not null)
                            {
                                AckedNumbers.Add(_uniqueOf[id]);
                            }

                            _freeIds[_freeCount++] = id;
                        }
                        else
                        {
                            Interlocked.Increment(ref Counters.Errors);
                        }
                    }

                    offset += header + remaining;
                }
            }

            return offset;
        }

        private bool TrySend(int length)
        {
            try
            {
                var sent = 0;
                while (sent < length)
                {
                    sent += _socket.Send(_batch, sent, length - sent, SocketFlags.None);
                }

                return true;
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                MarkDead();
                return false;
            }
        }

        private void MarkDead()
        {
            if (!_dead && !_stopping)
            {
                _dead = true;
                Interlocked.Increment(ref Counters.Errors);
            }
        }

        public void Close()
        {
            _stopping = true;
            try
            {
                _socket.Send(MqttWire.Disconnect);
                _socket.Shutdown(SocketShutdown.Both);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                // Already gone.
            }

            _socket.Dispose();
        }
    }
}
